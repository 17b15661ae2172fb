/**
 * `fence-check`: every fenced host's agent asked `action=status` (or `monitor`), as Pacemaker's
 * stonith monitor does, so that a BMC with a wrong password or no route is found before a
 * failure needs it; with fencing.template, a host whose template cannot be filled (a node meta
 * key it lacks) too. It powers nothing off or on. `validate` runs the same check.
 */
import { basename } from 'node:path'
import type { AgentAnswer } from '../decide/fence-step.js'
import { type Config, loadConfig } from '../config/config.js'
import { escapeControls } from '../base/quote.js'
import { runFenceAgent } from '../fence/fence-agent.js'
import { EXIT } from '../run/cli.js'
import { checkTargets } from '../run/fence-targets.js'
import type { Deps } from '../run/deps.js'

export type CheckAction = 'status' | 'monitor'

export interface FenceCheckRow {
  host: string
  /** The agent's name (fence_ipmilan), its path in the config. */
  agent: string
  /**
   * on / off (status), ok (monitor), error with the agent's own message, or uncovered: no
   * options for the host (fencing.template cannot be filled for it), the agent not run.
   */
  result: 'on' | 'off' | 'ok' | 'error' | 'uncovered'
  message?: string
}

export interface FenceCheck {
  rows: FenceCheckRow[]
  /** What limits the check (fencing.template: no management snapshot yet…): warnings. */
  notes: string[]
}

/** BMCs answer slowly (a few seconds each): several at a time, but not a storm on the management network. */
const CONCURRENCY = 8

/** Each checked host's answer (lib/run/fence-targets.ts's checkTargets), in host order. */
export async function fenceCheckRows(config: Config, deps: Deps, action: CheckAction = 'status'): Promise<FenceCheck> {
  const { targets, notes } = await checkTargets(config, deps)
  const ctx = { run: deps.runAgent, env: deps.configEnv.env, fencing: config.fencing, password: config.fencePassword }
  const agent = basename(config.fencing.agent ?? '')
  const rows: FenceCheckRow[] = new Array(targets.length)
  let next = 0
  const worker = async () => {
    for (let i = next++; i < targets.length; i = next++) {
      const { host, target } = targets[i]!
      rows[i] =
        'reason' in target
          ? { host, agent, result: 'uncovered', message: target.reason }
          : { host, agent, ...resultOf(await runFenceAgent(ctx, target.options, action, config.fencing.timeout * 1000)) }
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, targets.length) }, worker))
  return { rows, notes }
}

function resultOf(answer: AgentAnswer): Pick<FenceCheckRow, 'result' | 'message'> {
  if (answer.kind === 'error') return { result: 'error', message: answer.message }
  return { result: answer.kind === 'done' ? 'ok' : answer.kind }
}

/** 0 when every BMC answered, 69 (unavailable) when any did not or a host cannot be fenced at all. */
export const fenceCheckExit = (rows: readonly FenceCheckRow[]): number =>
  rows.some((r) => r.result === 'error' || r.result === 'uncovered') ? EXIT.consul : EXIT.ok

/** The table: HOST | AGENT | RESULT, the result with the agent's message when it failed. */
export function formatFenceCheck(rows: readonly FenceCheckRow[]): string {
  const said = (r: FenceCheckRow) =>
    r.result === 'error' ? `error: ${r.message}` : r.result === 'uncovered' ? `not covered: ${r.message}` : r.result
  const cells = rows.map((r) => [r.host, r.agent, said(r)].map(escapeControls))
  const all = [['HOST', 'AGENT', 'RESULT'], ...cells]
  const width = [0, 1].map((c) => Math.max(...all.map((row) => row[c]!.length)))
  const lines = all.map(([h, a, r]) => `${h!.padEnd(width[0]!)}  ${a!.padEnd(width[1]!)}  ${r}`.trimEnd())
  return `${lines.join('\n')}\n`
}

export const FENCING_OFF = 'fencing is off (fencing.enabled is false): no fence agent to check'

/** Prints the table, each note a warning on stderr (--json: {enabled, action, hosts, notes, exit}); the exit of fenceCheckExit. */
export async function runFenceCheck(opts: { config: string; json: boolean; action: CheckAction }, deps: Deps): Promise<number> {
  const config = await loadConfig(opts.config, deps.configEnv)
  if (!config.fencing.enabled) {
    deps.stdout(opts.json ? `${JSON.stringify({ enabled: false, hosts: [], exit: EXIT.ok }, null, 2)}\n` : `${FENCING_OFF}\n`)
    return EXIT.ok
  }
  const { rows, notes } = await fenceCheckRows(config, deps, opts.action)
  const exit = fenceCheckExit(rows)
  if (opts.json) deps.stdout(`${JSON.stringify({ enabled: true, action: opts.action, hosts: rows, notes, exit }, null, 2)}\n`)
  else {
    deps.stdout(formatFenceCheck(rows))
    for (const note of notes) deps.stderr(`warning: ${escapeControls(note)}`)
  }
  return exit
}
