/**
 * `checks-handler.js --resync`: the level-triggered backstop. Consul runs a watch's handler
 * only when the cluster's health changes, and a dead host makes no further change, so an edge
 * lost once (a run that failed or was killed, an own agent that could not confirm, a stale
 * run) would otherwise wait for ever. While the view is unsettled (status-files.ts `unsettled`),
 * or a watch run failed (watch.sh), the pulse check starts this every `resync` seconds: every
 * network's checks read from this controller's own agent now, then evaluated and recorded
 * exactly as a watch run would.
 */
import { join } from 'node:path'
import { nodeStates } from '../consul/checks-payload.js'
import { blindReason, showsOwnNode } from '../consul/consul-agents.js'
import { ConsulError, consulAgent } from '../consul/consul-api.js'
import { parseChecks } from '../consul/consul-input.js'
import { consulTls } from './coordination.js'
import { tryLock } from '../state/lock.js'
import { loadMonitor } from './load-monitor.js'
import { handOff, recordRun } from './record-run.js'
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'
import { NETWORKS, type Network } from '../base/networks.js'
import type { Snapshot } from '../decide/snapshot-shape.js'
import { clearFailed } from '../state/status-files.js'

/** Reading a whole cluster's checks may take longer than a confirmation (consul.timeout). */
const READ_TIMEOUT_MIN_S = 5

export async function runResync(configPath: string, deps: Deps): Promise<number> {
  const monitor = await loadMonitor(configPath, deps, 'resync')
  const { config, logger } = monitor
  // One at a time: the pulse may start one while another still waits for an agent.
  const release = await tryLock(join(config.stateDir, 'resync.lock'), () => {})
  if (!release) {
    logger.debug('a resync is already running')
    return 0
  }
  try {
    const { snapshots, problems } = await readClusters(monitor, deps)
    // A choice, not a fault: without own agents only the stored view can be evaluated again.
    if (Object.keys(config.consul.agents).length === 0)
      logger.warn('resync without consul.agents: the clusters cannot be read, only the stored view is evaluated again')
    logger.info('resync: read the clusters now', {
      networks: snapshots.map((s) => s.network),
      ...(problems.length > 0 ? { problems } : {}),
    })
    const run = await recordRun(monitor, deps, { incoming: snapshots, resync: true })
    await handOff(monitor, deps, run, { firstAttempt: true })
    for (const s of snapshots) await clearFailed(config.stateDir, s.network)
    // What could not be read is said as one error (exit 69); what could was recorded first.
    if (problems.length > 0) throw new ConsulError(`resync: ${problems.join('; ')}`)
    await clearFailed(config.stateDir, 'resync')
    return 0
  } finally {
    await release().catch(() => {})
  }
}

/** Every network with an own agent: its checks now, as a snapshot; what could not be read, said. */
async function readClusters(monitor: Monitor, deps: Deps): Promise<{ snapshots: Snapshot[]; problems: string[] }> {
  const { config } = monitor
  const networks = NETWORKS.filter((n) => config.consul.agents[n] !== undefined)
  const fetch = await deps.fetch()
  const tls = await consulTls(config.consulAccess, deps)
  const timeout = Math.max(config.consul.timeout, READ_TIMEOUT_MIN_S)
  const read = async (network: Network): Promise<Snapshot> => {
    const agent = consulAgent(config.consul.agents[network]!, config.consulAccess, fetch, tls, timeout)
    const answer = await agent.ok('GET', '/v1/health/state/any')
    const checks = parseChecks(answer.text)
    // An answer without our own node's liveness cannot be complete: an ACL token that may not
    // read nodes gets a filtered list (or none), which must never read as "every host left".
    if (!showsOwnNode(checks, config.hostname)) throw new ConsulError(blindReason(`${agent.url}'s answer`, config.hostname))
    return { version: 1, network, consulIndex: answer.index ?? '', receivedAt: deps.now().toISOString(), nodes: nodeStates(checks) }
  }
  const results = await Promise.allSettled(networks.map(read))
  const snapshots: Snapshot[] = []
  const problems: string[] = []
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') snapshots.push(r.value)
    else problems.push(`${networks[i]}: ${(r.reason as Error).message}`)
  })
  return { snapshots, problems }
}
