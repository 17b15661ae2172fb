/**
 * The decision: per host, the vector over the networks, the strategy row it matches, the
 * guards, and what that means against the ledger. Pure: the same snapshots, strategy, state,
 * confirmations and clock give the same decisions; all I/O is the caller's.
 *
 * evaluate() runs named phases, top to bottom:
 *   1. down-since  since when each host is down on each network (the ledger entries to write)
 *   2. bursts      per network: are hosts still turning down one by one?
 *   3. isolation   per network: does the monitor's own side look cut off? (a burst counts as together)
 *   4. per host    the strategy row, and what it means against the ledger and the guards
 *   5. rate limit  which hosts whose hold is over get a recovery slot now
 *   6. diff        the next state, and whether it must be written
 *
 * Host names come from the network (Consul node names): every host-keyed table is a Map, and
 * records read from the state are looked up by own keys only, so a node named `constructor`
 * or `__proto__` is a host like any other.
 */
import { byCodePoint } from '../base/compare.js'
import {
  DEFAULT_GOSSIP,
  DEFAULT_GUARDS,
  type Gossip,
  type GuardPolicy,
  holdEnds,
  holdIsOver,
  holdStart,
  isolationStatus,
  networkView,
  type QuietWindow,
  quietWindow,
  rateLimitSlot,
  secondsBetween,
  unconfirmedRetry,
} from './guards.js'
import { emptyHostRecord, hostEntry } from '../base/host-record.js'
import { NETWORKS, type Network, type NetworkState } from '../base/networks.js'
import type { Snapshots } from './snapshot-shape.js'
import { type Match, matchStrategy, type Strategy, type Vector } from './strategy.js'
import {
  counted,
  type HostEvent,
  type Isolation,
  type LedgerEntry,
  type Notification,
  type OutboxEntry,
  type OwnHolds,
  type StoreState,
} from './state-shape.js'

export type FirstSight = 'notify' | 'baseline'

/** The gossip tuning an agent reports about itself. */
export type AgentGossip = Pick<Gossip, 'probeInterval' | 'suspicionMult'>

/** What the monitor's own agent of a network says right now (checked before a recovery). */
export type Confirmation =
  | {
      ok: true
      critical: ReadonlySet<string>
      gossip?: AgentGossip
      /** The agent's gossip view is degraded (Lifeguard): why, in words. */
      degraded?: string
    }
  /** `refused`: the agent answered, but its answer cannot see nodes (ACLs): loud, not a mere unknown. */
  | { ok: false; reason: string; refused?: true }

/**
 * Seconds before a recovery held by a degraded agent asks again: the agent's metrics cover
 * 10 s intervals.
 */
export const DEGRADED_RECHECK = 10

export interface EvaluationInput {
  snapshots: Snapshots
  strategy: Strategy
  state: StoreState
  /** The monitor's own node: never notified about (it cannot see itself fail). */
  ownHost: string
  /** Other nodes never notified about, with why: Consul's servers, `hostNames.exclude`, nodes in no Masakari segment. */
  notHosts?: ReadonlyMap<string, string>
  firstSight: FirstSight
  now: Date
  newId: () => string
  guards?: GuardPolicy
  /** Per network, the agents' gossip tuning (Consul's defaults where absent): sets the quiet window. */
  gossip?: Partial<Record<Network, Gossip>>
  /** Per network, the agent's answer; a host's `down` there counts only if the agent confirms it. */
  confirmations?: Partial<Record<Network, Confirmation>>
  /** Consul node name → Masakari host name (host-names.ts); the notification's hostname, nothing else. */
  masakariName?: (node: string) => string
  /**
   * Several controllers: the holds this controller's own runs saw (holds.json). A hold the record
   * lacks counts from there when the record never saw its vector (guards.ts, holdStart).
   */
  ownHolds?: OwnHolds
}

export type GuardKind = NonNullable<LedgerEntry['guard']>

export interface HostDecision {
  host: string
  /** State on every network (not only the strategy's), as the snapshots say, for reports. */
  vector: Record<Network, NetworkState>
  vectorText: string
  match: Match
  action: HostEvent | 'none'
  reason: string
  /** The guard that held an action back, and until when (if it knows). */
  guard?: { kind: GuardKind; until?: string }
  /** The vector or hold differs from the last run's: worth a log line. */
  changed: boolean
}

/** Something to log once, when it happens (not on every run). */
export interface GuardEvent {
  level: 'info' | 'warn' | 'error'
  msg: string
  fields: Record<string, unknown>
}

/** Hosts turning down one after another on a network, each within the quiet window of the last. */
export interface Burst {
  /** When the first host of the burst turned down. */
  since: string
  /** When the last one did. */
  lastDown: string
  /** Recoveries on the network wait until then, unless another host turns down first. */
  quietUntil: string
  hosts: string[]
}

/** What evaluate.js shows per network about the timing guards. */
export interface NetworkTiming {
  quietWindow: QuietWindow
  /** Only while the network has not yet been quiet for the window. */
  burst?: Burst
}

export interface Evaluation {
  decisions: HostDecision[]
  next: StoreState
  /** Entries this evaluation added to the outbox. */
  queued: OutboxEntry[]
  events: GuardEvent[]
  timing: Partial<Record<Network, NetworkTiming>>
  /** next differs from the input state: it must be written. */
  dirty: boolean
}

/** What every phase reads: the input, the policy, and the tables built from the state. */
interface Context {
  input: EvaluationInput
  policy: GuardPolicy
  nowText: string
  /** The ledger as read, by own keys only. */
  before: Map<string, LedgerEntry>
  /** The ledger entries being decided (phase 1 makes them; later phases update them). */
  entries: Map<string, LedgerEntry>
  /** The last notification waiting in the outbox per host. */
  pending: Map<string, HostEvent>
  vectors: Map<string, Record<Network, NetworkState>>
}

export function evaluate(input: EvaluationInput): Evaluation {
  const ctx = context(input)
  for (const host of hostsToDecide(ctx)) ctx.entries.set(host, withDownSince(ctx, host))
  const timing = burstPhase(ctx)
  const { isolation, events } = isolationPhase(ctx, timing)
  const decisions = new Map<string, HostDecision>()
  const ready = new Map<string, Match>()
  const outbox = [...input.state.outbox]
  for (const host of [...ctx.entries.keys()].sort()) {
    const step = decideHost(ctx, host, isolation, timing)
    if (step.ready) ready.set(host, step.match)
    else decisions.set(host, decided(ctx, host, step))
    if (step.action !== 'none') outbox.push(outboxEntry(input, host, step.action, step.reason))
  }
  const recoveries = rateLimitPhase(ctx, ready, decisions, outbox)
  return diffPhase(ctx, { decisions, outbox, recoveries, isolation, events, timing })
}

function context(input: EvaluationInput): Context {
  const pending = new Map<string, HostEvent>()
  for (const o of input.state.outbox) pending.set(o.host, o.notification.payload.event)
  return {
    input,
    policy: input.guards ?? DEFAULT_GUARDS,
    nowText: input.now.toISOString(),
    before: new Map(Object.entries(input.state.ledger)),
    entries: new Map(),
    pending,
    vectors: new Map(),
  }
}

/** Every host the ledger or a snapshot knows, but the monitor's own node and the nodes that are not hosts. */
function hostsToDecide(ctx: Context): Set<string> {
  const hosts = new Set<string>(ctx.before.keys())
  for (const network of NETWORKS) for (const node of Object.keys(ctx.input.snapshots[network]?.nodes ?? {})) hosts.add(node)
  hosts.delete(ctx.input.ownHost)
  for (const node of ctx.input.notHosts?.keys() ?? []) hosts.delete(node)
  return hosts
}

function vectorOf(ctx: Context, host: string): Record<Network, NetworkState> {
  let v = ctx.vectors.get(host)
  if (!v) {
    const { management, tenant, storage } = ctx.input.snapshots
    v = { management: stateIn(management?.nodes, host), tenant: stateIn(tenant?.nodes, host), storage: stateIn(storage?.nodes, host) }
    ctx.vectors.set(host, v)
  }
  return v
}

function stateIn(nodes: Record<string, NetworkState> | undefined, host: string): NetworkState {
  return (nodes && hostEntry(nodes, host)) ?? 'unknown'
}

/** Phase 1: the host's ledger entry with its vector and since when it is down on each network. */
function withDownSince(ctx: Context, host: string): LedgerEntry {
  const before = ctx.before.get(host)
  const vector = vectorOf(ctx, host)
  const downSince: Partial<Record<Network, string>> = {}
  for (const n of NETWORKS) if (vector[n] === 'down') downSince[n] = before?.downSince?.[n] ?? ctx.nowText
  const entry: LedgerEntry = { ...(before ?? { firstSeenAt: ctx.nowText }), vector: vectorText(vector) }
  if (Object.keys(downSince).length > 0) entry.downSince = downSince
  else delete entry.downSince
  return entry
}

/** Phase 3: the self-isolation guard of each network of the strategy, and its changes to log. */
function isolationPhase(
  ctx: Context,
  timing: Partial<Record<Network, NetworkTiming>>,
): { isolation: Partial<Record<Network, Isolation>>; events: GuardEvent[] } {
  const { snapshots, ownHost, now, state } = ctx.input
  const isolation: Partial<Record<Network, Isolation>> = {}
  const events: GuardEvent[] = []
  for (const n of ctx.input.strategy.sequence) {
    const downSince = (h: string) => ctx.entries.get(h)?.downSince?.[n]
    const view = networkView(snapshots[n], ownHost, downSince, timing[n]?.burst?.hosts ?? [], now, ctx.policy)
    const status = isolationStatus(n, view, state.isolation[n], now, ctx.policy)
    if (status) isolation[n] = status
    if (status && !state.isolation[n]) {
      events.push({
        level: 'error',
        msg: "SELF-ISOLATION SUSPECTED: recoveries for this network's failures are suppressed until the view recovers",
        fields: { network: n, reason: status.reason, down: view.down, known: view.known },
      })
    } else if (!status && state.isolation[n]) {
      events.push({
        level: 'warn',
        msg: 'self-isolation guard released: the view recovered',
        fields: { network: n, since: state.isolation[n]!.since, down: view.down, known: view.known },
      })
    }
  }
  return { isolation, events }
}

/**
 * Phase 2: per network of the strategy, its quiet window and the burst in progress, if any: the
 * hosts down there now whose turning down chains, each within the window of the next, up to the
 * latest one; a burst needs two hosts and lasts until the window after the latest has passed.
 */
function burstPhase(ctx: Context): Partial<Record<Network, NetworkTiming>> {
  const timing: Partial<Record<Network, NetworkTiming>> = {}
  for (const n of ctx.input.strategy.sequence) {
    const members = Object.keys(ctx.input.snapshots[n]?.nodes ?? {}).length
    const { gossip, from } = gossipOf(ctx.input, n)
    const computed = quietWindow(gossip, members, ctx.policy)
    const window = ctx.policy.burst.quietWindow === 'auto' ? { ...computed, basis: `${computed.basis}; gossip tuning ${from}` } : computed
    const downs: Array<[string, string]> = []
    for (const [host, entry] of ctx.entries) if (entry.downSince?.[n]) downs.push([entry.downSince[n], host])
    downs.sort((a, b) => byCodePoint(b[0], a[0]))
    let first = 0
    while (first + 1 < downs.length && secondsBetween(downs[first + 1]![0], downs[first]![0]) <= window.seconds) first++
    const lastDown = downs[0]?.[0]
    const quietUntil = lastDown === undefined ? undefined : holdEnds(lastDown, window.seconds)
    timing[n] = { quietWindow: window }
    if (first > 0 && quietUntil && quietUntil.getTime() > ctx.input.now.getTime()) {
      const chain = downs.slice(0, first + 1)
      timing[n].burst = {
        since: chain.at(-1)![0],
        lastDown: lastDown!,
        quietUntil: quietUntil.toISOString(),
        hosts: chain.map(([, h]) => h).sort(),
      }
    }
  }
  return timing
}

/** The network's gossip tuning: as its agent just reported it, else as configured, else Consul's defaults. */
function gossipOf(input: EvaluationInput, n: Network): { gossip: Gossip; from: string } {
  const configured = input.gossip?.[n]
  const c = input.confirmations?.[n]
  if (c?.ok && c.gossip) return { gossip: { ...(configured ?? DEFAULT_GOSSIP), ...c.gossip }, from: `as the ${n} agent reports it` }
  return configured ? { gossip: configured, from: 'from consul.gossip' } : { gossip: DEFAULT_GOSSIP, from: "Consul's defaults" }
}

/** What phase 4 decides for one host. */
interface HostStep {
  match: Match
  action: HostEvent | 'none'
  reason: string
  guard?: HostDecision['guard']
  /** The hold is over: the rate limit (phase 5) decides whether STOPPED goes now. */
  ready?: boolean
}

/** Phase 4: one host's decision from its (confirmed) vector, its ledger entry and the guards. */
function decideHost(
  ctx: Context,
  host: string,
  isolation: Partial<Record<Network, Isolation>>,
  timing: Partial<Record<Network, NetworkTiming>>,
): HostStep {
  const entry = ctx.entries.get(host)!
  const { strategy, confirmations } = ctx.input
  const { vector, unconfirmed } = confirmedVector(vectorOf(ctx, host), host, strategy, confirmations)
  if (confirmations && !unconfirmed) delete entry.unconfirmedSince
  const match = matchStrategy(strategy, vector)
  if (match.recovery) return decideRecovery(ctx, host, entry, match, vector, isolation, timing)
  if (match.allUp) return decideAllUp(ctx, host, entry, match)
  // Any other vector breaks a hold: a flapping host never reaches its notification.
  delete entry.hold
  const why = match.row === null ? `no recovery: ${match.reason}` : `matched row ${match.row} (no action)`
  if (!unconfirmed) return { match, action: 'none', reason: why }
  // Asked again on a timer (the wake): a dead host makes no further change to run us again.
  entry.unconfirmedSince ??= ctx.nowText
  const until = unconfirmedRetry(entry.unconfirmedSince, ctx.input.now).toISOString()
  return { match, action: 'none', reason: `${why} (${unconfirmed}); asking again at ${until}`, guard: { kind: 'unconfirmed', until } }
}

function decideRecovery(
  ctx: Context,
  host: string,
  entry: LedgerEntry,
  match: Match,
  vector: Vector,
  isolation: Partial<Record<Network, Isolation>>,
  timing: Partial<Record<Network, NetworkTiming>>,
): HostStep {
  const why = `matched row ${match.row} (recovery)`
  const downOn = ctx.input.strategy.sequence.filter((n) => vector[n] === 'down')
  const cutOff = downOn.filter((n) => isolation[n])
  if (entry.phase === 'recovery') {
    if (entry.hold?.kind === 'back') delete entry.hold
    return { match, action: 'none', reason: `${why}; already decided: ${recoveryStatus(entry, ctx.pending.get(host))}` }
  }
  if (cutOff.length > 0) {
    delete entry.hold
    const reasons = cutOff.map((n) => isolation[n]!.reason).join('; ')
    return { match, action: 'none', reason: `${why}; held back by the self-isolation guard: ${reasons}`, guard: { kind: 'isolation' } }
  }
  if (!ctx.before.has(host) && ctx.input.firstSight === 'baseline') {
    entry.phase = 'recovery'
    delete entry.hold
    return { match, action: 'none', reason: `${why} on first sight; firstSight is baseline, so it is not notified` }
  }
  if (entry.hold?.kind !== 'recovery') entry.hold = { kind: 'recovery', since: newHoldSince(ctx, host, 'recovery') }
  const hold = recoveryHold(ctx, host, entry.hold.since, downOn, timing)
  if (hold.until.getTime() <= ctx.input.now.getTime()) return { match, action: 'none', reason: why, ready: true }
  const until = hold.until.toISOString()
  const reason = `${why}; holding: in a recovery row since ${entry.hold.since}${hold.why}; STOPPED at ${until} if it stays`
  return { match, action: 'none', reason, guard: { kind: hold.burst ? 'burst' : 'hold', until } }
}

/**
 * When a pending recovery may go: a lone host after the hold time; a host in a burst on any of
 * the networks it is down on, not before that network has been quiet for its window; a host
 * down on a network whose agent says its gossip view is degraded, not while it says so.
 */
function recoveryHold(
  ctx: Context,
  host: string,
  since: string,
  downOn: Network[],
  timing: Partial<Record<Network, NetworkTiming>>,
): { until: Date; why: string; burst: boolean } {
  let until = holdEnds(since, ctx.policy.hold.recovery)
  let why = ''
  for (const n of downOn) {
    const t = timing[n]
    if (!t?.burst?.hosts.includes(host)) continue
    const quiet = new Date(t.burst.quietUntil)
    if (quiet.getTime() <= until.getTime()) continue
    until = quiet
    why =
      `, and ${n} has a burst in progress (${t.burst.hosts.length} hosts down since ${t.burst.since}, the last at ${t.burst.lastDown}): ` +
      `waiting until it has been quiet for ${t.quietWindow.seconds} s`
  }
  for (const n of downOn) {
    const c = ctx.input.confirmations?.[n]
    if (!c?.ok || !c.degraded) continue
    const recheck = new Date(ctx.input.now.getTime() + DEGRADED_RECHECK * 1000)
    if (recheck.getTime() <= until.getTime()) continue
    until = recheck
    why =
      `, and the ${n} agent's gossip view is degraded (${c.degraded}): failures declared without live peers to confirm them ` +
      'look like hosts failing together, or our own side cut off; asking the agent again then'
  }
  return { until, why, burst: why !== '' }
}

/** Since when a hold the record lacks counts: now, or when this controller's own runs saw it start. */
function newHoldSince(ctx: Context, host: string, kind: 'recovery' | 'back'): string {
  const own = ctx.input.ownHolds && hostEntry(ctx.input.ownHolds, host)
  return holdStart(kind, ctx.entries.get(host)!.vector!, ctx.before.get(host), own, ctx.nowText)
}

function decideAllUp(ctx: Context, host: string, entry: LedgerEntry, match: Match): HostStep {
  if (entry.phase !== 'recovery') {
    entry.phase = 'normal'
    delete entry.hold
    return { match, action: 'none', reason: 'all up' }
  }
  if (entry.hold?.kind !== 'back') entry.hold = { kind: 'back', since: newHoldSince(ctx, host, 'back') }
  if (!holdIsOver(entry, 'back', ctx.input.now, ctx.policy)) {
    const until = holdEnds(entry.hold.since, ctx.policy.hold.back).toISOString()
    return { match, action: 'none', reason: `back to all-up; holding: STARTED at ${until} if it stays`, guard: { kind: 'hold', until } }
  }
  entry.phase = 'normal'
  delete entry.hold
  if (ctx.pending.get(host) === 'STOPPED' || entry.notified?.event === 'STOPPED') {
    return { match, action: 'STARTED', reason: 'back to all-up after STOPPED' }
  }
  const last = entry.unsent ? `last: ${entry.unsent.event} ${entry.unsent.outcome}` : 'baseline'
  return { match, action: 'none', reason: `back to all-up; no STOPPED was accepted for it (${last}), so no STARTED` }
}

function decided(ctx: Context, host: string, step: HostStep): HostDecision {
  const before = ctx.before.get(host)
  const entry = ctx.entries.get(host)!
  if (step.guard) entry.guard = step.guard.kind
  else delete entry.guard
  const changed =
    before?.vector !== entry.vector || JSON.stringify(before?.hold) !== JSON.stringify(entry.hold) || before?.guard !== entry.guard
  const { match, action, reason, guard } = step
  return { host, vector: vectorOf(ctx, host), vectorText: entry.vector!, match, action, reason, guard, changed }
}

/** Phase 5: the rate limit serves the longest-waiting hosts first; returns the recoveries in its window. */
function rateLimitPhase(ctx: Context, ready: Map<string, Match>, decisions: Map<string, HostDecision>, outbox: OutboxEntry[]): string[] {
  const { now } = ctx.input
  const recoveries = [...rateLimitSlot(ctx.input.state.recoveries, now, ctx.policy).recent]
  const since = (h: string) => ctx.entries.get(h)!.hold!.since
  const byWait = [...ready.keys()].sort((a, b) => byCodePoint(since(a), since(b)) || byCodePoint(a, b))
  for (const host of byWait) {
    const entry = ctx.entries.get(host)!
    const match = ready.get(host)!
    const why = `matched row ${match.row} (recovery)`
    const { nextSlot } = rateLimitSlot(recoveries, now, ctx.policy)
    if (nextSlot) {
      const { maxRecoveries, window } = ctx.policy.rateLimit
      const until = nextSlot.toISOString()
      const reason = `${why}; held back by the rate limit: ${maxRecoveries} recoveries in the last ${window} s; next slot at ${until}`
      decisions.set(host, decided(ctx, host, { match, action: 'none', reason, guard: { kind: 'rate-limit', until } }))
      continue
    }
    const held = entry.hold!.since === ctx.nowText ? '' : `; held since ${entry.hold!.since}`
    const reason = `${why}${ctx.before.has(host) ? '' : ' on first sight'}${held}`
    entry.phase = 'recovery'
    delete entry.hold
    recoveries.push(ctx.nowText)
    outbox.push(outboxEntry(ctx.input, host, 'STOPPED', reason))
    decisions.set(host, decided(ctx, host, { match, action: 'STOPPED', reason }))
  }
  return recoveries
}

/** Phase 6: the next state (ledger written as a null-prototype table), and whether it changed. */
function diffPhase(
  ctx: Context,
  out: {
    decisions: Map<string, HostDecision>
    outbox: OutboxEntry[]
    recoveries: string[]
    isolation: Partial<Record<Network, Isolation>>
    events: GuardEvent[]
    timing: Partial<Record<Network, NetworkTiming>>
  },
): Evaluation {
  const { state } = ctx.input
  const ledger = emptyHostRecord<LedgerEntry>()
  for (const [host, entry] of ctx.before) ledger[host] = entry
  let dirty = false
  for (const [host, entry] of ctx.entries) {
    if (JSON.stringify(entry) === JSON.stringify(ctx.before.get(host))) continue
    ledger[host] = entry
    dirty = true
  }
  const wakes = [...out.decisions.values()].flatMap((d) => (d.guard?.until ? [Date.parse(d.guard.until)] : []))
  const wakeAt = wakes.length > 0 ? new Date(Math.min(...wakes)).toISOString() : undefined
  const { outbox, recoveries, isolation } = out
  const queued = outbox.slice(state.outbox.length)
  const counters = queued.reduce<StoreState['counters']>((c, e) => counted(c, { decisions: e.notification.payload.event }), state.counters)
  const next: StoreState = {
    version: 1,
    ledger,
    outbox,
    recoveries,
    isolation,
    ...(wakeAt ? { wakeAt } : {}),
    ...(counters ? { counters } : {}),
  }
  dirty ||=
    outbox.length !== state.outbox.length ||
    wakeAt !== state.wakeAt ||
    JSON.stringify(isolation) !== JSON.stringify(state.isolation) ||
    recoveries.length !== state.recoveries.length
  const decisions = [...out.decisions.values(), ...notHostDecisions(ctx)].sort((a, b) => byCodePoint(a.host, b.host))
  return { decisions, next, queued, events: out.events, timing: out.timing, dirty }
}

/** The own node and the nodes that are not hosts, as a snapshot shows them: shown, never acted on. */
function notHostDecisions(ctx: Context): HostDecision[] {
  const { ownHost, snapshots, strategy } = ctx.input
  const why = new Map(ctx.input.notHosts)
  why.set(ownHost, "the monitor's own node is never notified about")
  return [...why]
    .filter(([host]) => NETWORKS.some((n) => stateIn(snapshots[n]?.nodes, host) !== 'unknown'))
    .map(([host, reason]) => {
      const vector = vectorOf(ctx, host)
      return {
        host,
        vector,
        vectorText: vectorText(vector),
        match: matchStrategy(strategy, vector),
        action: 'none',
        reason,
        changed: false,
      }
    })
}

/** "management=up tenant=up storage=down": the form logs and the ledger use. */
function vectorText(vector: Record<Network, NetworkState>): string {
  return NETWORKS.map((n) => `${n}=${vector[n]}`).join(' ')
}

/**
 * A `down` counts only if the network's agent, asked just now, still shows the host failed and
 * has a leader; otherwise that network is unknown for this decision.
 */
function confirmedVector(
  vector: Record<Network, NetworkState>,
  host: string,
  strategy: Strategy,
  confirmations: EvaluationInput['confirmations'],
): { vector: Vector; unconfirmed?: string } {
  if (!confirmations) return { vector }
  const out: Vector = { ...vector }
  const notes: string[] = []
  for (const n of strategy.sequence) {
    const c = confirmations[n]
    if (vector[n] !== 'down' || c === undefined) continue
    if (!c.ok) {
      out[n] = 'unknown'
      notes.push(`${n} agent did not confirm: ${c.reason}`)
    } else if (!c.critical.has(host)) {
      out[n] = 'unknown'
      notes.push(`${n} agent no longer shows it failed`)
    }
  }
  return { vector: out, unconfirmed: notes.length > 0 ? notes.join('; ') : undefined }
}

function recoveryStatus(entry: LedgerEntry, lastPending: HostEvent | undefined): string {
  if (lastPending === 'STOPPED') return 'STOPPED waiting in the outbox'
  if (entry.notified?.event === 'STOPPED') return `STOPPED ${entry.notified.outcome} at ${entry.notified.at}`
  if (entry.unsent?.event === 'STOPPED') {
    const what = entry.unsent.outcome === 'on-maintenance' ? 'refused: on maintenance in Masakari' : entry.unsent.outcome
    return `STOPPED ${what} at ${entry.unsent.at}${entry.unsent.message ? ` (${entry.unsent.message})` : ''}`
  }
  return 'taken as baseline on first sight'
}

function outboxEntry(input: EvaluationInput, host: string, event: HostEvent, reason: string): OutboxEntry {
  const at = input.now.toISOString()
  return {
    id: input.newId(),
    host,
    notification: hostNotification(input.masakariName?.(host) ?? host, event, input.now),
    reason,
    decidedAt: at,
    attempts: 0,
    nextAttemptAt: at,
  }
}

export function hostNotification(host: string, event: HostEvent, when: Date): Notification {
  return {
    type: 'COMPUTE_HOST',
    hostname: host,
    generated_time: when.toISOString(),
    payload:
      event === 'STOPPED'
        ? { event, cluster_status: 'OFFLINE', host_status: 'NORMAL' }
        : { event, cluster_status: 'ONLINE', host_status: 'NORMAL' },
  }
}
