/**
 * Each fenced host's options as a run needs them (issue #21): fencing.hosts (with hostsFile's,
 * merged at load), else fencing.template filled from the node's meta in the management agent's
 * catalog. lib/fence/fence-template.ts decides; this asks Consul, with consul.*'s token, TLS and
 * timeout. Delivery asks for one host when its STOPPED is due; fence-check and validate for
 * every host they check.
 */
import type { Config } from '../config/config.js'
import { type ConsulAgent, consulAgent } from '../consul/consul-api.js'
import { NODE_READ_RULE } from '../consul/consul-agents.js'
import { catalogNodeMeta, catalogNodeMetaOf, consulServers, managementAgentAddress } from '../consul/host-names.js'
import { checkedHosts, type FenceTarget, fenceTarget, needsNodeMeta, type NodeMeta, templateMetaKeys } from '../fence/fence-template.js'
import { snapshotPath } from '../state/paths.js'
import { readSnapshot } from '../state/snapshot.js'
import { consulTls } from './coordination.js'
import type { Deps } from './deps.js'

const UNFILLED = 'fencing.template cannot be filled'
const NO_AGENT = `${UNFILLED}: no management agent to read node meta from (consul.agents.management or CONSUL_HTTP_ADDR)`

/** The management agent, whose catalog holds the node meta; undefined when none is set (the config then refuses a template reading meta). */
async function managementAgent(config: Config, deps: Deps): Promise<ConsulAgent | undefined> {
  const addr = managementAgentAddress(config.consul.agents, deps.configEnv.env)
  if (addr === undefined) return undefined
  return consulAgent(addr, config.consulAccess, await deps.fetch(), await consulTls(config.consulAccess, deps), config.consul.timeout)
}

/** The template filled with what the catalog holds for the node; a node the catalog does not show is the reason. */
function fromCatalog(config: Config, host: string, meta: NodeMeta | undefined, agent: ConsulAgent): FenceTarget {
  if (meta === undefined)
    return {
      reason: `${UNFILLED}: node ${host} is not in the management agent's catalog (${agent.url}): not its Consul node name, or the agent's token lacks ${NODE_READ_RULE}`,
    }
  return fenceTarget(config.fencing, host, meta)
}

/**
 * One host's options at delivery. Its node meta is asked (`GET /v1/catalog/node/<node>`) only
 * when the template reads it; an agent that does not answer is the reason, and the fence fails
 * (retried, never NORMAL).
 */
export async function fenceTargetAt(config: Config, deps: Deps, host: string): Promise<FenceTarget> {
  if (!needsNodeMeta(config.fencing, host)) return fenceTarget(config.fencing, host)
  try {
    const agent = await managementAgent(config, deps)
    if (agent === undefined) return { reason: NO_AGENT }
    return fromCatalog(config, host, await catalogNodeMetaOf(agent, host), agent)
  } catch (err) {
    return { reason: `${UNFILLED}: the node meta of ${host} is unavailable: ${(err as Error).message}` }
  }
}

export interface CheckTargets {
  /** Each checked host with its options, or why it has none (sorted by host). */
  targets: Array<{ host: string; target: FenceTarget }>
  /** What limits the check (no management snapshot yet, the Consul servers unknown): a warning each. */
  notes: string[]
}

/**
 * fence-check's hosts (checkedHosts: the own entries, and with a template every node of the
 * management snapshot but this controller, the Consul servers and hostNames.exclude) with
 * their options: the whole catalog's meta asked once (`GET /v1/catalog/nodes`), not a request
 * per node of a large cloud.
 */
export async function checkTargets(config: Config, deps: Deps): Promise<CheckTargets> {
  const fencing = config.fencing
  if (fencing.template === undefined)
    return { targets: checkedHosts(fencing, [], notHosts(config)).map((host) => ({ host, target: fenceTarget(fencing, host) })), notes: [] }
  const notes: string[] = []
  const nodes = await managementNodes(config, notes)
  const agent = await managementAgent(config, deps)
  const readsMeta = templateMetaKeys(fencing.template).length > 0
  const [servers, catalog] = await Promise.allSettled([
    agent ? consulServers(agent) : new Set<string>(),
    agent && readsMeta ? catalogNodeMeta(agent) : new Map<string, Record<string, string>>(),
  ])
  if (servers.status === 'rejected')
    notes.push(`fencing.template: the Consul servers could not be asked (${(servers.reason as Error).message}): checked as hosts`)
  const hosts = checkedHosts(fencing, nodes, notHosts(config, servers.status === 'fulfilled' ? servers.value : undefined))
  const targetOf = (host: string): FenceTarget => {
    if (!needsNodeMeta(fencing, host)) return fenceTarget(fencing, host)
    if (!agent) return { reason: NO_AGENT }
    if (catalog.status === 'rejected') return { reason: `${UNFILLED}: node meta unavailable: ${(catalog.reason as Error).message}` }
    return fromCatalog(config, host, catalog.value.get(host), agent)
  }
  return { targets: hosts.map((host) => ({ host, target: targetOf(host) })), notes }
}

const notHosts = (config: Config, servers: ReadonlySet<string> = new Set()) => ({
  own: config.hostname,
  servers,
  exclude: config.hostNames.exclude,
})

/** The management snapshot's nodes; none, with a note, when there is no snapshot yet or it cannot be read. */
async function managementNodes(config: Config, notes: string[]): Promise<string[]> {
  const path = snapshotPath(config.stateDir, 'management')
  try {
    const snapshot = await readSnapshot(config.stateDir, 'management')
    if (snapshot) return Object.keys(snapshot.nodes)
    notes.push(`fencing.template: no management snapshot yet (${path}): only fencing.hosts and fencing.hostsFile are checked`)
  } catch (err) {
    notes.push(
      `fencing.template: the management snapshot cannot be read (${(err as Error).message}): only fencing.hosts and fencing.hostsFile are checked`,
    )
  }
  return []
}
