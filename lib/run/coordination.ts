/**
 * Several controllers, one sender: when the own agent of the lock's network is configured (or
 * consul.lock.enabled is true), every controller keeps its own snapshots and evaluates, but
 * only the holder of the Consul session lock records decisions, in the record they share in
 * Consul KV, and sends them. With one controller nothing else changes: it holds the lock.
 */
import type { Config } from '../config/config.js'
import { type ConsulAccess, type ConsulAgent, ConsulError, consulAgent } from '../consul/consul-api.js'
import { kvStore } from '../consul/kv-store.js'
import type { Logger } from '../base/log.js'
import type { Deps } from './deps.js'
import { type LockConfig, type Role, senderLock, type SenderLock } from '../consul/sender.js'
import { ReadOnlyError, readOnlyStore, type Store } from '../state/store.js'

export interface Coordination {
  lock: SenderLock
  /** The shared record (Consul KV). */
  shared: Store
  agent: ConsulAgent
  config: LockConfig
}

/** The agent of the lock's network: configured, else CONSUL_HTTP_ADDR; undefined when coordination is off. */
export function lockAgentAddress(config: Config, env: Record<string, string | undefined>): string | undefined {
  const lock = config.consul.lock
  if (lock.enabled === false) return undefined
  return config.consul.agents[lock.network] ?? (lock.enabled === true ? env.CONSUL_HTTP_ADDR : undefined)
}

export async function coordination(config: Config, deps: Deps): Promise<Coordination | undefined> {
  const addr = lockAgentAddress(config, deps.configEnv.env)
  if (addr === undefined) {
    if (config.consul.lock.enabled === true) {
      throw new Error(
        `consul.lock.enabled is true but no agent for ${config.consul.lock.network}: set consul.agents.${config.consul.lock.network} or CONSUL_HTTP_ADDR`,
      )
    }
    return undefined
  }
  const agent = consulAgent(
    addr,
    config.consulAccess,
    await deps.fetch(),
    await consulTls(config.consulAccess, deps),
    config.consul.timeout,
  )
  const lock = senderLock(agent, config.consul.lock, config.hostname, config.stateDir)
  return { lock, shared: kvStore(agent, config.consul.lock, lock, config.stateDir), agent, config: config.consul.lock }
}

/** The agent did not answer (refused, timed out) or could not (5xx: no leader); a 403 is not this. */
const unreachable = (err: unknown): err is ConsulError => err instanceof ConsulError && (err.status === undefined || err.status >= 500)

/**
 * Coordination for an operator command that only reads (status, explain, outbox): the lock is
 * only looked at (acquire is refused: it would create a session and write session.json), the
 * shared record only read. When the lock's agent cannot be reached, in an incident, the
 * command shows this controller's local view (its snapshots and state.json) and says so once,
 * instead of failing: the shared ledger and outbox are not in that view.
 */
export function readOnlyCoordination(c: Coordination, local: Store, logger: Logger): Coordination {
  let warned = false
  const fallBack = (err: ConsulError) => {
    if (!warned)
      logger.warn(`${c.config.network} agent cannot be reached: showing this controller's local view`, {
        agent: c.agent.url,
        error: err.message,
        view: "this controller's snapshots and state.json; the shared record (the sender's ledger and outbox) is not in it",
      })
    warned = true
  }
  const peek = async (): Promise<Role> => {
    try {
      return await c.lock.peek()
    } catch (err) {
      if (!unreachable(err)) throw err
      fallBack(err)
      return { sender: false, why: `who holds the sender lock is unknown: ${err.message}` }
    }
  }
  const read = async () => {
    try {
      return await c.shared.read()
    } catch (err) {
      if (!unreachable(err)) throw err
      fallBack(err)
      return local.read()
    }
  }
  return {
    ...c,
    lock: { ...c.lock, peek, acquire: () => Promise.reject(new ReadOnlyError('read-only command: the sender lock is not taken')) },
    shared: readOnlyStore({ read, transact: c.shared.transact }),
  }
}

/** The https.Agent for the own agents' CA and verification settings, when they need one. */
export async function consulTls(access: ConsulAccess, deps: Deps): Promise<unknown> {
  return access.caPem !== undefined || !access.sslVerify ? deps.tlsAgent(access.caPem, !access.sslVerify) : undefined
}
