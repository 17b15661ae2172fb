/**
 * One evaluation of a run: the stored snapshots (with the run's incoming ones in place of their
 * networks', unless older) against the record, through the pure evaluator (lib/decide/). Before
 * it decides a recovery, it asks this controller's own agents and decides again on their answer.
 */
import { randomUUID } from 'node:crypto'
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'
import { askAgents } from '../consul/consul-agents.js'
import { consulTls } from './coordination.js'
import { type Confirmation, evaluate, type Evaluation } from '../decide/evaluator.js'
import type { Network } from '../base/networks.js'
import { readSnapshots } from '../state/snapshot.js'
import { type Snapshot, type Snapshots, supersedes } from '../decide/snapshot-shape.js'
import { masakariHostName } from '../consul/host-names.js'
import { masakariNamer } from './host-namer.js'
import type { StoreState } from '../decide/state-shape.js'

export interface Evaluated {
  evaluation: Evaluation
  snapshots: Snapshots
  /** The incoming snapshots the evaluation used: those not older than the stored ones. */
  fresh: Snapshot[]
  /** The own agents' answers, when they were asked. */
  confirmations?: Partial<Record<Network, Confirmation>>
}

/**
 * One evaluation of the stored snapshots (with `incoming` in place of its network's) against
 * `state`. When it would decide a recovery and the own agents are configured (and `confirm`),
 * the agents are asked and it decides again on their answer.
 */
export async function evaluateView(
  monitor: Monitor,
  deps: Deps,
  incoming: Snapshot[],
  state: StoreState,
  confirm: boolean,
): Promise<Evaluated> {
  const { config, strategy, logger } = monitor
  const snapshots = await readSnapshots(config.stateDir)
  const fresh = incoming.filter((s) => supersedes(s, snapshots[s.network]))
  for (const s of incoming.filter((s) => !fresh.includes(s))) {
    const stored = snapshots[s.network]!
    logger.info('a newer view of this network is already stored; this older one is not used', {
      network: s.network,
      consulIndex: s.consulIndex,
      storedIndex: stored.consulIndex,
      storedAt: stored.receivedAt,
    })
  }
  for (const s of fresh) snapshots[s.network] = s
  const gossip = config.consul.gossip
  const input = {
    snapshots,
    strategy,
    state,
    ownHost: config.hostname,
    firstSight: config.firstSight,
    now: deps.now(),
    newId: randomUUID,
    guards: config.guards,
    gossip: { management: gossip, tenant: gossip, storage: gossip },
    masakariName: (node: string) => masakariHostName(node, config.hostNames),
  }
  let evaluation = evaluate(input)
  // Node meta is asked for only when a notification is about to be built (the watch's payload has none).
  if (evaluation.queued.length > 0 && config.hostNames.metaKey !== undefined) {
    input.masakariName = await masakariNamer(config, deps, logger)
    evaluation = evaluate(input)
  }
  const recovering = evaluation.queued.some((e) => e.notification.payload.event === 'STOPPED')
  if (!confirm || !recovering || Object.keys(config.consul.agents).length === 0) return { evaluation, snapshots, fresh }
  const access = config.consulAccess
  const tls = await consulTls(access, deps)
  const confirmations = await askAgents(strategy.sequence, config.hostname, config.consul, await deps.fetch(), access, tls)
  for (const [network, c] of Object.entries(confirmations)) {
    if (c.ok) continue
    if (!c.refused) {
      logger.warn('own agent did not confirm; its network counts as unknown for recoveries', { network, reason: c.reason })
      continue
    }
    // Not a passing check with a warn line: every later recovery on this network would be lost as quietly.
    logger.error('own agent answered without seeing nodes; its network counts as unknown for recoveries', { network, reason: c.reason })
    const said = `${network} agent: ${c.reason}`
    if (!monitor.critical.includes(said)) monitor.critical.push(said)
  }
  return { evaluation: evaluate({ ...input, confirmations }), snapshots, fresh, confirmations }
}
