/**
 * `fence-check`: every fenced host's agent asked `action=status` (or `monitor`), as Pacemaker's
 * stonith monitor does, so that a BMC with a wrong password or no route is found before a
 * failure needs it; with fencing.template, a host whose template cannot be filled (a node meta
 * key it lacks) too. It powers nothing off or on. The check itself is
 * lib/run/fence-check.ts, which `validate` and the pulse's deep look run too.
 */
import { loadConfig } from '../config/config.js'
import { escapeControls } from '../base/quote.js'
import { EXIT } from '../run/cli.js'
import type { Deps } from '../run/deps.js'
import { type CheckAction, type FenceCheckRow, fenceCheckRows } from '../run/fence-check.js'

export type { CheckAction } from '../run/fence-check.js'

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
