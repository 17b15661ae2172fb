/**
 * Asks the monitor's own Consul agents, just before a recovery is decided, whether their
 * cluster has a leader and which nodes it shows failed. The watch's snapshot may be seconds
 * old; a network whose agent does not answer must not carry a recovery.
 */
import { z } from 'zod'
import type { ConsulAgentsSchema } from './config.js'
import { parseChecks } from './consul-input.js'
import type { AgentGossip, Confirmation } from './evaluator.js'
import type { Fetch } from './http.js'
import type { Network } from './networks.js'

/** The part of the monitor's config this module reads. */
export type AgentsConfig = Pick<z.infer<typeof ConsulAgentsSchema>, 'agents' | 'timeout'>

function baseUrl(addr: string): string {
  return /^https?:\/\//.test(addr) ? addr.replace(/\/+$/, '') : `http://${addr}`
}

async function get(fetch: Fetch, url: string, timeoutSeconds: number): Promise<string> {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), timeoutSeconds * 1000)
  try {
    const res = await fetch(url, { method: 'GET', headers: { Accept: 'application/json' }, signal: controller.signal })
    const text = await res.text()
    if (res.status !== 200) throw new Error(`${url} answered ${res.status}: ${text.trim().slice(0, 200)}`)
    return text
  } catch (err) {
    const e = err as Error
    throw new Error(e.name === 'AbortError' ? `${url}: no answer within ${timeoutSeconds} s` : e.message)
  } finally {
    clearTimeout(timer)
  }
}

export async function askAgent(addr: string, fetch: Fetch, timeoutSeconds: number): Promise<Confirmation> {
  const base = baseUrl(addr)
  try {
    const [leaderText, criticalText, gossip, degraded] = await Promise.all([
      get(fetch, `${base}/v1/status/leader`, timeoutSeconds),
      get(fetch, `${base}/v1/health/state/critical`, timeoutSeconds),
      agentGossip(base, fetch, timeoutSeconds),
      gossipDegraded(base, fetch, timeoutSeconds),
    ])
    const leader = JSON.parse(leaderText) as unknown
    if (typeof leader !== 'string' || leader === '') return { ok: false, reason: `no cluster leader (agent ${addr})` }
    const checks = parseChecks(criticalText)
    const critical = new Set(checks.filter((c) => c.CheckID === 'serfHealth').map((c) => c.Node))
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
async function agentGossip(base: string, fetch: Fetch, timeoutSeconds: number): Promise<AgentGossip | undefined> {
  try {
    const self = AgentSelfSchema.parse(JSON.parse(await get(fetch, `${base}/v1/agent/self`, timeoutSeconds)))
    const probeInterval = goDurationSeconds(self.DebugConfig.GossipLANProbeInterval)
    if (probeInterval === undefined || probeInterval <= 0) return undefined
    return { probeInterval, suspicionMult: self.DebugConfig.GossipLANSuspicionMult }
  } catch {
    return undefined
  }
}

/** The part of GET /v1/agent/metrics (the agent's current 10 s interval) that tells a degraded gossip view. */
/**
 * A health score of 1 comes and goes on a busy agent (one probe answered late); hosts failing
 * together drove it to 2..7 within seconds in our runs.
 */
export const DEGRADED_HEALTH_SCORE = 2

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
async function gossipDegraded(base: string, fetch: Fetch, timeoutSeconds: number): Promise<string | undefined> {
  try {
    const m = AgentMetricsSchema.parse(JSON.parse(await get(fetch, `${base}/v1/agent/metrics`, timeoutSeconds)))
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

/** Asks every configured agent of the given networks, in parallel. */
export async function askAgents(networks: Network[], config: AgentsConfig, fetch: Fetch): Promise<Partial<Record<Network, Confirmation>>> {
  const asked = networks.filter((n) => config.agents[n] !== undefined)
  const answers = await Promise.all(asked.map((n) => askAgent(config.agents[n]!, fetch, config.timeout)))
  return Object.fromEntries(asked.map((n, i) => [n, answers[i]!]))
}
