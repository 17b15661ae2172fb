/**
 * Asks the monitor's own Consul agents, just before a recovery is decided, whether their
 * cluster has a leader and which nodes it shows failed. The watch's snapshot may be seconds
 * old; a network whose agent does not answer must not carry a recovery.
 */
import type { z } from 'zod'
import type { ConsulAgentsSchema } from './config.js'
import { parseChecks } from './consul-input.js'
import type { Confirmation } from './evaluator.js'
import type { Fetch } from './masakari.js'
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
    const leader = JSON.parse(await get(fetch, `${base}/v1/status/leader`, timeoutSeconds)) as unknown
    if (typeof leader !== 'string' || leader === '') return { ok: false, reason: `no cluster leader (agent ${addr})` }
    const checks = parseChecks(await get(fetch, `${base}/v1/health/state/critical`, timeoutSeconds))
    return { ok: true, critical: new Set(checks.filter((c) => c.CheckID === 'serfHealth').map((c) => c.Node)) }
  } catch (err) {
    return { ok: false, reason: (err as Error).message }
  }
}

/** Asks every configured agent of the given networks, in parallel. */
export async function askAgents(networks: Network[], config: AgentsConfig, fetch: Fetch): Promise<Partial<Record<Network, Confirmation>>> {
  const asked = networks.filter((n) => config.agents[n] !== undefined)
  const answers = await Promise.all(asked.map((n) => askAgent(config.agents[n]!, fetch, config.timeout)))
  return Object.fromEntries(asked.map((n, i) => [n, answers[i]!]))
}
