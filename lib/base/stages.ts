/**
 * Stage timestamps of one run, for the bench's breakdown of a failure from the watch's start to
 * the POST's answer (issue #22). Off unless the bundle's entry installed a recorder (it does when
 * MASAKARI_CONSUL_STAGES names a file): then `stage(name)` notes the time, which costs one
 * global lookup when off. The recorder lives on globalThis because the entry and the full
 * handler are two bundles in one process (lib/run/embedded.ts), each with its own copy of this
 * module. No I/O here: the entry writes the line (handlers/checks-handler-entry.ts).
 */

/** The environment variable that turns the recorder on: the file each run appends its line to. */
export const STAGES_ENV = 'MASAKARI_CONSUL_STAGES'

const KEY = Symbol.for('masakari-consul.stages')

export interface StageRecorder {
  /** [name, ms since the process's time origin], in the order they were passed. */
  marks: Array<[string, number]>
}

type Holder = { [KEY]?: StageRecorder }

/** Notes that `name` is done now; nothing when no recorder is installed. */
export function stage(name: string): void {
  const recorder = (globalThis as Holder)[KEY]
  if (recorder) recorder.marks.push([name, performance.now()])
}

/** Installs a recorder for this process (the entry, when asked) and returns it. */
export function installStages(): StageRecorder {
  const holder = globalThis as Holder
  holder[KEY] ??= { marks: [] }
  return holder[KEY]
}

/** Removes the recorder (tests). */
export function uninstallStages(): void {
  delete (globalThis as Holder)[KEY]
}

/** Node's own start-up milestones, as performance.nodeTiming gives them (ms since the time origin). */
export interface NodeStart {
  /** The node process's start as Node measured it (nodeTiming.nodeStart). */
  nodeStart: number
  /** Node's bootstrap done: the bundle's code begins loading after this (nodeTiming.bootstrapComplete). */
  bootstrapComplete: number
}

/**
 * One run's line: the time origin as a wall-clock time (epoch ms), so that the bench lines it up
 * with its probe watch and Masakari's database; Node's start; and each stage in ms since the origin.
 */
export function stagesLine(recorder: StageRecorder, origin: number, node: NodeStart, argv: readonly string[]): string {
  const round = (ms: number) => Math.round(ms * 100) / 100
  return JSON.stringify({
    origin: round(origin),
    argv: [...argv],
    node: { start: round(node.nodeStart), bootstrapComplete: round(node.bootstrapComplete) },
    stages: recorder.marks.map(([name, ms]) => [name, round(ms)]),
  })
}
