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
import { type Confirmation, evaluate, type Evaluation, type EvaluationInput } from '../decide/evaluator.js'
import { type HostList, unknownHosts } from '../decide/host-list.js'
import { masakariHostList, warnUnknown } from './masakari-hosts.js'
import type { Network } from '../base/networks.js'
import type { Fetch } from '../base/http.js'
import { stage } from '../base/stages.js'
import { readSnapshots } from '../state/snapshot.js'
import { type Snapshot, type Snapshots, supersedes } from '../decide/snapshot-shape.js'
import { consulServers, masakariHostName } from '../consul/host-names.js'
import { consulAgent } from '../consul/consul-api.js'
import { masakariNamer } from './host-namer.js'
import type { OwnHolds, StoreState } from '../decide/state-shape.js'

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
 * the agents are asked and it decides again on their answer. `ownHolds`: with several
 * controllers, the holds this controller's own runs saw (lib/state/own-holds.ts).
 */
/** What asks the own agents: node-fetch and the TLS agent of consul.caFile/insecure, made once per evaluation. */
interface AgentClient {
  fetch: Fetch
  tls: unknown
}

/** The nodes never notified about: `hostNames.exclude`, and the Consul servers when known. */
function excluded(config: Monitor['config'], servers: ReadonlySet<string> = new Set()): Map<string, string> {
  const why = new Map<string, string>()
  for (const node of servers) why.set(node, 'a Consul server (a controller) is never a compute host')
  for (const node of config.hostNames.exclude) why.set(node, 'in hostNames.exclude: never a Masakari host')
  return why
}

/**
 * Every own agent's Consul servers. One that cannot be asked is said and left out: the decision
 * goes on as if that node were a host (Masakari refuses a host it does not know; nothing lost).
 */
async function askServers(config: Monitor['config'], { fetch, tls }: AgentClient, logger: Monitor['logger']): Promise<Set<string>> {
  const addrs = Object.values(config.consul.agents)
  const answers = await Promise.allSettled(
    addrs.map((addr) => consulServers(consulAgent(addr, config.consulAccess, fetch, tls, config.consul.timeout))),
  )
  const servers = new Set<string>()
  answers.forEach((a, i) => {
    if (a.status === 'fulfilled') for (const s of a.value) servers.add(s)
    else
      logger.warn('cannot ask an own agent for its Consul servers: they count as hosts this run', {
        agent: addrs[i],
        error: (a.reason as Error).message,
      })
  })
  return servers
}

export async function evaluateView(
  monitor: Monitor,
  deps: Deps,
  incoming: Snapshot[],
  state: StoreState,
  confirm: boolean,
  ownHolds?: OwnHolds,
): Promise<Evaluated> {
  const { config, strategy, logger } = monitor
  const { snapshots, fresh } = await withIncoming(monitor, incoming)
  const gossip = config.consul.gossip
  const input = {
    snapshots,
    strategy,
    state,
    ownHost: config.hostname,
    notHosts: excluded(config),
    firstSight: config.firstSight,
    now: deps.now(),
    newId: randomUUID,
    guards: config.guards,
    gossip: { management: gossip, tenant: gossip, storage: gossip },
    masakariName: (node: string) => masakariHostName(node, config.hostNames),
    ...(ownHolds ? { ownHolds } : {}),
  }
  const evaluation = evaluate(input)
  stage('evaluated')
  if (evaluation.queued.length === 0) return { evaluation, snapshots, fresh }
  // What a notification needs, asked at once (one round trip, not four): the servers (a failed
  // controller is not a compute host: Masakari would answer 400, a rate-limit slot used up),
  // node meta for the Masakari names, Masakari's host list (a node in no failover segment,
  // likewise), and before a recovery the own agents' confirmation. The payload has none of them.
  const agents = Object.keys(config.consul.agents).length > 0
  const recovering = evaluation.queued.some((e) => e.notification.payload.event === 'STOPPED')
  // One fetch and one TLS agent (its CA file read once) for both questions to the own agents.
  const client: AgentClient | undefined = agents
    ? { fetch: await deps.fetch(), tls: await consulTls(config.consulAccess, deps) }
    : undefined
  const naming = config.hostNames.metaKey === undefined ? undefined : masakariNamer(config, deps, logger)
  const [servers, namer, confirmations, hostList] = await Promise.all([
    client ? askServers(config, client, logger) : new Set<string>(),
    naming,
    confirm && recovering && client ? confirmRecovery(monitor, client) : undefined,
    recovering && config.masakari.lookupHosts ? hostListFor(monitor, deps, evaluation, naming, input.masakariName) : undefined,
  ])
  stage('own agents, servers, host list answered')
  if (evaluation.queued.some((e) => servers.has(e.host))) input.notHosts = excluded(config, servers)
  if (namer) input.masakariName = namer
  const final = confirmations ? { ...input, confirmations } : input
  const decided = hostList ? await withoutUnknown(monitor, final, hostList) : evaluate(final)
  return { evaluation: decided, snapshots, fresh, ...(confirmations ? { confirmations } : {}) }
}

/** Masakari's host list for the STOPPEDs `evaluation` queued, named as the notifications will name them. */
async function hostListFor(
  monitor: Monitor,
  deps: Deps,
  evaluation: Evaluation,
  naming: Promise<(node: string) => string> | undefined,
  plain: (node: string) => string,
): Promise<HostList | undefined> {
  const nameOf = (await naming) ?? plain
  return masakariHostList(monitor, deps, stoppedHosts(evaluation).map(nameOf))
}

const stoppedHosts = (evaluation: Evaluation) =>
  evaluation.queued.filter((e) => e.notification.payload.event === 'STOPPED').map((e) => e.host)

/**
 * Decides with the nodes the list does not hold among those it would notify about as not hosts,
 * exactly as for Consul's servers, again until no such node is queued (one taken out frees a
 * rate-limit slot for another); then warns about them once.
 */
async function withoutUnknown(monitor: Monitor, input: EvaluationInput, list: HostList): Promise<Evaluation> {
  const nameOf = input.masakariName ?? ((node: string) => node)
  const unknown = new Map<string, string>()
  let evaluation = evaluate(input)
  for (;;) {
    const more = unknownHosts(stoppedHosts(evaluation), nameOf, list)
    if (more.size === 0) break
    for (const [node, why] of more) unknown.set(node, why)
    evaluation = evaluate({ ...input, notHosts: new Map([...(input.notHosts ?? []), ...unknown]) })
  }
  if (unknown.size > 0) await warnUnknown(monitor, list, unknown, nameOf)
  return evaluation
}

/** The stored snapshots with the incoming ones in place of their networks', unless older (said). */
async function withIncoming(monitor: Monitor, incoming: Snapshot[]): Promise<{ snapshots: Snapshots; fresh: Snapshot[] }> {
  const snapshots = await readSnapshots(monitor.config.stateDir)
  const fresh = incoming.filter((s) => supersedes(s, snapshots[s.network]))
  for (const s of incoming.filter((s) => !fresh.includes(s))) {
    const stored = snapshots[s.network]!
    monitor.logger.info('a newer view of this network is already stored; this older one is not used', {
      network: s.network,
      consulIndex: s.consulIndex,
      storedIndex: stored.consulIndex,
      storedAt: stored.receivedAt,
    })
  }
  for (const s of fresh) snapshots[s.network] = s
  return { snapshots, fresh }
}

/** Before a recovery: the own agents asked; one that answered without seeing nodes turns the check critical. */
async function confirmRecovery(monitor: Monitor, { fetch, tls }: AgentClient): Promise<Partial<Record<Network, Confirmation>>> {
  const { config, strategy, logger } = monitor
  const access = config.consulAccess
  const confirmations = await askAgents(strategy.sequence, config.hostname, config.consul, fetch, access, tls)
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
  return confirmations
}
