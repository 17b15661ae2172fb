/**
 * What one run of the Consul checks watch does: stdin → this network's snapshot → evaluation
 * → outbox. It returns as soon as the decision is recorded; delivery happens elsewhere.
 */
import { decodeStdin, nodeStates, parseChecks, STDIN_MAX_BYTES } from './consul-input.js'
import type { Network } from './networks.js'
import { evaluateAndRecord, loadMonitor, type Deps } from './monitor.js'
import type { Snapshot } from './snapshot.js'

export interface ChecksHandlerArgs {
  network: Network
  config: string
  dryRun: boolean
  consulIndex: string | undefined
}

export async function runChecksHandler(args: ChecksHandlerArgs, deps: Deps): Promise<void> {
  const monitor = await loadMonitor(args.config, deps, `checks-handler/${args.network}`)
  // Parse everything before touching the state directory: bad input must leave it as it was.
  const checks = parseChecks(decodeStdin(await deps.readStdin(STDIN_MAX_BYTES)))
  const snapshot: Snapshot = {
    version: 1,
    network: args.network,
    consulIndex: args.consulIndex ?? '',
    receivedAt: deps.now().toISOString(),
    nodes: nodeStates(checks),
  }
  if (!monitor.strategy.sequence.includes(args.network)) {
    monitor.logger.info('this network is not in the strategy; its snapshot is kept for reports only', {
      network: args.network,
      strategy: monitor.strategy.source,
    })
  }
  if (args.dryRun) {
    const { decisions } = await evaluateAndRecord(monitor, deps, { dryRun: true, incoming: snapshot })
    for (const d of decisions) {
      deps.stdout(`${d.host}\t${d.vectorText}\t${d.action === 'none' ? 'no action' : `would send ${d.action}`}\t${d.reason}\n`)
    }
    return
  }
  // The snapshot is written under the state lock, after state.json was read: a run that fails
  // there leaves the state directory unchanged.
  await evaluateAndRecord(monitor, deps, { dryRun: false, incoming: snapshot })
}
