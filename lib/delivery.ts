/**
 * One delivery pass over the outbox: what is due goes to Masakari, and each answer is recorded.
 * The worker (lib/worker.ts), a detached process so that a slow or unreachable Masakari never
 * holds up Consul's watch loop, runs passes until nothing is left to deliver or wait for.
 * The store lock is held only to read and to record, never across a network call.
 */
import { NotSenderError } from './kv-store.js'
import type { Logger } from './log.js'
import type { MasakariClient, SendResult } from './masakari.js'
import { dueEntries, finish, isExpired, nextDue, retryLater, startedWithoutStopped, type DeliveryPolicy } from './outbox.js'
import type { OutboxEntry, Store, StoreState } from './store.js'

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
  const { store, policy, logger } = deps
  const picked = await store.transact(async (state) => {
    const now = deps.now()
    let next = state
    for (const entry of state.outbox) {
      if (isExpired(entry, now, policy)) {
        logger.error('notification expired undelivered', {
          ...describe(entry),
          attempts: entry.attempts,
          lastError: entry.lastError,
          expiry: policy.expiry,
          hint: 'Masakari never accepted it; check masakari.authUrl/endpoint and the API, then recover the host by hand if it is down',
        })
        next = finish(next, entry.id, 'expired', `not delivered within ${policy.expiry} s: ${entry.lastError ?? 'never tried'}`, now)
      }
    }
    for (const entry of dueEntries(next, now, next.outbox.length)) {
      if (startedWithoutStopped(next, entry)) {
        logger.info('STARTED not sent: Masakari holds no STOPPED for this host', describe(entry))
        next = finish(next, entry.id, 'skipped', 'its STOPPED was not accepted', now)
      }
    }
    return { next: next === state ? undefined : next, result: dueEntries(next, now, next.outbox.length) }
  })

  const summary = (state: StoreState, sent: number): PassResult => ({ sent, remaining: state.outbox.length, nextDueAt: nextDue(state) })
  if (picked.length === 0) return store.transact(async (state) => ({ result: summary(state, 0) }))

  let taken = 0 // entries sent (or being sent) so far
  // Group commit: answers wait in `answered`; one recorder at a time writes all that are there.
  const answered: Array<[OutboxEntry, SendResult]> = []
  const recordAnswered = (): Promise<PassResult> =>
    store.transact(async (state) => {
      const now = deps.now()
      let next: StoreState = state
      for (const [entry, result] of answered.splice(0)) {
        if (!state.outbox.some((e) => e.id === entry.id)) continue
        if (result.final) {
          logOutcome(logger, entry, result)
          next = finish(next, entry.id, result.outcome, result.message, now)
        } else {
          next = retryLater(next, entry.id, result.message, now, policy)
          const retryAt = next.outbox.find((e) => e.id === entry.id)?.nextAttemptAt
          logger.warn('notification not delivered, will retry', {
            ...describe(entry),
            attempt: entry.attempts + 1,
            error: result.message,
            retryAt,
          })
        }
      }
      return { next: next === state ? undefined : next, result: summary(next, taken) }
    })
  let latest: PassResult | undefined
  let recorder: Promise<void> | undefined
  let failure: { error: unknown } | undefined
  const startRecorder = () => {
    recorder ??= (async () => {
      try {
        while (answered.length > 0 && !failure) latest = await recordAnswered()
      } catch (error) {
        failure = { error }
      } finally {
        recorder = undefined
      }
    })()
  }

  const startedAt = deps.now().getTime()
  const sender = async (): Promise<void> => {
    while (!failure && taken < picked.length && (taken < policy.concurrency || deps.now().getTime() - startedAt < PASS_BUDGET_MS)) {
      const entry = picked[taken++]!
      if (deps.mayPost && !(await deps.mayPost())) {
        failure ??= { error: new NotSenderError('lost the sender lock: another controller sends now; stopping before the next POST') }
        return
      }
      let result: SendResult
      try {
        result = await deps.client().send(entry.notification)
      } catch (err) {
        result = { final: false, message: `unexpected: ${(err as Error).message}` }
      }
      answered.push([entry, result])
      startRecorder()
    }
  }
  await Promise.all(Array.from({ length: Math.min(policy.concurrency, picked.length) }, sender))
  while (recorder) await recorder
  if (failure) throw failure.error
  // Every answer is recorded by now; the last record's summary is the pass's.
  return latest!
}

function describe(entry: OutboxEntry) {
  return { host: entry.host, event: entry.notification.payload.event, id: entry.id, generatedTime: entry.notification.generated_time }
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
