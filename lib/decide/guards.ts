/**
 * The guards that hold a recovery back: self-isolation, hold time, burst, rate limit. The schema
 * of their settings, and pure functions of the view, the ledger and the clock; the evaluator
 * applies them.
 */
import { z } from 'zod'
import type { Network } from '../base/networks.js'
import type { Snapshot } from './snapshot-shape.js'
import type { Isolation, LedgerEntry, OwnHold } from './state-shape.js'

/**
 * How Consul's LAN gossip (memberlist) is tuned on the agents of a network: Consul's defaults
 * unless the agents say otherwise (`gossip_lan` in their config). It bounds how long Consul
 * can take to report, one by one, hosts that failed at the same instant.
 */
export const GossipSchema = z
  .strictObject({
    /** gossip_lan.probe_interval, seconds (Consul: 1 s). */
    probeInterval: z.number().positive().default(1),
    /** gossip_lan.suspicion_mult (Consul: 4). */
    suspicionMult: z.number().int().positive().default(4),
    /** memberlist's push/pull interval, seconds (Consul: 30 s): a late correction such as "left, not failed" can take this long. */
    pushPullInterval: z.number().positive().default(30),
  })
  .prefault({})
export type Gossip = z.infer<typeof GossipSchema>

export const GuardsSchema = z
  .strictObject({
    /** Flap suppression: how long a change must last before it is notified (seconds; 0 allowed). */
    hold: z
      .strictObject({
        /** A lone host must stay in a recovery row this long before STOPPED is sent. */
        recovery: z.number().nonnegative().default(5),
        /** A recovered host must stay all-up this long before STARTED is sent. */
        back: z.number().nonnegative().default(5),
      })
      .prefault({}),
    /**
     * A burst: a second host turning down on a network soon after a first. Consul reports hosts
     * that failed together one by one, spread over up to its quiet window; every pending recovery
     * on that network then waits until the network has been quiet that long (or the isolation
     * guard trips).
     */
    burst: z
      .strictObject({
        /** Seconds, or "auto": derived from the gossip settings and the cluster's size. */
        quietWindow: z.union([z.literal('auto'), z.number().nonnegative()]).default('auto'),
      })
      .prefault({}),
    /** Self-isolation: when too many hosts turn down on one network at once, the fault is taken to be on our side. */
    isolation: z
      .strictObject({
        /** More than this fraction of the network's known hosts turning down together (within `window`, or one burst) trips it (1 disables). */
        maxDownFraction: z.number().min(0).max(1).default(0.55),
        /** More than this many hosts turning down together trips it too; null: no count limit. */
        maxDownCount: z.number().int().nonnegative().nullable().default(null),
        /** Seconds that count as "at once". */
        window: z.number().positive().default(30),
      })
      .prefault({}),
    /** At most `maxRecoveries` STOPPED per `window` seconds; the rest wait for a slot. 0 lifts the limit. */
    rateLimit: z
      .strictObject({
        maxRecoveries: z.number().int().nonnegative().default(5),
        window: z.number().positive().default(300),
      })
      .prefault({}),
  })
  .prefault({})
export type GuardPolicy = z.infer<typeof GuardsSchema>

export const DEFAULT_GUARDS: GuardPolicy = GuardsSchema.parse(undefined)
export const DEFAULT_GOSSIP: Gossip = GossipSchema.parse(undefined)

/**
 * memberlist's SuspicionMaxTimeoutMult, which Consul does not expose: a suspicion that few live
 * peers confirm (exactly what happens when many hosts fail together) lasts up to 6× its base.
 */
export const SUSPICION_MAX_MULT = 6
/** memberlist scales the push/pull interval up above this many members. */
const PUSH_PULL_SCALE_THRESHOLD = 32

export interface QuietWindow {
  seconds: number
  /** How it was derived, for evaluate.js. */
  basis: string
}

/** Probe intervals of slack for when the live members first probe each failed one. */
const PROBE_ROUNDS = 2

/**
 * The window in which Consul can still report further hosts of one event on a network of
 * `members` nodes. A suspicion's base timeout is suspicion_mult × max(1, log10 N) × probe
 * interval and stretches to 6× that when few peers confirm it, so hosts that failed together
 * are declared dead spread over up to 5× the base, plus the probe rounds before each is first
 * suspected. A correction ("left", not "failed", for a graceful leave seen during other
 * failures) arrives by push/pull. The window is the longer of the two.
 */
export function quietWindow(gossip: Gossip, members: number, policy: GuardPolicy): QuietWindow {
  if (policy.burst.quietWindow !== 'auto') return { seconds: policy.burst.quietWindow, basis: 'guards.burst.quietWindow' }
  const n = Math.max(members, 1)
  const base = gossip.suspicionMult * Math.max(1, Math.log10(n)) * gossip.probeInterval
  const spread = (SUSPICION_MAX_MULT - 1) * base + PROBE_ROUNDS * gossip.probeInterval
  const scale = n <= PUSH_PULL_SCALE_THRESHOLD ? 1 : Math.ceil(Math.log2(n) - Math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1
  const pushPull = gossip.pushPullInterval * scale
  const round = (x: number) => Math.round(x * 10) / 10
  return {
    seconds: round(Math.max(spread, pushPull)),
    basis:
      `${n} members, probe ${gossip.probeInterval} s, suspicion_mult ${gossip.suspicionMult}: ` +
      `detections spread up to ${round(spread)} s, push/pull ${round(pushPull)} s`,
  }
}

/** Seconds from `from` (ISO-8601) to `to` (ISO-8601 or a Date); negative when `to` is earlier. */
export function secondsBetween(from: string, to: string | Date): number {
  return ((typeof to === 'string' ? Date.parse(to) : to.getTime()) - Date.parse(from)) / 1000
}

export interface NetworkView {
  /** Hosts the network's cluster knows (up, down or maintenance), the monitor's own node excluded. */
  known: number
  /** Hosts down now. */
  down: number
  /** Hosts that turned down together: within the isolation window, or in the burst in progress. */
  recentlyDown: number
}

/**
 * Counts what the isolation guard looks at, from a snapshot, when each host turned down and the
 * hosts of the burst in progress. The burst counts as "together" whatever its length: with one
 * live prober left (the monitor's own side cut off), Lifeguard stretches the probe interval up
 * to 8×, and Consul declared six hosts frozen at the same instant over 51 s in our runs, no
 * four of them within 30 s, each within the quiet window of the previous.
 */
export function networkView(
  snapshot: Snapshot | undefined,
  ownHost: string,
  downSince: (host: string) => string | undefined,
  burstHosts: readonly string[],
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
    if (since === undefined || secondsBetween(since, now) <= policy.isolation.window || burstHosts.includes(host)) view.recentlyDown++
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
 * Trips when too many hosts turn down together (within the window, or one burst); once tripped, it holds
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
    reason: `${tripped} turned down on ${network} together (within ${policy.isolation.window} s, or one burst): the monitor's own side looks cut off`,
  }
}

/**
 * An unconfirmed recovery (an own agent that did not answer, or no longer shows the host failed)
 * is asked again after half the time it has waited, within these bounds: soon after a blip, and
 * never less often than every half minute however long the agent stays away.
 */
export const UNCONFIRMED_RETRY_MIN_S = 2
export const UNCONFIRMED_RETRY_MAX_S = 30

/** When to ask the own agents again about a recovery unconfirmed since `since`. */
export function unconfirmedRetry(since: string, now: Date): Date {
  const waited = secondsBetween(since, now)
  const wait = Math.min(UNCONFIRMED_RETRY_MAX_S, Math.max(UNCONFIRMED_RETRY_MIN_S, waited / 2))
  return new Date(now.getTime() + wait * 1000)
}

/** When a hold that started at `since` ends. */
export function holdEnds(since: string, seconds: number): Date {
  return new Date(Date.parse(since) + seconds * 1000)
}

/**
 * Since when a hold the record does not have yet starts: now, unless this controller's own runs
 * (several controllers, `holds.json`) already held the host in this very vector while the
 * record never saw it there (or saw it unconfirmed): its sender died before recording it, and the
 * hold that went by on this controller meanwhile (Consul's lock-delay, mostly) counts. A record
 * that saw the vector confirmed and holds nothing had its reason; any other vector, or a flap this
 * controller saw, broke its own hold already. A time that is not before now counts as now.
 */
export function holdStart(
  kind: 'recovery' | 'back',
  vector: string,
  recorded: LedgerEntry | undefined,
  own: OwnHold | undefined,
  now: string,
): string {
  // Unconfirmed is no such reason: the old sender's own agent did not answer (seen as it died:
  // its server forwarding to a killed leader), and the new sender asks its own before any STOPPED.
  const guarded = recorded?.vector === vector && recorded.unconfirmedSince === undefined
  if (own?.kind !== kind || own.vector !== vector || guarded) return now
  const since = Date.parse(own.since)
  return since < Date.parse(now) ? new Date(since).toISOString() : now
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
