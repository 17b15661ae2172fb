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
  /**
   * Only on a read-only command's coordination (readOnlyCoordination): set once the shared
   * record could not be read and this controller's own record stood in for it.
   */
  localView?: () => LocalView | undefined
}

/** Why a read-only command shows this controller's own record instead of the shared one (its --json says it). */
export interface LocalView {
  /** Where the shared record is: Consul KV key and agent. */
  record: string
  /** The agent's failure, as Consul's client said it (ECONNREFUSED, no answer within N s, 500 No cluster leader). */
  error: string
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

/** Logged once when a read-only command falls back (README, Logs): fixed text to match on. */
export const LOCAL_VIEW_WARNING =
  "the shared record in Consul KV cannot be read: showing this controller's local view, which may lag the sender's"

/**
 * Coordination for an operator command that only reads (status, explain, outbox): the lock is
 * only looked at (acquire is refused: it would create a session and write session.json), the
 * shared record only read. When the lock's agent cannot be reached, in an incident, the
 * command shows this controller's local view and says so once, instead of failing: its
 * snapshots, which every controller keeps current, and its state.json, which with several
 * controllers holds only what it recorded before they shared a record (the shared ledger and
 * outbox are not in that view: the sender records only in Consul KV). Once the agent failed it is not asked again: an agent that
 * hangs would cost the operator one timeout per question.
 */
export function readOnlyCoordination(c: Coordination, local: Store, logger: Logger): Coordination {
  const record = `Consul KV ${c.config.prefix}state (${c.agent.url})`
  let down: ConsulError | undefined
  let shown: LocalView | undefined
  const peek = async (): Promise<Role> => {
    try {
      if (down) throw down
      return await c.lock.peek()
    } catch (err) {
      if (!unreachable(err)) throw err
      down = err
      return { sender: false, why: `who holds the sender lock is unknown: ${err.message}` }
    }
  }
  const read = async () => {
    try {
      if (down) throw down
      return await c.shared.read()
    } catch (err) {
      if (!unreachable(err)) throw err
      down = err
      if (!shown) {
        shown = { record, error: err.message }
        logger.warn(LOCAL_VIEW_WARNING, {
          ...shown,
          view: "this controller's snapshots and state.json: the sender's ledger and outbox are not in it",
        })
      }
      return local.read()
    }
  }
  return {
    ...c,
    lock: { ...c.lock, peek, acquire: () => Promise.reject(new ReadOnlyError('read-only command: the sender lock is not taken')) },
    shared: readOnlyStore({ read, transact: c.shared.transact }),
    localView: () => shown,
  }
}

/** The https.Agent for the own agents' CA and verification settings, when they need one. */
export async function consulTls(access: ConsulAccess, deps: Deps): Promise<unknown> {
  return access.caPem !== undefined || !access.sslVerify ? deps.tlsAgent(access.caPem, !access.sslVerify) : undefined
}
