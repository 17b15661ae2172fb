/** What evaluate.js shows: the host × network table and the notifications, as text or JSON. */
import type { HostDecision } from './evaluator.js'
import { NETWORKS } from './networks.js'
import type { Snapshots } from './snapshot.js'
import type { Notification, StoreState } from './store.js'
import type { Strategy } from './strategy.js'

export interface HostReport {
  host: string
  vector: HostDecision['vector']
  /** 1-based strategy row matched, or null. */
  row: number | null
  /** What this evaluation decides: STOPPED, STARTED or "none". */
  action: HostDecision['action']
  reason: string
  /** The last notification Masakari holds for the host. */
  lastNotified: { event: string; outcome: string; at: string } | null
  /** The last notification that ended otherwise (refused, expired, skipped). */
  lastUnsent: { event: string; outcome: string; at: string; message?: string } | null
  /** Waiting in the outbox, oldest first. */
  pending: Array<{ event: string; attempts: number; nextAttemptAt: string; lastError?: string }>
}

export interface Report {
  evaluatedAt: string
  dryRun: boolean
  strategy: { source: string; sequence: string[] }
  snapshots: Record<string, { consulIndex: string; receivedAt: string; nodes: number } | null>
  hosts: HostReport[]
  /** Notifications this evaluation decides to send (or would, with --dry-run). */
  notifications: Notification[]
}

export function buildReport(
  decisions: HostDecision[],
  snapshots: Snapshots,
  state: StoreState,
  strategy: Strategy,
  queued: Notification[],
  evaluatedAt: Date,
  dryRun: boolean,
): Report {
  const hosts = decisions.map((d): HostReport => {
    const entry = state.ledger[d.host]
    return {
      host: d.host,
      vector: d.vector,
      row: d.match.row,
      action: d.action,
      reason: d.reason,
      lastNotified: entry?.notified ? { event: entry.notified.event, outcome: entry.notified.outcome, at: entry.notified.at } : null,
      lastUnsent: entry?.unsent
        ? { event: entry.unsent.event, outcome: entry.unsent.outcome, at: entry.unsent.at, message: entry.unsent.message }
        : null,
      pending: state.outbox
        .filter((o) => o.host === d.host)
        .map((o) => ({ event: o.notification.payload.event, attempts: o.attempts, nextAttemptAt: o.nextAttemptAt, lastError: o.lastError })),
    }
  })
  return {
    evaluatedAt: evaluatedAt.toISOString(),
    dryRun,
    strategy: { source: strategy.source, sequence: strategy.sequence },
    snapshots: Object.fromEntries(
      NETWORKS.map((n) => {
        const s = snapshots[n]
        return [n, s ? { consulIndex: s.consulIndex, receivedAt: s.receivedAt, nodes: Object.keys(s.nodes).length } : null]
      }),
    ),
    hosts,
    notifications: queued,
  }
}

export function formatReport(report: Report): string {
  const lines: string[] = []
  lines.push(`strategy: ${report.strategy.source} (networks: ${report.strategy.sequence.join(', ')})`)
  for (const n of NETWORKS) {
    const s = report.snapshots[n]
    lines.push(`snapshot ${n}: ${s ? `${s.nodes} nodes, consul index ${s.consulIndex || '-'}, received ${s.receivedAt}` : 'none yet (every host unknown there)'}`)
  }
  lines.push('')
  const header = ['HOST', ...NETWORKS.map((n) => n.toUpperCase()), 'ROW', 'ACTION', 'LAST NOTIFIED', 'PENDING', 'WHY']
  const rows = report.hosts.map((h) => [
    h.host,
    ...NETWORKS.map((n) => h.vector[n]),
    h.row === null ? '-' : String(h.row),
    h.action === 'none' ? 'none' : (report.dryRun ? 'would send ' : 'send ') + h.action,
    h.lastNotified ? `${h.lastNotified.event} ${h.lastNotified.outcome} ${h.lastNotified.at}` : h.lastUnsent ? `(${h.lastUnsent.event} ${h.lastUnsent.outcome})` : '-',
    h.pending.length === 0 ? '-' : h.pending.map((p) => `${p.event}${p.attempts ? ` ×${p.attempts}` : ''}`).join(','),
    h.reason,
  ])
  const widths = header.map((_, i) => Math.max(header[i]!.length, ...rows.map((r) => r[i]!.length)))
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')
  lines.push(fmt(header), ...rows.map(fmt))
  if (report.hosts.length === 0) lines.push('(no hosts: no snapshot has any node yet)')
  lines.push('')
  if (report.notifications.length === 0) lines.push('notifications: none to send')
  else {
    lines.push(`notifications ${report.dryRun ? 'that would be sent (dry run: nothing sent or changed)' : 'queued for Masakari'}:`)
    for (const n of report.notifications) lines.push(`  ${JSON.stringify({ notification: n })}`)
  }
  return lines.join('\n') + '\n'
}
