/**
 * What the monitor records, as values: the ledger (what was decided and what Masakari accepted,
 * per host), the outbox, isolation, counters — the shape of state.json and of the record the
 * controllers share. Pure; reading and writing it is lib/state/store.ts's.
 */
import { z } from 'zod'
import { emptyHostRecord, hostEntry, hostRecordSchema } from '../base/host-record.js'
import { NETWORKS } from '../base/networks.js'

export const EVENTS = ['STOPPED', 'STARTED'] as const
/** The guards that can hold a host's decision back (see guards.ts). */
export const GUARD_KINDS = ['isolation', 'hold', 'burst', 'rate-limit', 'unconfirmed'] as const
export type HostEvent = (typeof EVENTS)[number]

/** The body Masakari receives (inside {"notification": …}); fixed at decision time, so a resend is byte-identical. */
export const NotificationSchema = z.object({
  type: z.literal('COMPUTE_HOST'),
  hostname: z.string().min(1),
  /** ISO-8601 UTC; with the payload it is what Masakari's duplicate check compares. */
  generated_time: z.string(),
  payload: z.object({
    event: z.enum(EVENTS),
    cluster_status: z.enum(['OFFLINE', 'ONLINE']),
    /**
     * Masakari's engine acts only on NORMAL. Always NORMAL in the outbox; with fencing on, a STOPPED
     * whose host could not be powered off goes as UNKNOWN at its last try (recorded, not acted on).
     */
    host_status: z.enum(['NORMAL', 'UNKNOWN']),
  }),
})
export type Notification = z.infer<typeof NotificationSchema>

/** Final answers; accepted and duplicate mean Masakari has the notification. */
export const OUTCOMES = ['accepted', 'duplicate', 'on-maintenance', 'host-not-found', 'rejected', 'expired', 'skipped'] as const
export type Outcome = (typeof OUTCOMES)[number]

/** A confirmed power-off (fencing, issue #21): when, and by which agent. */
export const FencedSchema = z.object({ at: z.string(), agent: z.string(), confirmed: z.literal(true) })
export type Fenced = z.infer<typeof FencedSchema>

export const OutboxEntrySchema = z.object({
  /** Unique per decision; ties a ledger record to the outbox entry it came from. */
  id: z.string(),
  host: z.string(),
  notification: NotificationSchema,
  /** Why it was decided: the vector and the strategy row. */
  reason: z.string(),
  decidedAt: z.string(),
  attempts: z.number().int().nonnegative().default(0),
  /** Not sent before this time (backoff). */
  nextAttemptAt: z.string(),
  lastError: z.string().optional(),
  /**
   * Written under the lock right after a confirmed power-off and before the POST: a sender
   * that takes over after a crash sends it NORMAL without fencing again.
   */
  fenced: FencedSchema.optional(),
  /** The last fence's failure (the agent's own message), while the entry waits for another try. */
  fenceError: z.string().optional(),
})
export type OutboxEntry = z.infer<typeof OutboxEntrySchema>

const RecordSchema = z.object({
  id: z.string(),
  event: z.enum(EVENTS),
  outcome: z.enum(OUTCOMES),
  /** When the final answer came. */
  at: z.string(),
  generatedTime: z.string(),
  message: z.string().optional(),
  /** The host was powered off before this STOPPED was sent (fencing). */
  fenced: FencedSchema.optional(),
  /** Sent with host_status UNKNOWN: fencing failed until the last try (fenceError says why). */
  hostStatus: z.literal('UNKNOWN').optional(),
  fenceError: z.string().optional(),
})
export type LedgerRecord = z.infer<typeof RecordSchema>

export const LedgerEntrySchema = z.object({
  firstSeenAt: z.string(),
  /**
   * What was last decided for the host: `recovery` once a recovery row was acted on (notified or
   * taken as baseline), `normal` once it was seen all-up. Other vectors leave it as it is.
   */
  phase: z.enum(['normal', 'recovery']).optional(),
  /** The host's vector at the last run, e.g. "management=up tenant=up storage=down". */
  vector: z.string().optional(),
  /** The last notification Masakari holds for the host (accepted or duplicate). */
  notified: RecordSchema.optional(),
  /** The last notification that ended otherwise (refused, expired, skipped). */
  unsent: RecordSchema.optional(),
  /**
   * A change waiting out its hold time: `recovery` (in a recovery row, STOPPED not yet sent) or
   * `back` (all up again after a recovery, STARTED not yet sent), since when.
   */
  hold: z.object({ kind: z.enum(['recovery', 'back']), since: z.string() }).optional(),
  /** The guard that held the host's decision back at the last run (so a change is logged once). */
  guard: z.enum(GUARD_KINDS).optional(),
  /** Since when a recovery has waited for an own agent's confirmation (its next question backs off from this). */
  unconfirmedSince: z.string().optional(),
  /** Since when the host has been down on each network (for the self-isolation guard's window). */
  downSince: z.partialRecord(z.enum(NETWORKS), z.string()).optional(),
})
export type LedgerEntry = z.infer<typeof LedgerEntrySchema>

/**
 * A hold as this controller's own runs last saw it, with the vector it was for: kept in its state
 * directory (`holds.json`, lib/state/own-holds.ts) when several controllers share a record that
 * only the sender writes. A sender that dies before recording a hold leaves the record without
 * it; the controller that takes over counts it from here (guards.ts, holdStart).
 */
export const OwnHoldSchema = z.object({ kind: z.enum(['recovery', 'back']), since: z.string(), vector: z.string() })
export type OwnHold = z.infer<typeof OwnHoldSchema>
export const OwnHoldsSchema = hostRecordSchema(OwnHoldSchema)
export type OwnHolds = z.infer<typeof OwnHoldsSchema>

/**
 * The holds this controller keeps after an evaluation (pure): the ledger's, and the one a decision
 * of this evaluation just ended (its STOPPED or STARTED is due), as it was read, else from `now`.
 * A standby records nothing, so without it its next run would start that hold again, and a
 * takeover after a hold ran out on the standbys would hold the full time once more.
 */
export function ownHoldsAfter(
  ledger: StoreState['ledger'],
  decided: ReadonlyArray<{ host: string; action: string; vectorText: string }>,
  before: OwnHolds,
  now: string,
): OwnHolds {
  const holds = ownHoldsOf(ledger)
  for (const d of decided) {
    if (d.action !== 'STOPPED' && d.action !== 'STARTED') continue
    const kind = d.action === 'STOPPED' ? 'recovery' : 'back'
    const kept = hostEntry(before, d.host)
    holds[d.host] = kept?.kind === kind && kept.vector === d.vectorText ? kept : { kind, since: now, vector: d.vectorText }
  }
  return holds
}

/** The holds of an evaluated ledger, each with the vector it was for (pure). */
export function ownHoldsOf(ledger: StoreState['ledger']): OwnHolds {
  const holds = emptyHostRecord<OwnHold>()
  for (const [host, entry] of Object.entries(ledger)) {
    if (entry.hold && entry.vector !== undefined) holds[host] = { ...entry.hold, vector: entry.vector }
  }
  return holds
}

export const IsolationSchema = z.object({
  /** When the guard tripped. */
  since: z.string(),
  /** Why, in words: how many hosts turned down, out of how many. */
  reason: z.string(),
})
export type Isolation = z.infer<typeof IsolationSchema>

const count = z.number().int().nonnegative()

/**
 * Running totals for the metrics textfile (lib/state/metrics.ts). They live in the record, so every
 * process (handler, worker, either controller) adds to the same totals, and they survive
 * restarts; a Prometheus counter reset happens only when the record is lost.
 */
export const CountersSchema = z.object({
  /** Notifications decided (queued in the outbox), by event. */
  decisions: z.partialRecord(z.enum(EVENTS), count).default({}),
  /** Notifications finished, by final outcome. */
  notifications: z.partialRecord(z.enum(OUTCOMES), count).default({}),
  /** Attempts that failed and were scheduled again (Masakari unreachable, 5xx, timeouts). */
  retries: count.default(0),
  /** Fences that failed (agent error, power never seen off); absent until the first. */
  fenceFailures: count.optional(),
})
export type Counters = z.infer<typeof CountersSchema>

/** The counters with `n` added to one of them (pure; a missing `counters` counts from zero). */
export function counted(
  counters: Counters | undefined,
  add: { decisions?: HostEvent; notifications?: Outcome; retries?: true; fenceFailures?: true },
  n = 1,
): Counters {
  const c: Counters = {
    decisions: { ...counters?.decisions },
    notifications: { ...counters?.notifications },
    retries: counters?.retries ?? 0,
    ...(counters?.fenceFailures === undefined ? {} : { fenceFailures: counters.fenceFailures }),
  }
  if (add.fenceFailures) c.fenceFailures = (c.fenceFailures ?? 0) + n
  if (add.decisions) c.decisions[add.decisions] = (c.decisions[add.decisions] ?? 0) + n
  if (add.notifications) c.notifications[add.notifications] = (c.notifications[add.notifications] ?? 0) + n
  if (add.retries) c.retries += n
  return c
}

export const StoreStateSchema = z.object({
  version: z.literal(1),
  /** Host name → its entry (a table without a prototype: any node name is an ordinary key). */
  ledger: hostRecordSchema(LedgerEntrySchema),
  outbox: z.array(OutboxEntrySchema),
  /** When each recent STOPPED was decided (the rate limit's window). */
  recoveries: z.array(z.string()).default([]),
  /** Networks whose failures are suppressed because the monitor itself looks cut off. */
  isolation: z.partialRecord(z.enum(NETWORKS), IsolationSchema).default({}),
  /** When a held-back decision (hold time, rate limit) is due to be looked at again. */
  wakeAt: z.string().optional(),
  /** Absent in a record written before the metrics existed: it counts from zero. */
  counters: CountersSchema.optional(),
})
export type StoreState = z.infer<typeof StoreStateSchema>

export const emptyState = (): StoreState => ({ version: 1, ledger: emptyHostRecord(), outbox: [], recoveries: [], isolation: {} })
