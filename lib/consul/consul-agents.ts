/**
 * Asks the monitor's own Consul agents, just before a recovery is decided, whether their
 * cluster has a leader and which nodes it shows failed. The watch's snapshot may be seconds
 * old; a network whose agent does not answer must not carry a recovery. An answer that cannot
 * see nodes (ACLs) is a refusal, never "nothing failed".
 */
import { z } from 'zod'
import { type ConsulAccess, consulAgent } from './consul-api.js'
import { type Check, SERF_HEALTH } from './checks-payload.js'
import { parseChecks } from './consul-input.js'
import type { AgentGossip, Confirmation } from '../decide/evaluator.js'
import type { Fetch } from '../base/http.js'
import type { Network } from '../base/networks.js'

/** The part of the monitor's config this module reads: consul.agents and consul.timeout (ConsulAgentsSchema in lib/config/config.ts). */
export interface AgentsConfig {
  agents: Partial<Record<Network, string>>
  timeout: number
}

/** Without ACLs or TLS: what an agent on loopback needs. */
const PLAIN: ConsulAccess = { ssl: false, sslVerify: true }

/** The rule of the monitor's policy (README, Consul ACLs) without which Consul hides every node. */
export const NODE_READ_RULE = 'node_prefix "" { policy = "read" }'

/**
 * The controller's own node is in every cluster it watches, so an answer that does not list
 * its serfHealth cannot be a complete view: with ACLs on, Consul answers a token without
 * node:read with lists filtered to nothing, and 200 all the same.
 */
export function showsOwnNode(checks: readonly Check[], ownNode: string): boolean {
  return checks.some((c) => c.Node === ownNode && c.CheckID === SERF_HEALTH)
}

/** Why an answer without the own node is refused: the missing ACL rule, or a `hostname` that is not the node's name. */
export function blindReason(what: string, ownNode: string): string {
  return (
    `${what} does not show this controller's own node ${ownNode} (its serfHealth), so it cannot see nodes: ` +
    `with Consul ACLs on, its token lacks ${NODE_READ_RULE} (README, Consul ACLs); or hostname is not this controller's node name there`
  )
}

export async function askAgent(
  addr: string,
  ownNode: string,
  fetch: Fetch,
  timeoutSeconds: number,
  access: ConsulAccess = PLAIN,
  tls?: unknown,
): Promise<Confirmation> {
  const agent = consulAgent(addr, access, fetch, tls, timeoutSeconds)
  const get = async (path: string) => (await agent.ok('GET', path)).text
  try {
    // The own node's checks in the same round trip: the proof that the critical list is complete.
    const [leaderText, criticalText, ownText, gossip, degraded] = await Promise.all([
      get('/v1/status/leader'),
      get('/v1/health/state/critical'),
      get(`/v1/health/node/${encodeURIComponent(ownNode)}`),
      agentGossip(get),
      gossipDegraded(get),
    ])
    const leader = JSON.parse(leaderText) as unknown
    if (typeof leader !== 'string' || leader === '') return { ok: false, reason: `no cluster leader (agent ${addr})` }
    if (!showsOwnNode(parseChecks(ownText), ownNode))
      return { ok: false, refused: true, reason: blindReason(`agent ${addr}'s answer`, ownNode) }
    const checks = parseChecks(criticalText)
    const critical = new Set(checks.filter((c) => c.CheckID === SERF_HEALTH).map((c) => c.Node))
    return { ok: true, critical, ...(gossip ? { gossip } : {}), ...(degraded ? { degraded } : {}) }
  } catch (err) {
    return { ok: false, reason: (err as Error).message }
  }
}

/** The part of GET /v1/agent/self that sets the burst guard's quiet window (Consul 1.8's DebugConfig). */
const AgentSelfSchema = z.object({
  DebugConfig: z.object({ GossipLANProbeInterval: z.string(), GossipLANSuspicionMult: z.number().int().positive() }),
})

/**
 * The agent's own gossip tuning, which beats what the config assumes. Optional: an agent that
 * does not say (an ACL token without agent:read, another Consul version) leaves the config's.
 */
async function agentGossip(get: (path: string) => Promise<string>): Promise<AgentGossip | undefined> {
  try {
    const self = AgentSelfSchema.parse(JSON.parse(await get('/v1/agent/self')))
    const probeInterval = goDurationSeconds(self.DebugConfig.GossipLANProbeInterval)
    if (probeInterval === undefined || probeInterval <= 0) return undefined
    return { probeInterval, suspicionMult: self.DebugConfig.GossipLANSuspicionMult }
  } catch {
    return undefined
  }
}

/**
 * The memberlist health score (0 to 8) from which the agent's own view counts as degraded. A
 * score of 1 or 2 comes and goes on a busy agent, and when the agent itself probed a lone
 * failed host just before a metrics interval closed (the bench held 2 of 12 lone failures for
 * that at 2); hosts failing together drove it to 6..7 within seconds, and declared their deaths
 * without enough confirmations (degraded.timeout), which is the surer sign.
 */
export const DEGRADED_HEALTH_SCORE = 4

/** The part of GET /v1/agent/metrics (the agent's current 10 s interval) that tells a degraded gossip view. */
const AgentMetricsSchema = z.object({
  Gauges: z.array(z.object({ Name: z.string(), Value: z.number() })),
  Counters: z.array(z.object({ Name: z.string(), Count: z.number() })),
})

/**
 * Lifeguard's own verdict on this agent's view, from its metrics: a rising health score means
 * its probes fail without the nacks that live peers send back, and `degraded.timeout` counts
 * deaths it declared without enough peers confirming. A lone failure in a healthy cluster shows
 * neither (live peers nack and confirm); hosts failing together, or our own side cut off, show
 * both seconds after it starts, before Consul has declared more than one of them dead. Optional
 * like the gossip tuning: no metrics, no signal.
 */
async function gossipDegraded(get: (path: string) => Promise<string>): Promise<string | undefined> {
  try {
    const m = AgentMetricsSchema.parse(JSON.parse(await get('/v1/agent/metrics')))
    const score = m.Gauges.find((g) => g.Name.endsWith('memberlist.health.score'))?.Value ?? 0
    const unconfirmed = m.Counters.find((c) => c.Name.endsWith('memberlist.degraded.timeout'))?.Count ?? 0
    const signs = [
      ...(score >= DEGRADED_HEALTH_SCORE ? [`memberlist health score ${score} of 8`] : []),
      ...(unconfirmed > 0 ? [`${unconfirmed} death(s) declared without enough peers confirming`] : []),
    ]
    return signs.length > 0 ? signs.join(', ') : undefined
  } catch {
    return undefined
  }
}

const GO_UNITS: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 }

/** "1s", "400ms", "1m30s" (Go's time.Duration text) in seconds; undefined if it is not one. */
export function goDurationSeconds(text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) return undefined
  let seconds = 0
  for (const [, value, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) seconds += Number(value) * GO_UNITS[unit!]!
  return seconds
}

/** Asks every configured agent of the given networks, in parallel; `ownNode`: this controller's node name (config.hostname). */
export async function askAgents(
  networks: Network[],
  ownNode: string,
  config: AgentsConfig,
  fetch: Fetch,
  access: ConsulAccess = PLAIN,
  tls?: unknown,
): Promise<Partial<Record<Network, Confirmation>>> {
  const asked = networks.filter((n) => config.agents[n] !== undefined)
  const answers = await Promise.all(asked.map((n) => askAgent(config.agents[n]!, ownNode, fetch, config.timeout, access, tls)))
  return Object.fromEntries(asked.map((n, i) => [n, answers[i]!]))
}
