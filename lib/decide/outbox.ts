/**
 * Pure rules of the outbox: what is due, what has expired, how long to back off, and how a
 * final answer moves an entry from the outbox into the ledger.
 */
import { z } from 'zod'
import { hostEntry, withHostEntry } from '../base/host-record.js'
import { counted, type LedgerEntry, type LedgerRecord, type Outcome, type OutboxEntry, type StoreState } from './state-shape.js'

/** masakari.delivery in the config (seconds): how a notification that could not be delivered is retried. */
export const DeliverySchema = z
  .strictObject({
    /** Seconds before the first retry; doubles each time. */
    initialBackoff: z.number().positive().default(1),
    /** Upper bound of the wait between retries, seconds. */
    maxBackoff: z.number().positive().default(30),
    /** Seconds after the decision when an undelivered notification is given up (logged as an error). */
    expiry: z.number().positive().default(600),
    /** Requests in flight towards Masakari at once (different hosts; one host's are sent in order). */
    concurrency: z.number().int().positive().default(4),
    /**
     * Seconds the handler that recorded a notification spends sending it itself before it
     * leaves it to the worker (the watch waits that long at most); 0: the worker sends all.
     */
    firstAttemptBudget: z.number().min(0).max(10).default(1.5),
  })
  .prefault({})

/** What a delivery pass needs of the config (the first attempt's budget is the handler's, lib/run/first-attempt.ts). */
export type DeliveryPolicy = Omit<z.infer<typeof DeliverySchema>, 'firstAttemptBudget'>

/** Exponential backoff: initial, 2×initial, 4×… capped at max. */
export function backoffMs(attempts: number, policy: DeliveryPolicy): number {
  const exp = Math.min(attempts - 1, 30)
  return Math.min(policy.initialBackoff * 2 ** Math.max(0, exp), policy.maxBackoff) * 1000
}

/**
 * Entries to send now: the oldest entry of each host (a host's STARTED never overtakes its
 * STOPPED), due by its backoff, at most `concurrency` of them.
 */
export function dueEntries(state: StoreState, now: Date, concurrency: number): OutboxEntry[] {
  const seen = new Set<string>()
  const due: OutboxEntry[] = []
  for (const entry of state.outbox) {
    if (seen.has(entry.host)) continue
    seen.add(entry.host)
    if (Date.parse(entry.nextAttemptAt) <= now.getTime() && due.length < concurrency) due.push(entry)
  }
  return due
}

/** The earliest time a host's oldest entry becomes due, if any is waiting. */
export function nextDue(state: StoreState): Date | undefined {
  const heads = new Map<string, OutboxEntry>()
  for (const entry of state.outbox) if (!heads.has(entry.host)) heads.set(entry.host, entry)
  const times = [...heads.values()].map((e) => Date.parse(e.nextAttemptAt))
  return times.length === 0 ? undefined : new Date(Math.min(...times))
}

/** Anything left to do: an outbox entry to deliver, or a held-back or unconfirmed decision to take again. */
export function hasPendingWork(state: StoreState): boolean {
  return state.outbox.length > 0 || state.wakeAt !== undefined
}

/** When a worker must next act: the next entry due or the held-back decision's time, whichever is first. */
export function nextWake(state: StoreState): Date | undefined {
  const times = [nextDue(state), state.wakeAt === undefined ? undefined : new Date(state.wakeAt)]
    .filter((d): d is Date => d !== undefined)
    .map((d) => d.getTime())
  return times.length === 0 ? undefined : new Date(Math.min(...times))
}

export function isExpired(entry: OutboxEntry, now: Date, policy: DeliveryPolicy): boolean {
  return now.getTime() - Date.parse(entry.decidedAt) > policy.expiry * 1000
}

/**
 * A STARTED only means something after a STOPPED Masakari holds; if its STOPPED ended
 * otherwise (refused, expired), the STARTED is not sent.
 */
export function startedWithoutStopped(state: StoreState, entry: OutboxEntry): boolean {
  return entry.notification.payload.event === 'STARTED' && hostEntry(state.ledger, entry.host)?.notified?.event !== 'STOPPED'
}

/**
 * Removes the entry and records its final outcome in the host's ledger entry (with its fence, if
 * it was fenced; `sent`: what a STOPPED sent UNKNOWN after failed fences says).
 */
export function finish(
  state: StoreState,
  entryId: string,
  outcome: Outcome,
  message: string,
  now: Date,
  sent?: Pick<LedgerRecord, 'hostStatus' | 'fenceError'>,
): StoreState {
  const entry = state.outbox.find((e) => e.id === entryId)
  if (!entry) return state
  const record: LedgerRecord = {
    id: entry.id,
    event: entry.notification.payload.event,
    outcome,
    at: now.toISOString(),
    generatedTime: entry.notification.generated_time,
    message,
    ...(entry.fenced === undefined ? {} : { fenced: entry.fenced }),
    ...sent,
  }
  const held = outcome === 'accepted' || outcome === 'duplicate'
  const before: LedgerEntry = hostEntry(state.ledger, entry.host) ?? { firstSeenAt: entry.decidedAt }
  const after: LedgerEntry = held ? { ...before, notified: record } : { ...before, unsent: record }
  return {
    ...state,
    ledger: withHostEntry(state.ledger, entry.host, after),
    outbox: state.outbox.filter((e) => e.id !== entryId),
    counters: counted(state.counters, { notifications: outcome }),
  }
}

/** Records a failed attempt and when to try again. */
export function retryLater(state: StoreState, entryId: string, error: string, now: Date, policy: DeliveryPolicy): StoreState {
  return {
    ...state,
    counters: counted(state.counters, { retries: true }),
    outbox: state.outbox.map((e) => {
      if (e.id !== entryId) return e
      const attempts = e.attempts + 1
      return { ...e, attempts, lastError: error, nextAttemptAt: new Date(now.getTime() + backoffMs(attempts, policy)).toISOString() }
    }),
  }
}
