/**
 * The decision: per host, the vector over the networks, the strategy row it matches, and what
 * that means against the ledger. Pure: the same snapshots, strategy and state give the same
 * decisions; all I/O is the caller's.
 */
import { NETWORKS, type Network, type NetworkState } from './networks.js'
import type { Snapshots } from './snapshot.js'
import { matchStrategy, type Match, type Strategy, type Vector } from './strategy.js'
import type { HostEvent, LedgerEntry, Notification, OutboxEntry, StoreState } from './store.js'

export type FirstSight = 'notify' | 'baseline'

export interface EvaluationInput {
  snapshots: Snapshots
  strategy: Strategy
  state: StoreState
  /** The monitor's own node: never notified about (it cannot see itself fail). */
  ownHost: string
  firstSight: FirstSight
  now: Date
  newId: () => string
}

export interface HostDecision {
  host: string
  /** State on every network (not only the strategy's), for reports. */
  vector: Record<Network, NetworkState>
  vectorText: string
  match: Match
  action: HostEvent | 'none'
  reason: string
  /** The vector differs from the one recorded at the last run. */
  changed: boolean
}

export interface Evaluation {
  decisions: HostDecision[]
  next: StoreState
  /** Entries this evaluation added to the outbox. */
  queued: OutboxEntry[]
  /** next differs from the input state: it must be written. */
  dirty: boolean
}

export function evaluate(input: EvaluationInput): Evaluation {
  const { snapshots, strategy, state, now } = input
  const nowText = now.toISOString()
  const ledger: Record<string, LedgerEntry> = { ...state.ledger }
  const outbox: OutboxEntry[] = [...state.outbox]
  const hosts = new Set<string>(Object.keys(state.ledger))
  for (const network of NETWORKS) for (const node of Object.keys(snapshots[network]?.nodes ?? {})) hosts.add(node)

  const decisions: HostDecision[] = []
  let dirty = false
  for (const host of [...hosts].sort()) {
    const vector = Object.fromEntries(
      NETWORKS.map((n) => [n, snapshots[n]?.nodes[host] ?? 'unknown']),
    ) as Record<Network, NetworkState>
    const vectorText = NETWORKS.map((n) => `${n}=${vector[n]}`).join(' ')
    const match = matchStrategy(strategy, vector as Vector)
    const before = ledger[host]
    const decide = (action: HostEvent | 'none', reason: string): void => {
      decisions.push({ host, vector, vectorText, match, action, reason, changed: before?.vector !== vectorText })
    }
    if (host === input.ownHost) {
      decide('none', 'the monitor\'s own node is never notified about')
      continue
    }
    const entry: LedgerEntry = { ...(before ?? { firstSeenAt: nowText }), vector: vectorText }
    const pending = outbox.filter((o) => o.host === host)
    const lastPending = pending.at(-1)?.notification.payload.event
    const enqueue = (event: HostEvent, reason: string): void => {
      outbox.push(outboxEntry(input, host, event, reason))
      decide(event, reason)
    }

    if (match.recovery) {
      const why = `matched row ${match.row} (recovery)`
      if (entry.phase === 'recovery') decide('none', `${why}; already decided: ${recoveryStatus(entry, lastPending)}`)
      else if (before === undefined && input.firstSight === 'baseline') {
        entry.phase = 'recovery'
        decide('none', `${why} on first sight; firstSight is baseline, so it is not notified`)
      } else {
        entry.phase = 'recovery'
        enqueue('STOPPED', before === undefined ? `${why} on first sight` : why)
      }
    } else if (match.allUp) {
      if (entry.phase === 'recovery') {
        entry.phase = 'normal'
        if (lastPending === 'STOPPED' || entry.notified?.event === 'STOPPED') enqueue('STARTED', 'back to all-up after STOPPED')
        else decide('none', `back to all-up; no STOPPED was accepted for it (${entry.unsent ? `last: ${entry.unsent.event} ${entry.unsent.outcome}` : 'baseline'}), so no STARTED`)
      } else {
        entry.phase = 'normal'
        decide('none', 'all up')
      }
    } else {
      decide('none', match.row === null ? `no recovery: ${match.reason}` : `matched row ${match.row} (no action)`)
    }
    if (JSON.stringify(entry) !== JSON.stringify(before)) {
      ledger[host] = entry
      dirty = true
    }
  }
  dirty ||= outbox.length !== state.outbox.length
  return { decisions, next: { version: 1, ledger, outbox }, queued: outbox.slice(state.outbox.length), dirty }
}

function recoveryStatus(entry: LedgerEntry, lastPending: HostEvent | undefined): string {
  if (lastPending === 'STOPPED') return 'STOPPED waiting in the outbox'
  if (entry.notified?.event === 'STOPPED') return `STOPPED ${entry.notified.outcome} at ${entry.notified.at}`
  if (entry.unsent?.event === 'STOPPED') return `STOPPED ${entry.unsent.outcome} at ${entry.unsent.at}${entry.unsent.message ? ` (${entry.unsent.message})` : ''}`
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
