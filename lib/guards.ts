/**
 * The guards that hold a recovery back: self-isolation, hold time, rate limit. Pure functions of
 * the view, the ledger and the clock; the evaluator applies them.
 */
import type { Network } from './networks.js'
import type { Snapshot } from './snapshot.js'
import type { Isolation, LedgerEntry } from './store.js'

export interface GuardPolicy {
  hold: {
    /** Seconds a host must stay in a recovery row before STOPPED is sent. */
    recovery: number
    /** Seconds a host must stay all-up after a recovery before STARTED is sent. */
    back: number
  }
  isolation: {
    /** More than this fraction of a network's known hosts turning down within `window` means we are the one cut off. */
    maxDownFraction: number
    /** More than this many hosts turning down within `window` means the same; null: no count limit. */
    maxDownCount: number | null
    /** Seconds: "at once". */
    window: number
  }
  rateLimit: {
    /** At most this many STOPPED per window; 0 lifts the limit. */
    maxRecoveries: number
    window: number
  }
}

export const DEFAULT_GUARDS: GuardPolicy = {
  hold: { recovery: 5, back: 5 },
  isolation: { maxDownFraction: 0.55, maxDownCount: null, window: 30 },
  rateLimit: { maxRecoveries: 5, window: 300 },
}

const secondsBetween = (from: string, to: Date) => (to.getTime() - Date.parse(from)) / 1000

export interface NetworkView {
  /** Hosts the network's cluster knows (up, down or maintenance), the monitor's own node excluded. */
  known: number
  /** Hosts down now. */
  down: number
  /** Hosts that turned down within the isolation window. */
  recentlyDown: number
}

/** Counts what the isolation guard looks at, from a snapshot and when each host turned down. */
export function networkView(
  snapshot: Snapshot | undefined,
  ownHost: string,
  downSince: (host: string) => string | undefined,
  now: Date,
  policy: GuardPolicy,
): NetworkView {
  const view = { known: 0, down: 0, recentlyDown: 0 }
  for (const [host, state] of Object.entries(snapshot?.nodes ?? {})) {
    if (host === ownHost) continue
    view.known++
    if (state !== 'down') continue
    view.down++
    const since = downSince(host)
    if (since === undefined || secondsBetween(since, now) <= policy.isolation.window) view.recentlyDown++
  }
  return view
}

function exceeds(count: number, known: number, policy: GuardPolicy): string | undefined {
  const { maxDownFraction, maxDownCount } = policy.isolation
  if (known > 0 && count / known > maxDownFraction) {
    return `${count} of ${known} hosts (${Math.round((100 * count) / known)}% > ${Math.round(100 * maxDownFraction)}%)`
  }
  if (maxDownCount !== null && count > maxDownCount) return `${count} hosts (> ${maxDownCount})`
  return undefined
}

/**
 * Trips when too many hosts turn down at once (within the window); once tripped, it holds
 * until the hosts down *now* are back under the threshold, however long that takes: a
 * partition that outlasts the window must not release a wave of recoveries.
 */
export function isolationStatus(
  network: Network,
  view: NetworkView,
  current: Isolation | undefined,
  now: Date,
  policy: GuardPolicy,
): Isolation | undefined {
  if (current) {
    return exceeds(view.down, view.known, policy) ? current : undefined
  }
  const tripped = exceeds(view.recentlyDown, view.known, policy)
  if (!tripped) return undefined
  return {
    since: now.toISOString(),
    reason: `${tripped} turned down on ${network} within ${policy.isolation.window} s: the monitor's own side looks cut off`,
  }
}

/** When a hold that started at `since` ends. */
export function holdEnds(since: string, seconds: number): Date {
  return new Date(Date.parse(since) + seconds * 1000)
}

export function holdIsOver(entry: LedgerEntry, kind: 'recovery' | 'back', now: Date, policy: GuardPolicy): boolean {
  if (entry.hold?.kind !== kind) return policy.hold[kind] <= 0
  return holdEnds(entry.hold.since, policy.hold[kind]).getTime() <= now.getTime()
}

/** Recoveries still inside the window, and when the next slot frees (if the limit is reached). */
export function rateLimitSlot(recoveries: string[], now: Date, policy: GuardPolicy): { recent: string[]; nextSlot?: Date } {
  const { maxRecoveries, window } = policy.rateLimit
  const recent = recoveries.filter((r) => secondsBetween(r, now) < window).sort()
  if (maxRecoveries <= 0 || recent.length < maxRecoveries) return { recent }
  const oldestCounting = recent[recent.length - maxRecoveries]!
  return { recent, nextSlot: new Date(Date.parse(oldestCounting) + window * 1000) }
}
