/**
 * The bench's stage timestamps (lib/base/stages.ts) to a file: when MASAKARI_CONSUL_STAGES names
 * one, the run's recorder is installed and its line appended when the process exits, whatever
 * the exit. Off (one environment lookup) otherwise: a deployed monitor never sets it.
 */
import { installStages, type NodeStart, STAGES_ENV, stagesLine } from '../base/stages.js'

export interface StagesFileDeps {
  env: Record<string, string | undefined>
  /** appendFileSync: at exit only synchronous writes happen. */
  append: (file: string, text: string) => void
  /** process.once('exit', …) */
  onExit: (fn: () => void) => void
  /** performance.timeOrigin and performance.nodeTiming, read at exit. */
  origin: () => number
  node: () => NodeStart
  argv: readonly string[]
}

/** Installs the recorder when asked; true if it did. A line that cannot be written is dropped: a bench aid never fails a run. */
export function stagesToFile(deps: StagesFileDeps): boolean {
  const file = deps.env[STAGES_ENV]
  if (!file) return false
  const recorder = installStages()
  deps.onExit(() => {
    try {
      deps.append(file, `${stagesLine(recorder, deps.origin(), deps.node(), deps.argv)}\n`)
    } catch {
      // the bench sees the run missing
    }
  })
  return true
}
