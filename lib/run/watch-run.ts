/**
 * What one run of the Consul checks watch does: stdin → this network's snapshot → evaluation
 * → outbox. It returns as soon as the decision is recorded; delivery happens elsewhere.
 */
import { NODE_READ_RULE, showsOwnNode } from '../consul/consul-agents.js'
import { ConsulError } from '../consul/consul-api.js'
import { type Check, decodeStdin, InputError, nodeStates, STDIN_MAX_BYTES } from '../consul/checks-payload.js'
import { parseChecks } from '../consul/consul-input.js'
import type { Network } from '../base/networks.js'
import { stage } from '../base/stages.js'
import { assertOutputsWritten, loadMonitor } from './load-monitor.js'
import { handOff, previewRun, recordRun } from './record-run.js'
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'
import { forgetSeen, rememberRun } from './quiet-run.js'
import { clearFailed, writeHealth, writeResync } from '../state/status-files.js'
import type { Snapshot } from '../decide/snapshot-shape.js'

export interface WatchRunArgs {
  network: Network
  config: string
  dryRun: boolean
  consulIndex: string | undefined
  /** Who runs it, in the log: the watch's handler (the default) or the resident (resident.ts). */
  component?: string
}

/**
 * Every cluster this controller watches has its own node, so a payload without its serfHealth
 * is never a complete view: with ACLs on (default_policy deny) Consul answers a token that may
 * not read nodes with an empty list, and a list the own node is missing from is no more
 * complete. Taken as a view, it would turn every host `unknown`, or hide a failed one. Said in the log and the pulse check,
 * and the run fails as on bad input; the record and snapshots are left as they were.
 */
async function refuseBlindPayload(monitor: Monitor, network: Network, empty: boolean): Promise<never> {
  const own = monitor.config.hostname
  const what = empty
    ? `lists no check at all, not even this controller's own node (${own})`
    : `does not show this controller's own node ${own} (its serfHealth)`
  const reason =
    `the ${network} watch's payload ${what}: with Consul ACLs on, a watch whose token lacks ${NODE_READ_RULE} gets this; ` +
    "give the watch a token (its 'token' field or the agent's default token) with the monitor's policy (README, Consul ACLs); " +
    `or hostname is not this controller's node name in that cluster`
  monitor.logger.error("checks payload without this controller's own node refused", { network, reason })
  await writeHealth(monitor.config.stateDir, { status: 'critical', reason })
  throw new InputError(reason)
}

export async function runWatch(args: WatchRunArgs, deps: Deps): Promise<void> {
  // Before the config is read: a file the run reads that changed after this leaves no quiet note.
  const startedAt = deps.now().getTime()
  const monitor = await loadMonitor(args.config, deps, args.component ?? `checks-handler/${args.network}`)
  stage('config loaded')
  // Parse everything before touching the state directory: bad input must leave it as it was.
  const stdin = await deps.readStdin(STDIN_MAX_BYTES)
  const receivedAt = (deps.stdinReadAt ?? deps.now()).toISOString()
  const checks = parseChecks(decodeStdin(stdin))
  if (!showsOwnNode(checks, monitor.config.hostname)) await refuseBlindPayload(monitor, args.network, checks.length === 0)
  stage('payload parsed')
  const snapshot: Snapshot = {
    version: 1,
    network: args.network,
    consulIndex: args.consulIndex ?? '',
    receivedAt,
    nodes: nodeStates(checks),
  }
  if (!monitor.strategy.sequence.includes(args.network)) {
    monitor.logger.info('this network is not in the strategy; its snapshot is kept for reports only', {
      network: args.network,
      strategy: monitor.strategy.source,
    })
  }
  if (args.dryRun) {
    const { decisions } = await previewRun(monitor, deps, [snapshot])
    for (const d of decisions) {
      deps.stdout(`${d.host}\t${d.vectorText}\t${d.action === 'none' ? 'no action' : `would send ${d.action}`}\t${d.reason}\n`)
    }
    return assertOutputsWritten(monitor)
  }
  // Until this run has succeeded, a resync is due: a run killed half-way (or failing below)
  // must not leave its edge lost. The run's end sets it as the view requires.
  await writeResync(monitor.config.stateDir, new Date(deps.now().getTime() + monitor.config.resync * 1000), { postpone: false })
  await recordSnapshot(monitor, deps, args, snapshot, checks)
  const { config } = monitor
  const lockCheck = config.consul.lock.check
  // Every file the decision read: upstreamConfig's matrix_config_file is config.strategy.
  const files = [config.strategy, config.upstreamConfig].filter((f) => f !== undefined)
  const localRecord = monitor.coordination === undefined
  await rememberRun({ configPath: args.config, files, startedAt, stateDir: config.stateDir, lockCheck, localRecord })
  await clearFailed(config.stateDir, args.network)
  assertOutputsWritten(monitor)
}

/**
 * Records the run. The snapshot is written under the state lock, after state.json was read: a
 * run that fails there leaves the state directory unchanged. Until it has succeeded, no run of
 * this network is quiet (lib/run/quiet-run.ts).
 */
async function recordSnapshot(monitor: Monitor, deps: Deps, args: WatchRunArgs, snapshot: Snapshot, checks: Check[]): Promise<void> {
  forgetSeen(monitor.config.stateDir, args.network)
  try {
    // The seen digest is written with the snapshot, under the state lock, only if this view is used.
    const seen = { checks, lockCheck: monitor.config.consul.lock.check }
    const run = await recordRun(monitor, deps, { incoming: [snapshot], seen })
    await handOff(monitor, deps, run, { firstAttempt: true })
    stage('handed off')
  } catch (err) {
    // Consul keeps a handler's output only at DEBUG: an own agent that refuses us (ACLs) or
    // does not answer is said in the log and in the pulse check too.
    if (err instanceof ConsulError) {
      monitor.logger.error('an own Consul agent refused or did not answer; nothing recorded', { network: args.network, error: err.message })
      await writeHealth(monitor.config.stateDir, { status: 'critical', reason: err.message })
    }
    throw err
  }
}
