/**
 * evaluate.js `replay`, `status` and `explain`: evaluate the stored snapshots by hand and show the
 * result (the table, --json, one host). `status` and `explain` are the dry run: they read and
 * never record, take no lock for writing and start no worker; with the management agent down
 * they show this controller's local view and say so (readOnlyCoordination).
 */
import { basename } from 'node:path'
import { UsageError } from '../run/cli.js'
import { assertOutputsWritten, loadMonitor } from '../run/load-monitor.js'
import { handOff, previewRun, recordRun, type RunResult } from '../run/record-run.js'
import type { Deps } from '../run/deps.js'
import type { Monitor } from '../run/monitor-context.js'
import type { LocalView } from '../run/coordination.js'
import { buildReport, explainHost, type FencingReport, formatExplanation, formatReport } from '../decide/report.js'
import { readFenceCheck } from '../state/status-files.js'

export interface EvaluateArgs {
  config: string
  dryRun: boolean
  json: boolean
  /** Explain one host's decision instead of printing the table. */
  explain?: string
  /** ANSI colours in the table (a terminal, NO_COLOR unset). */
  colour?: boolean
}

export async function runEvaluate(args: EvaluateArgs, deps: Deps): Promise<void> {
  // A dry run (status, explain, replay --dry-run) only reads: it must not even log to logFile.
  const monitor = await loadMonitor(args.config, deps, 'evaluate', { readOnly: args.dryRun })
  const now = deps.now()
  const { decisions, snapshots, state, queued, timing } = args.dryRun
    ? await previewRun(monitor, deps)
    : await recordAndHandOff(monitor, deps)
  if (args.explain !== undefined) {
    const e = explainHost(args.explain, decisions, snapshots, state, monitor.strategy, timing, monitor.config.guards, now)
    if (!e)
      throw new UsageError(
        `explain: no host named "${args.explain}" in the snapshots or the ledger (hosts: ${decisions.map((d) => d.host).join(', ') || 'none'})`,
      )
    deps.stdout(
      args.json ? `${JSON.stringify({ ...e, localView: localView(monitor) }, null, 2)}\n` : formatExplanation(e, monitor.strategy),
    )
    return assertOutputsWritten(monitor)
  }
  const report = buildReport(decisions, snapshots, state, monitor.strategy, queued, timing, now, args.dryRun, await fencing(monitor))
  deps.stdout(
    args.json ? `${JSON.stringify({ ...report, localView: localView(monitor) }, null, 2)}\n` : formatReport(report, args.colour ?? false),
  )
  assertOutputsWritten(monitor)
}

/** Fencing on: its agent, how many hosts it covers, and the pulse's last fence check on this controller. */
async function fencing(monitor: Monitor): Promise<FencingReport | null> {
  const { fencing, stateDir } = monitor.config
  if (!fencing.enabled) return null
  const note = await readFenceCheck(stateDir)
  return { agent: basename(fencing.agent ?? ''), hosts: Object.keys(fencing.hosts).length, lastCheck: note?.last ?? null }
}

/**
 * For --json: null, or why the record shown is this controller's own (the management agent
 * could not be reached): a tool reading the JSON must not take a lagging view for the sender's.
 */
export function localView(monitor: Monitor): LocalView | null {
  return monitor.coordination?.localView?.() ?? null
}

/** A replay without --dry-run records as a watch run would; what it queued goes to a worker. */
async function recordAndHandOff(monitor: Monitor, deps: Deps): Promise<RunResult> {
  const run = await recordRun(monitor, deps)
  await handOff(monitor, deps, run, { firstAttempt: false })
  return run
}
