/**
 * Fencing at delivery (issue #21), the pure part: which outbox entries a power-off must precede,
 * what a failed fence leads to (another try within the delivery expiry, or the STOPPED sent with
 * `host_status: UNKNOWN` when no try is left), and how the record says a host was fenced. A
 * host whose decision a guard holds (burst, isolation, rate limit) has no outbox entry: only a
 * queued STOPPED is ever fenced.
 */
import { backoffMs, type DeliveryPolicy } from './outbox.js'
import type { Fenced, Notification, OutboxEntry, StoreState } from './state-shape.js'
import { counted } from './state-shape.js'

/** A STOPPED for a host with fencing options, not yet fenced (a takeover finds `fenced` and sends it). */
export function needsFence(entry: OutboxEntry, fencedHost: (host: string) => boolean): boolean {
  return entry.notification.payload.event === 'STOPPED' && entry.fenced === undefined && fencedHost(entry.host)
}

/**
 * How late a worker may pick an entry up after its retry is due (its sleep, a slow pass): a
 * retry due this close to the expiry might find the entry expired, never sent at all.
 */
export const FENCE_RETRY_SLACK_MS = 2000

export type AfterFenceFailure = { next: 'retry'; retryAt: string } | { next: 'send-unknown' }

/**
 * A fence failed at `now`: try again with the outbox's backoff while that try comes before the
 * expiry; when it would not (or the expiry has passed during the fence), this was the last try,
 * and the STOPPED goes with `host_status: UNKNOWN` rather than expire unsaid.
 */
export function afterFenceFailure(
  entry: Pick<OutboxEntry, 'attempts' | 'decidedAt'>,
  now: Date,
  policy: DeliveryPolicy,
  slackMs = FENCE_RETRY_SLACK_MS,
): AfterFenceFailure {
  const retryAt = now.getTime() + backoffMs(entry.attempts + 1, policy)
  const expiresAt = Date.parse(entry.decidedAt) + policy.expiry * 1000
  return retryAt + slackMs > expiresAt ? { next: 'send-unknown' } : { next: 'retry', retryAt: new Date(retryAt).toISOString() }
}

/** The same notification, said with another host_status (its generated_time kept). */
export function withHostStatus(n: Notification, hostStatus: Notification['payload']['host_status']): Notification {
  return { ...n, payload: { ...n.payload, host_status: hostStatus } }
}

/** The entry marked fenced (its fence error cleared); the state unchanged when it is gone. */
export function markFenced(state: StoreState, entryId: string, fenced: Fenced): StoreState {
  if (!state.outbox.some((e) => e.id === entryId)) return state
  return {
    ...state,
    outbox: state.outbox.map((e) => {
      if (e.id !== entryId) return e
      const { fenceError: _, ...rest } = e
      return { ...rest, fenced }
    }),
  }
}

/** A failed fence, counted (fence_failures_total), its reason kept on the entry for the health note. */
export function fenceFailed(state: StoreState, entryId: string, reason: string): StoreState {
  return {
    ...state,
    counters: counted(state.counters, { fenceFailures: true }),
    outbox: state.outbox.map((e) => (e.id === entryId ? { ...e, fenceError: reason } : e)),
  }
}
