/**
 * One sender among the controllers, elected by Consul itself: a session lock on
 * `<prefix>sender` in one network's cluster (management by default). Only the holder records
 * decisions and sends them; the other controllers evaluate and show `standby`.
 *
 * The session is tied to the node's serfHealth and, when it is registered, to the monitor's own
 * check: a controller that is partitioned, or whose monitor is broken, loses the lock. Consul's
 * lock-delay then keeps anyone from taking it for `lockDelay` seconds, and the holder asks,
 * with a consistent read, whether it still holds the lock before each POST: a holder that lost
 * its session stops sending before another can start. Its late writes are refused too (the KV
 * store writes in a transaction that checks the session).
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { writeFileAtomic } from '../state/atomic-file.js'
import { type ConsulAgent, ConsulError } from './consul-api.js'
import { SERF_HEALTH } from './checks-payload.js'
import { NETWORKS } from '../base/networks.js'
import { bodyStart } from '../base/http.js'

export const LockSchema = z
  .strictObject({
    /** Elect one sender with a Consul session lock; `auto`: when the own agent of `network` is configured. */
    enabled: z.union([z.boolean(), z.literal('auto')]).default('auto'),
    /** The cluster whose KV and sessions hold the lock and the shared record. */
    network: z.enum(NETWORKS).default('management'),
    /** KV prefix of the lock (`sender`) and the shared record (`state`). */
    prefix: z
      .string()
      .regex(/^[^/].*\/$/, 'a KV path ending in /')
      .default('masakari-consul/'),
    /** Seconds nobody can take the lock after its holder lost it (Consul's lock-delay). */
    lockDelay: z.number().int().min(0).max(60).default(15),
    /** The monitor's own check on the controller, bound to the session when it is registered. */
    check: z.string().min(1).default('masakari-consul'),
  })
  .prefault({})
export type LockConfig = z.infer<typeof LockSchema>

export type Role =
  | {
      sender: true
      session: string
      /**
       * This acquire took the lock (an acquire that succeeded, or a raced session of ours
       * adopted), rather than finding it ours: a shared record read while it was being taken may
       * predate the last holder's last write, and is read again (lib/run/record-run.ts).
       */
      taken?: true
    }
  | { sender: false; holder?: string; why: string }

export interface SenderLock {
  /** Holds the lock if it can; says who holds it otherwise. */
  acquire(): Promise<Role>
  /** Before each POST: does our session still hold the lock (consistent read)? */
  stillHeld(): Promise<boolean>
  /** Who holds the lock, without taking it (evaluate.js, a dry run). */
  peek(): Promise<Role>
  /** Our session, once created. */
  session(): string | undefined
}

const SessionFileSchema = z.object({ id: z.string().min(1) })
const KvEntrySchema = z.array(z.object({ Session: z.string().optional(), Value: z.string().nullable().optional() }))
const HolderSchema = z.object({ host: z.string() })

export function senderLock(agent: ConsulAgent, config: LockConfig, host: string, stateDir: string): SenderLock {
  const key = `${config.prefix}sender`
  const sessionPath = join(stateDir, 'session.json')
  let session: string | undefined
  const loadSession = async () => {
    try {
      session ??= SessionFileSchema.parse(JSON.parse(await readFile(sessionPath, 'utf8'))).id
    } catch {
      // none yet, or unreadable: a new one is created
    }
  }
  /** A new session; undefined (and why) when the monitor's own check is critical. */
  const newSession = async (): Promise<string | undefined> => {
    const created = await createSession(agent, config, host)
    if (typeof created !== 'string') return created.why
    session = created
    await writeFileAtomic(sessionPath, `${JSON.stringify({ id: session })}\n`, 0o600)
    return undefined
  }
  const tryAcquire = () => acquireWith(agent, key, session!, host)
  return {
    session: () => session,
    async acquire() {
      await loadSession()
      const refused = session === undefined ? await newSession() : undefined
      if (refused) return { sender: false, ...(await holderOf(agent, key)), why: refused }
      // Already ours (every run of the sender): a read, not a Raft write (kv-store.ts fences).
      if (session !== undefined && (await lockEntry(agent, key))?.Session === session) return { sender: true, session }
      let held = await tryAcquire()
      if (held === 'invalid') {
        const refusedAgain = await newSession()
        if (refusedAgain) return { sender: false, ...(await holderOf(agent, key)), why: refusedAgain }
        held = await tryAcquire()
      }
      if (held === true) return { sender: true, session: session!, taken: true }
      // Two runs on this controller created a session each at once, and the file kept the
      // other one: the lock held by our node's session is ours.
      const raced = await racedSession(agent, key, host, session!)
      if (raced !== undefined) {
        session = raced
        await writeFileAtomic(sessionPath, `${JSON.stringify({ id: session })}\n`, 0o600)
        return { sender: true, session, taken: true }
      }
      return { sender: false, ...(await holderOf(agent, key)) }
    },
    async peek() {
      await loadSession()
      const entry = await lockEntry(agent, key)
      if (session !== undefined && entry?.Session === session) return { sender: true, session }
      return { sender: false, ...(await holderOf(agent, key)) }
    },
    async stillHeld() {
      await loadSession()
      if (session === undefined) return false
      const answer = await agent.request('GET', `/v1/kv/${key}?consistent`)
      if (answer.status !== 200) return false
      return KvEntrySchema.parse(JSON.parse(answer.text))[0]?.Session === session
    },
  }
}

/** One acquire of the lock with our session; 'invalid' when Consul has invalidated the session. */
async function acquireWith(agent: ConsulAgent, key: string, session: string, host: string): Promise<boolean | 'invalid'> {
  const value = JSON.stringify({ host, since: new Date().toISOString() })
  const answer = await agent.request('PUT', `/v1/kv/${key}?acquire=${session}`, value)
  if (answer.status === 200) return answer.text.trim() === 'true'
  // A session that Consul invalidated (node failed, check critical, destroyed) is gone.
  if (answer.status === 500 && /invalid session/i.test(answer.text)) return 'invalid'
  const hint = answer.status === 403 ? ': the ACL token lacks key_prefix write or session_prefix write (README, Consul ACLs)' : ''
  throw new ConsulError(`PUT ${agent.url}/v1/kv/${key}?acquire answered ${answer.status} ${bodyStart(answer.text)}${hint}`, answer.status)
}

function holderName(value: string | null | undefined): string | undefined {
  try {
    return HolderSchema.parse(JSON.parse(Buffer.from(value ?? '', 'base64').toString('utf8'))).host
  } catch {
    return undefined
  }
}

/** The lock's KV entry (consistent read); undefined when the key does not exist; a refusal (403) is a ConsulError. */
async function lockEntry(agent: ConsulAgent, key: string): Promise<z.infer<typeof KvEntrySchema>[number] | undefined> {
  const answer = await agent.request('GET', `/v1/kv/${key}?consistent`)
  if (answer.status === 404) return undefined
  if (answer.status !== 200) await agent.ok('GET', `/v1/kv/${key}?consistent`)
  return KvEntrySchema.parse(JSON.parse(answer.text))[0]
}

const SessionInfoSchema = z.array(z.object({ Node: z.string().min(1) })).nullable()

/** The node a session belongs to (GET /v1/session/info); undefined when Consul no longer has it. */
async function sessionNode(agent: ConsulAgent, id: string): Promise<string | undefined> {
  const answer = await agent.ok('GET', `/v1/session/info/${encodeURIComponent(id)}`)
  return SessionInfoSchema.parse(JSON.parse(answer.text))?.[0]?.Node
}

/**
 * The session holding the lock, when it belongs to our own node. The node is Consul's, not the
 * value's host: two controllers configured with the same hostname must not adopt each other's
 * session. Ours is valid (its acquire answered false, not 'invalid'), so Consul knows its node.
 */
async function racedSession(agent: ConsulAgent, key: string, host: string, ours: string): Promise<string | undefined> {
  const entry = await lockEntry(agent, key)
  if (!entry?.Session || holderName(entry.Value) !== host) return undefined
  const [theirNode, ourNode] = await Promise.all([sessionNode(agent, entry.Session), sessionNode(agent, ours)])
  return theirNode !== undefined && theirNode === ourNode ? entry.Session : undefined
}

/** Who holds the lock, in words for evaluate.js and the log. */
async function holderOf(agent: ConsulAgent, key: string): Promise<{ holder?: string; why: string }> {
  const entry = await lockEntry(agent, key)
  if (!entry) return { why: 'nobody holds the sender lock yet' }
  if (!entry.Session) return { why: "the sender lock is free but within Consul's lock-delay after its holder lost it" }
  const holder = holderName(entry.Value)
  return { ...(holder ? { holder } : {}), why: `${holder ?? 'another controller'} holds the sender lock` }
}

/**
 * A session tied to the node's serfHealth and, if the controller registered it, the monitor's
 * own check; `release` behaviour so that an invalidated session frees the lock (after lock-delay).
 */
async function createSession(agent: ConsulAgent, config: LockConfig, host: string): Promise<string | { why: string }> {
  const checks = [SERF_HEALTH]
  const own = await agent.request('GET', '/v1/agent/checks')
  const registered = own.status === 200 ? (JSON.parse(own.text) as Record<string, { Status?: string; Output?: string }>) : {}
  if (Object.hasOwn(registered, config.check)) {
    // Consul refuses a session tied to a critical check; and a broken monitor must not send.
    const check = registered[config.check]!
    if (check.Status === 'critical') {
      return {
        why: `this controller's own check ${config.check} is critical (${bodyStart(check.Output ?? '') || 'not run yet'}): not taking the sender lock`,
      }
    }
    checks.push(config.check)
  }
  const create = (bound: string[]) =>
    agent.request(
      'PUT',
      '/v1/session/create',
      JSON.stringify({ Name: `masakari-consul sender on ${host}`, LockDelay: `${config.lockDelay}s`, Checks: bound, Behavior: 'release' }),
    )
  let answer = await create(checks)
  // The agent has the check but the catalog not yet (anti-entropy runs later): serfHealth alone
  // for this session; the next one is tied to the check too.
  if (answer.status === 500 && /missing check/i.test(answer.text)) answer = await create([SERF_HEALTH])
  if (answer.status !== 200) {
    const hint = answer.status === 403 ? ': the ACL token lacks session_prefix write (README, Consul ACLs)' : ''
    throw new ConsulError(`PUT ${agent.url}/v1/session/create answered ${answer.status} ${bodyStart(answer.text)}${hint}`, answer.status)
  }
  return z.object({ ID: z.string().min(1) }).parse(JSON.parse(answer.text)).ID
}
