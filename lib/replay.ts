/** evaluate.js: evaluate the stored snapshots by hand and show the result. */
import { evaluateAndRecord, loadMonitor, runWorker, type Deps } from './monitor.js'
import { buildReport, formatReport } from './report.js'

export interface EvaluateArgs {
  config: string
  dryRun: boolean
  json: boolean
}

export async function runEvaluate(args: EvaluateArgs, deps: Deps): Promise<void> {
  const monitor = await loadMonitor(args.config, deps, 'evaluate')
  const now = deps.now()
  const { decisions, snapshots, state, queued } = await evaluateAndRecord(monitor, deps, { dryRun: args.dryRun })
  const report = buildReport(decisions, snapshots, state, monitor.strategy, queued, now, args.dryRun)
  deps.stdout(args.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report))
}

export async function runDelivery(configPath: string, deps: Deps): Promise<number> {
  return runWorker(await loadMonitor(configPath, deps, 'worker'), deps)
}
