/**
 * One delivery pass over the outbox: what is due goes to Masakari, and each answer is recorded.
 * The worker (lib/run/worker.ts), a detached process so that a slow or unreachable Masakari never
 * holds up Consul's watch loop, runs passes until nothing is left to deliver or wait for.
 * The store lock is held only to read and to record, never across a network call.
 */
import type { Fetch } from '../base/http.js'
import { NotSenderError } from '../consul/kv-store.js'
import type { Logger } from '../base/log.js'
import { stage } from '../base/stages.js'
import { masakariClient, type MasakariClient, type SendResult } from '../openstack/masakari.js'
import { fileTokenCache } from '../openstack/token-cache.js'
import { tokenPath } from '../state/paths.js'
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'
import { dueEntries, finish, isExpired, nextDue, retryLater, startedWithoutStopped, type DeliveryPolicy } from '../decide/outbox.js'
import { hostEntry } from '../base/host-record.js'
import type { Store } from '../state/store.js'
import type { OutboxEntry, StoreState } from '../decide/state-shape.js'
import { fenceFailed, needsFence } from '../decide/fence-delivery.js'
import { beforePost, type BeforePost, type FenceAtDelivery, fenceAtDelivery, type FenceNote } from './fence-delivery.js'

export interface DeliveryDeps {
  store: Store
  /** Built on first use: a run with nothing due never loads credentials or opens a connection. */
  client: () => MasakariClient
  policy: DeliveryPolicy
  now: () => Date
  sleep: (ms: number) => Promise<void>
  logger: Logger
  /**
   * With several controllers: asked right before each POST; false when this controller no
   * longer holds the sender lock, and the pass stops before sending (fencing).
   */
  mayPost?: () => Promise<boolean>
  /** fencing.enabled: the power-off that precedes a fenced host's STOPPED (lib/run/fence-delivery.ts); absent when off. */
  fence?: FenceAtDelivery
}

/**
 * The Masakari client is built on first use: a run with nothing due loads no credentials.
 * `override` serves the handler's first attempt (lib/run/first-attempt.ts): a deadline on every
 * request and a shorter timeout.
 */
export async function deliveryDeps(
  monitor: Monitor,
  deps: Deps,
  override: { requestTimeout?: number; fetch?: Fetch; leaveFencesToWorker?: boolean } = {},
): Promise<DeliveryDeps> {
  const { config, store, logger } = monitor
  let client: MasakariClient | undefined
  const fetch = override.fetch ?? (await deps.fetch())
  const agent = await deps.tlsAgent(config.caPem, config.masakari.insecure)
  const clientConfig =
    override.requestTimeout === undefined
      ? config
      : { ...config, masakari: { ...config.masakari, requestTimeout: Math.min(config.masakari.requestTimeout, override.requestTimeout) } }
  const clientDeps = { fetch, now: deps.now, logger, agent, tokenCache: fileTokenCache(tokenPath(config.stateDir)) }
  return {
    store,
    client: () => (client ??= masakariClient(clientConfig, clientDeps)),
    policy: config.masakari.delivery,
    now: deps.now,
    sleep: deps.sleep,
    logger,
    ...(monitor.coordination ? { mayPost: monitor.coordination.lock.stillHeld } : {}),
    ...(config.fencing.enabled ? { fence: fenceAtDelivery(config, deps, override.leaveFencesToWorker === true) } : {}),
  }
}

export interface PassResult {
  sent: number
  remaining: number
  nextDueAt?: Date
}

/**
 * A pass starts no new request after this long (its first `concurrency` requests always go):
 * the caller looks at new work and due timers between passes, so a pass over many entries
 * towards a slow Masakari must not keep it waiting.
 */
const PASS_BUDGET_MS = 1000

/**
 * One pass: expire, skip, then send the head of every host's queue that is due, at most
 * `concurrency` requests in flight: as one answer comes back the next request goes out (a
 * sliding window, not batches that wait for their slowest request). Answers are recorded as
 * they arrive, those that arrive while a record is being written together in the next one
 * (group commit), so writing the state overlaps with Masakari's work on the next requests. A
 * host's later entries wait for the next pass: its STARTED never overtakes its STOPPED.
 */
export async function deliveryPass(deps: DeliveryDeps): Promise<PassResult> {
  const due = await deps.store.transact(async (state) => pickDue(state, deps))
  stage('outbox read')
  const fence = deps.fence
  const picked = fence?.leaveToWorker ? due.filter((e) => !needsFence(e, fence.covers)) : due
  if (picked.length === 0) return deps.store.transact(async (state) => ({ result: summary(state, 0) }))
  return sendPicked(picked, deps)
}

/** Under the lock: gives up on what expired, skips the STARTEDs that cannot go, picks what is due. */
function pickDue(state: StoreState, deps: DeliveryDeps): { next?: StoreState; result: OutboxEntry[] } {
  const now = deps.now()
  const next = skipOrphanStarted(expireOverdue(state, now, deps), now, deps.logger)
  return { next: next === state ? undefined : next, result: dueEntries(next, now, next.outbox.length) }
}

function expireOverdue(state: StoreState, now: Date, { policy, logger }: DeliveryDeps): StoreState {
  let next = state
  for (const entry of state.outbox) {
    if (!isExpired(entry, now, policy)) continue
    logger.error('notification expired undelivered', {
      ...describe(entry),
      attempts: entry.attempts,
      lastError: entry.lastError,
      expiry: policy.expiry,
      hint: 'Masakari never accepted it; check masakari.authUrl/endpoint and the API, then recover the host by hand if it is down',
    })
    next = finish(next, entry.id, 'expired', `not delivered within ${policy.expiry} s: ${entry.lastError ?? 'never tried'}`, now)
  }
  return next
}

function skipOrphanStarted(state: StoreState, now: Date, logger: Logger): StoreState {
  let next = state
  for (const entry of dueEntries(state, now, state.outbox.length)) {
    if (!startedWithoutStopped(next, entry)) continue
    logger.info('STARTED not sent: Masakari holds no STOPPED for this host', describe(entry))
    next = finish(next, entry.id, 'skipped', 'its STOPPED was not accepted', now)
  }
  return next
}

function summary(state: StoreState, sent: number): PassResult {
  return { sent, remaining: state.outbox.length, nextDueAt: nextDue(state) }
}

/** A pass in flight, shared by its senders and its one recorder at a time. */
interface Pass {
  picked: OutboxEntry[]
  startedAt: number
  /** Entries sent (or being sent) so far. */
  taken: number
  /** Group commit: answers wait here; one recorder at a time writes all that are there. */
  answered: Array<[OutboxEntry, SendResult, FenceNote?]>
  recorder?: Promise<void>
  /** The last record's summary. */
  latest?: PassResult
  failure?: { error: unknown }
}

async function sendPicked(picked: OutboxEntry[], deps: DeliveryDeps): Promise<PassResult> {
  const pass: Pass = { picked, startedAt: deps.now().getTime(), taken: 0, answered: [] }
  const senders = Math.min(deps.policy.concurrency, picked.length)
  await Promise.all(Array.from({ length: senders }, () => sendWhileAllowed(pass, deps)))
  while (pass.recorder) await pass.recorder
  if (pass.failure) throw pass.failure.error
  // Every answer is recorded by now; the last record's summary is the pass's.
  return pass.latest!
}

/** One slot of the sliding window: sends the next picked entry as soon as its last answer is in. */
async function sendWhileAllowed(pass: Pass, deps: DeliveryDeps): Promise<void> {
  while (mayStartAnother(pass, deps)) {
    const entry = pass.picked[pass.taken++]!
    if (deps.mayPost && !(await deps.mayPost())) {
      pass.failure ??= { error: new NotSenderError('lost the sender lock: another controller sends now; stopping before the next POST') }
      return
    }
    if (deps.mayPost) stage('sender lock checked')
    let before: BeforePost = { send: entry.notification }
    try {
      // After the lock check, right before the POST: only the sender fences.
      if (deps.fence) before = await beforePost(entry, { ...deps, fence: deps.fence })
    } catch (error) {
      pass.failure ??= { error }
      return
    }
    const result = 'send' in before ? await send(deps, before.send) : before.notSent
    pass.answered.push([entry, result, before.note])
    startRecorder(pass, deps)
  }
}

async function send(deps: DeliveryDeps, notification: OutboxEntry['notification']): Promise<SendResult> {
  try {
    return await deps.client().send(notification)
  } catch (err) {
    return { final: false, message: `unexpected: ${(err as Error).message}` }
  }
}

function mayStartAnother(pass: Pass, deps: DeliveryDeps): boolean {
  if (pass.failure || pass.taken >= pass.picked.length) return false
  return pass.taken < deps.policy.concurrency || deps.now().getTime() - pass.startedAt < PASS_BUDGET_MS
}

function startRecorder(pass: Pass, deps: DeliveryDeps): void {
  pass.recorder ??= recordWhileAnswered(pass, deps)
}

async function recordWhileAnswered(pass: Pass, deps: DeliveryDeps): Promise<void> {
  try {
    while (pass.answered.length > 0 && !pass.failure) pass.latest = await recordAnswered(pass, deps)
  } catch (error) {
    pass.failure = { error }
  } finally {
    pass.recorder = undefined
  }
}

/** Under the lock: every answer waiting by then, in one record. */
function recordAnswered(pass: Pass, deps: DeliveryDeps): Promise<PassResult> {
  return deps.store.transact(async (state) => {
    const now = deps.now()
    let next = state
    for (const [entry, result, note] of pass.answered.splice(0)) {
      if (!state.outbox.some((e) => e.id === entry.id)) continue
      if (note?.fenceFailed !== undefined) next = fenceFailed(next, entry.id, note.fenceFailed)
      next = result.final ? recordFinal(next, entry, result, now, deps.logger, note) : recordRetry(next, entry, result, now, deps)
    }
    return { next: next === state ? undefined : next, result: summary(next, pass.taken) }
  })
}

function recordFinal(
  state: StoreState,
  entry: OutboxEntry,
  result: Extract<SendResult, { final: true }>,
  now: Date,
  logger: Logger,
  note?: FenceNote,
) {
  // An unknown host is an operator's error, said once: not again for its next failure under the same name.
  const last = hostEntry(state.ledger, entry.host)?.unsent
  if (result.outcome === 'host-not-found' && last?.outcome === 'host-not-found' && last.message === result.message)
    logger.info('Masakari still does not know this host (said before): not retried', { ...describe(entry), message: result.message })
  else logOutcome(logger, entry, result)
  const sent = note?.hostStatus === undefined ? undefined : { hostStatus: note.hostStatus, fenceError: note.fenceFailed }
  return finish(state, entry.id, result.outcome, result.message, now, sent)
}

function recordRetry(state: StoreState, entry: OutboxEntry, result: SendResult, now: Date, { policy, logger }: DeliveryDeps) {
  const next = retryLater(state, entry.id, result.message, now, policy)
  const retryAt = next.outbox.find((e) => e.id === entry.id)?.nextAttemptAt
  logger.warn('notification not delivered, will retry', {
    ...describe(entry),
    attempt: entry.attempts + 1,
    error: result.message,
    retryAt,
  })
  return next
}

function describe(entry: OutboxEntry) {
  // host: Consul's node name; masakariHost: the name Masakari was sent (hostNames), when it differs.
  const named = entry.notification.hostname === entry.host ? {} : { masakariHost: entry.notification.hostname }
  return {
    host: entry.host,
    ...named,
    event: entry.notification.payload.event,
    id: entry.id,
    generatedTime: entry.notification.generated_time,
  }
}

function logOutcome(logger: Logger, entry: OutboxEntry, result: Extract<SendResult, { final: true }>): void {
  const fields = { ...describe(entry), outcome: result.outcome, message: result.message, attempts: entry.attempts + 1, uuid: result.uuid }
  switch (result.outcome) {
    case 'accepted':
      logger.info('notification accepted by Masakari', fields)
      return
    case 'duplicate':
      logger.info('Masakari already holds this notification (duplicate): counted as delivered', fields)
      return
    case 'on-maintenance':
      logger.warn('Masakari has the host on maintenance: not retried', fields)
      return
    case 'host-not-found':
      logger.error('Masakari does not know this host: not retried; add it to a failover segment (operator error)', fields)
      return
    default:
      logger.error('Masakari rejected the notification: not retried', fields)
      return
  }
}
