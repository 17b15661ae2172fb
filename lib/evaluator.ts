/**
 * The decision: per host, the vector over the networks, the strategy row it matches, the
 * guards, and what that means against the ledger. Pure: the same snapshots, strategy, state,
 * confirmations and clock give the same decisions; all I/O is the caller's.
 */
import { holdEnds, holdIsOver, isolationStatus, networkView, rateLimitSlot, DEFAULT_GUARDS, type GuardPolicy } from './guards.js'
import { NETWORKS, type Network, type NetworkState } from './networks.js'
import type { Snapshots } from './snapshot.js'
import { matchStrategy, type Match, type Strategy, type Vector } from './strategy.js'
import type { HostEvent, Isolation, LedgerEntry, Notification, OutboxEntry, StoreState } from './store.js'

export type FirstSight = 'notify' | 'baseline'

/** What the monitor's own agent of a network says right now (checked before a recovery). */
export type Confirmation = { ok: true; critical: ReadonlySet<string> } | { ok: false; reason: string }

export interface EvaluationInput {
  snapshots: Snapshots
  strategy: Strategy
  state: StoreState
  /** The monitor's own node: never notified about (it cannot see itself fail). */
  ownHost: string
  firstSight: FirstSight
  now: Date
  newId: () => string
  guards?: GuardPolicy
  /** Per network, the agent's answer; a host's `down` there counts only if the agent confirms it. */
  confirmations?: Partial<Record<Network, Confirmation>>
}

export type GuardKind = 'isolation' | 'hold' | 'rate-limit' | 'unconfirmed'

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

export interface Evaluation {
  decisions: HostDecision[]
  next: StoreState
  /** Entries this evaluation added to the outbox. */
  queued: OutboxEntry[]
  events: GuardEvent[]
  /** next differs from the input state: it must be written. */
  dirty: boolean
}

export function evaluate(input: EvaluationInput): Evaluation {
  const { snapshots, strategy, state, now } = input
  const policy = input.guards ?? DEFAULT_GUARDS
  const nowText = now.toISOString()
  const ledger: Record<string, LedgerEntry> = { ...state.ledger }
  const outbox: OutboxEntry[] = [...state.outbox]
  const events: GuardEvent[] = []
  const hosts = new Set<string>(Object.keys(state.ledger))
  for (const network of NETWORKS) for (const node of Object.keys(snapshots[network]?.nodes ?? {})) hosts.add(node)
  hosts.delete(input.ownHost)
  const vectors = new Map<string, Record<Network, NetworkState>>()
  const vectorOf = (host: string) => {
    let v = vectors.get(host)
    if (!v) {
      v = { management: 'unknown', tenant: 'unknown', storage: 'unknown' }
      for (const n of NETWORKS) v[n] = snapshots[n]?.nodes[host] ?? 'unknown'
      vectors.set(host, v)
    }
    return v
  }
  const lastPendingOf = new Map<string, HostEvent>()
  for (const o of state.outbox) lastPendingOf.set(o.host, o.notification.payload.event)

  // Since when each host is down on each network: the isolation guard counts recent downs.
  const entries = new Map<string, LedgerEntry>()
  for (const host of hosts) {
    const before = ledger[host]
    const vector = vectorOf(host)
    const downSince: Partial<Record<Network, string>> = {}
    for (const n of NETWORKS) if (vector[n] === 'down') downSince[n] = before?.downSince?.[n] ?? nowText
    const entry: LedgerEntry = { ...(before ?? { firstSeenAt: nowText }), vector: vectorText(vector) }
    if (Object.keys(downSince).length > 0) entry.downSince = downSince
    else delete entry.downSince
    entries.set(host, entry)
  }

  const isolation: Partial<Record<Network, Isolation>> = {}
  for (const n of strategy.sequence) {
    const view = networkView(snapshots[n], input.ownHost, (h) => entries.get(h)?.downSince?.[n], now, policy)
    const status = isolationStatus(n, view, state.isolation[n], now, policy)
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

  // When each host turned down on each network, latest first: the hold waits for other hosts' downs.
  const downs = new Map<Network, Array<[string, string]>>()
  for (const [host, entry] of entries) {
    for (const [n, since] of Object.entries(entry.downSince ?? {}) as Array<[Network, string]>) {
      if (!downs.has(n)) downs.set(n, [])
      downs.get(n)!.push([since, host])
    }
  }
  for (const list of downs.values()) list.sort((a, b) => b[0].localeCompare(a[0]))
  const lastOtherDown = (n: Network, host: string) => downs.get(n)?.find(([, h]) => h !== host)?.[0]

  const decisions = new Map<string, HostDecision>()
  /** Hosts whose hold is over, with the match that made them ready: the rate limit decides next. */
  const ready = new Map<string, Match>()
  const wakes: number[] = []
  const record = (host: string, match: Match, action: HostEvent | 'none', reason: string, guard?: HostDecision['guard']) => {
    const vector = vectorOf(host)
    const before = ledger[host]
    const entry = entries.get(host)!
    if (guard) entry.guard = guard.kind
    else delete entry.guard
    const changed =
      before?.vector !== entry.vector || JSON.stringify(before?.hold) !== JSON.stringify(entry.hold) || before?.guard !== entry.guard
    decisions.set(host, { host, vector, vectorText: entry.vector!, match, action, reason, guard, changed })
  }
  const enqueue = (host: string, match: Match, event: HostEvent, reason: string) => {
    outbox.push(outboxEntry(input, host, event, reason))
    record(host, match, event, reason)
  }

  for (const host of [...hosts].sort()) {
    const entry = entries.get(host)!
    const isNew = ledger[host] === undefined
    const { vector: matchVector, unconfirmed } = confirmedVector(vectorOf(host), host, strategy, input.confirmations)
    const match = matchStrategy(strategy, matchVector)
    const lastPending = lastPendingOf.get(host)

    if (match.recovery) {
      const why = `matched row ${match.row} (recovery)`
      const cutOff = strategy.sequence.filter((n) => matchVector[n] === 'down' && isolation[n])
      if (entry.phase === 'recovery') {
        if (entry.hold?.kind === 'back') delete entry.hold
        record(host, match, 'none', `${why}; already decided: ${recoveryStatus(entry, lastPending)}`)
      } else if (cutOff.length > 0) {
        delete entry.hold
        record(
          host,
          match,
          'none',
          `${why}; held back by the self-isolation guard: ${cutOff.map((n) => isolation[n]!.reason).join('; ')}`,
          { kind: 'isolation' },
        )
      } else if (isNew && input.firstSight === 'baseline') {
        entry.phase = 'recovery'
        delete entry.hold
        record(host, match, 'none', `${why} on first sight; firstSight is baseline, so it is not notified`)
      } else {
        if (entry.hold?.kind !== 'recovery') entry.hold = { kind: 'recovery', since: nowText }
        // The hold also waits for the network's view to settle: while more hosts keep turning
        // down there, this may be the start of a partition the isolation guard has yet to see.
        const settling = strategy.sequence
          .filter((n) => matchVector[n] === 'down')
          .map((n) => lastOtherDown(n, host))
          .filter((since): since is string => since !== undefined && since > entry.hold!.since)
        const holdFrom = [entry.hold.since, ...settling].sort().at(-1)!
        const until = holdEnds(holdFrom, policy.hold.recovery)
        if (until.getTime() <= now.getTime()) ready.set(host, match)
        else {
          wakes.push(until.getTime())
          const more =
            holdFrom === entry.hold.since
              ? ''
              : `, and until ${policy.hold.recovery} s after the last host turned down on the same network (${holdFrom})`
          record(
            host,
            match,
            'none',
            `${why}; holding: in a recovery row since ${entry.hold.since}${more}; STOPPED at ${until.toISOString()} if it stays`,
            { kind: 'hold', until: until.toISOString() },
          )
        }
      }
    } else if (match.allUp) {
      if (entry.phase === 'recovery') {
        if (entry.hold?.kind !== 'back') entry.hold = { kind: 'back', since: nowText }
        if (!holdIsOver(entry, 'back', now, policy)) {
          const until = holdEnds(entry.hold.since, policy.hold.back)
          wakes.push(until.getTime())
          record(host, match, 'none', `back to all-up; holding: STARTED at ${until.toISOString()} if it stays`, {
            kind: 'hold',
            until: until.toISOString(),
          })
        } else {
          entry.phase = 'normal'
          delete entry.hold
          if (lastPending === 'STOPPED' || entry.notified?.event === 'STOPPED')
            enqueue(host, match, 'STARTED', 'back to all-up after STOPPED')
          else
            record(
              host,
              match,
              'none',
              `back to all-up; no STOPPED was accepted for it (${entry.unsent ? `last: ${entry.unsent.event} ${entry.unsent.outcome}` : 'baseline'}), so no STARTED`,
            )
        }
      } else {
        entry.phase = 'normal'
        delete entry.hold
        record(host, match, 'none', 'all up')
      }
    } else {
      // Any other vector breaks a hold: a flapping host never reaches its notification.
      delete entry.hold
      const why = match.row === null ? `no recovery: ${match.reason}` : `matched row ${match.row} (no action)`
      record(host, match, 'none', unconfirmed ? `${why} (${unconfirmed})` : why, unconfirmed ? { kind: 'unconfirmed' } : undefined)
    }
  }

  // The rate limit serves the longest-waiting hosts first.
  const slot = rateLimitSlot(state.recoveries, now, policy)
  const recoveries = [...slot.recent]
  const byWait = [...ready].sort(([a], [b]) => entries.get(a)!.hold!.since.localeCompare(entries.get(b)!.hold!.since) || a.localeCompare(b))
  for (const [host, match] of byWait) {
    const entry = entries.get(host)!
    const limit = rateLimitSlot(recoveries, now, policy)
    if (limit.nextSlot) {
      wakes.push(limit.nextSlot.getTime())
      record(
        host,
        match,
        'none',
        `matched row ${match.row} (recovery); held back by the rate limit: ${policy.rateLimit.maxRecoveries} recoveries in the last ${policy.rateLimit.window} s; next slot at ${limit.nextSlot.toISOString()}`,
        { kind: 'rate-limit', until: limit.nextSlot.toISOString() },
      )
      continue
    }
    const held = entry.hold!.since === nowText ? '' : `; held since ${entry.hold!.since}`
    entry.phase = 'recovery'
    delete entry.hold
    recoveries.push(nowText)
    enqueue(host, match, 'STOPPED', `matched row ${match.row} (recovery)${ledger[host] === undefined ? ' on first sight' : ''}${held}`)
  }

  let dirty = false
  for (const [host, entry] of entries) {
    if (JSON.stringify(entry) !== JSON.stringify(ledger[host])) {
      ledger[host] = entry
      dirty = true
    }
  }
  const wakeAt = wakes.length > 0 ? new Date(Math.min(...wakes)).toISOString() : undefined
  const next: StoreState = { version: 1, ledger, outbox, recoveries, isolation, ...(wakeAt ? { wakeAt } : {}) }
  dirty ||=
    outbox.length !== state.outbox.length ||
    wakeAt !== state.wakeAt ||
    JSON.stringify(isolation) !== JSON.stringify(state.isolation) ||
    recoveries.length !== state.recoveries.length
  const own = vectorOf(input.ownHost)
  const ownDecision: HostDecision[] = snapshotsHave(snapshots, input.ownHost)
    ? [
        {
          host: input.ownHost,
          vector: own,
          vectorText: vectorText(own),
          match: matchStrategy(strategy, own),
          action: 'none',
          reason: "the monitor's own node is never notified about",
          changed: false,
        },
      ]
    : []
  const all = [...decisions.values(), ...ownDecision].sort((a, b) => a.host.localeCompare(b.host))
  return { decisions: all, next, queued: outbox.slice(state.outbox.length), events, dirty }
}

/** "management=up tenant=up storage=down": the form logs and the ledger use. */
function vectorText(vector: Record<Network, NetworkState>): string {
  return NETWORKS.map((n) => `${n}=${vector[n]}`).join(' ')
}

function snapshotsHave(snapshots: Snapshots, host: string): boolean {
  return NETWORKS.some((n) => snapshots[n]?.nodes[host] !== undefined)
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
    notification: hostNotification(host, event, input.now),
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
