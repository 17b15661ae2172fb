/** What evaluate.js shows: the host × network table and the notifications, as text or JSON. */
import type { HostDecision, NetworkTiming } from './evaluator.js'
import { type GuardPolicy, rateLimitSlot } from './guards.js'
import { hostEntry } from '../base/host-record.js'
import { NETWORKS } from '../base/networks.js'
import type { Snapshots } from './snapshot-shape.js'
import type { Fenced, LedgerEntry, LedgerRecord, Notification, OutboxEntry, StoreState } from './state-shape.js'
import type { Strategy } from './strategy.js'
import { type FenceCheckResult, fenceCheckText } from './fence-watch.js'

export interface HostReport {
  host: string
  vector: HostDecision['vector']
  /** 1-based strategy row matched, or null. */
  row: number | null
  /** What this evaluation decides: STOPPED, STARTED or "none". */
  action: HostDecision['action']
  reason: string
  /** The guard holding a decision back (isolation, hold, rate-limit, unconfirmed) and until when. */
  guard: { kind: string; until?: string } | null
  /** The last notification Masakari holds for the host. */
  lastNotified: { event: string; outcome: string; at: string } | null
  /** The last notification that ended otherwise (refused, expired, skipped). */
  lastUnsent: { event: string; outcome: string; at: string; message?: string } | null
  /** Waiting in the outbox, oldest first. */
  pending: Array<{ event: string; attempts: number; nextAttemptAt: string; lastError?: string }>
  /** What fencing did for its latest recovery, if anything (issue #21). */
  fence: HostFence | null
}

/** Fencing and a host's latest recovery: powered off, failing (its STOPPED waits), or given up (sent UNKNOWN). */
export type HostFence =
  | { state: 'fenced'; at: string; agent: string }
  | { state: 'failing'; error: string; nextAttemptAt: string }
  | { state: 'unknown'; at: string; error: string }

/** The `fencing` section as `status` shows it (absent when off): the agent, the hosts it covers, the pulse's last check. */
export interface FencingReport {
  agent: string
  hosts: number
  lastCheck: FenceCheckResult | null
}

export interface Report {
  evaluatedAt: string
  dryRun: boolean
  strategy: { source: string; sequence: string[] }
  snapshots: Record<string, { consulIndex: string; receivedAt: string; nodes: number } | null>
  hosts: HostReport[]
  /** Networks whose failures are suppressed by the self-isolation guard. */
  isolation: Record<string, { since: string; reason: string }>
  /** Per network of the strategy: the quiet window of a burst and the burst in progress, if any. */
  timing: Record<string, NetworkTiming>
  /** Notifications this evaluation decides to send (or would, with --dry-run). */
  notifications: Notification[]
  /** null when fencing is off. */
  fencing: FencingReport | null
}

export function buildReport(
  decisions: HostDecision[],
  snapshots: Snapshots,
  state: StoreState,
  strategy: Strategy,
  queued: Notification[],
  timing: Partial<Record<string, NetworkTiming>>,
  evaluatedAt: Date,
  dryRun: boolean,
  fencing: FencingReport | null = null,
): Report {
  const hosts = decisions.map((d): HostReport => {
    const entry = hostEntry(state.ledger, d.host)
    return {
      host: d.host,
      vector: d.vector,
      row: d.match.row,
      action: d.action,
      reason: d.reason,
      guard: d.guard ?? null,
      lastNotified: entry?.notified ? { event: entry.notified.event, outcome: entry.notified.outcome, at: entry.notified.at } : null,
      lastUnsent: entry?.unsent
        ? { event: entry.unsent.event, outcome: entry.unsent.outcome, at: entry.unsent.at, message: entry.unsent.message }
        : null,
      pending: state.outbox
        .filter((o) => o.host === d.host)
        .map((o) => ({
          event: o.notification.payload.event,
          attempts: o.attempts,
          nextAttemptAt: o.nextAttemptAt,
          lastError: o.lastError,
        })),
      fence: hostFence(
        entry,
        state.outbox.filter((o) => o.host === d.host),
      ),
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
    isolation: { ...state.isolation } as Report['isolation'],
    timing: { ...timing } as Report['timing'],
    notifications: queued,
    fencing,
  }
}

/**
 * What fencing did for the host's latest recovery: its STOPPED waiting in the outbox if there
 * is one (fenced, or its fence failing), else the latest of its ledger records if a STOPPED
 * (fenced, or sent UNKNOWN). A STARTED since, or no fencing for it: null.
 */
export function hostFence(entry: LedgerEntry | undefined, pending: readonly OutboxEntry[]): HostFence | null {
  const waiting = pending.find((o) => o.notification.payload.event === 'STOPPED')
  if (waiting?.fenced) return { state: 'fenced', at: waiting.fenced.at, agent: waiting.fenced.agent }
  if (waiting?.fenceError !== undefined) return { state: 'failing', error: waiting.fenceError, nextAttemptAt: waiting.nextAttemptAt }
  if (waiting) return null
  const records = [entry?.notified, entry?.unsent].filter((r): r is LedgerRecord => r !== undefined)
  const last = records.sort((a, b) => Date.parse(b.at) - Date.parse(a.at))[0]
  if (last?.event !== 'STOPPED') return null
  if (last.fenced) return { state: 'fenced', at: last.fenced.at, agent: last.fenced.agent }
  if (last.hostStatus === 'UNKNOWN') return { state: 'unknown', at: last.at, error: last.fenceError ?? 'no message' }
  return null
}

/** The host's fence line in `status`, in explain's words. */
export function hostFenceText(f: HostFence): string {
  if (f.state === 'fenced') return fencedText(f)
  if (f.state === 'failing') return `fencing failed (${f.error}): its STOPPED waits, next try ${f.nextAttemptAt}`
  return `fencing failed (${f.error}): STOPPED sent with host_status UNKNOWN at ${f.at}, not evacuated: power it off and recover it by hand`
}

/** `status`'s fencing line: "fencing: fence_ipmilan for 3 hosts; last check …: every BMC answered". */
export function fencingLine(f: FencingReport): string {
  return `fencing: ${f.agent} for ${f.hosts} host${f.hosts === 1 ? '' : 's'}; ${fenceCheckText(f.lastCheck ?? undefined)}`
}

/** ANSI colours for the table's states and actions: on a terminal only (see `colourWanted`). */
const COLOURS: Record<string, string> = { up: '32', down: '31', maintenance: '33', unknown: '2', STOPPED: '1;31', STARTED: '1;32' }

/** Colours one padded cell by the word it starts with; padding stays outside the escape codes' count. */
export function paint(cell: string, colour: boolean): string {
  if (!colour) return cell
  const word = cell.trimEnd().split(' ').at(-1) ?? ''
  const code = COLOURS[word]
  return code ? `\x1b[${code}m${cell.trimEnd()}\x1b[0m${cell.slice(cell.trimEnd().length)}` : cell
}

/** Colour when stdout is a terminal and NO_COLOR (https://no-color.org) is unset or empty. */
export function colourWanted(isTTY: boolean | undefined, env: Record<string, string | undefined>): boolean {
  return isTTY === true && (env.NO_COLOR ?? '') === ''
}

export function formatReport(report: Report, colour = false): string {
  const lines: string[] = []
  lines.push(`strategy: ${report.strategy.source} (networks: ${report.strategy.sequence.join(', ')})`)
  for (const n of NETWORKS) {
    const s = report.snapshots[n]
    lines.push(
      `snapshot ${n}: ${s ? `${s.nodes} nodes, consul index ${s.consulIndex || '-'}, received ${s.receivedAt}` : 'none yet (every host unknown there)'}`,
    )
  }
  for (const [n, t] of Object.entries(report.timing)) lines.push(timingLine(n, t))
  for (const [n, i] of Object.entries(report.isolation))
    lines.push(`SELF-ISOLATION GUARD on ${n} since ${i.since}: ${i.reason}; no recovery for ${n} failures`)
  if (report.fencing) lines.push(fencingLine(report.fencing))
  lines.push('')
  const header = ['HOST', ...NETWORKS.map((n) => n.toUpperCase()), 'ROW', 'ACTION', 'LAST NOTIFIED', 'PENDING', 'WHY']
  const rows = report.hosts.map((h) => [
    h.host,
    ...NETWORKS.map((n) => h.vector[n]),
    h.row === null ? '-' : String(h.row),
    h.action === 'none' ? 'none' : (report.dryRun ? 'would send ' : 'send ') + h.action,
    h.lastNotified
      ? `${h.lastNotified.event} ${h.lastNotified.outcome} ${h.lastNotified.at}`
      : h.lastUnsent
        ? `(${h.lastUnsent.event} ${h.lastUnsent.outcome === 'on-maintenance' ? 'refused: on maintenance in Masakari' : h.lastUnsent.outcome})`
        : '-',
    h.pending.length === 0 ? '-' : h.pending.map((p) => `${p.event}${p.attempts ? ` ×${p.attempts}` : ''}`).join(','),
    h.reason,
  ])
  const widths = header.map((_, i) => Math.max(header[i]!.length, ...rows.map((r) => r[i]!.length)))
  const fmt = (r: string[], paintIt = false) =>
    r.map((c, i) => (i === r.length - 1 ? c : paint(c.padEnd(widths[i]!), paintIt && i > 0 && i <= NETWORKS.length + 2))).join('  ')
  lines.push(fmt(header), ...rows.map((r) => fmt(r, colour)))
  if (report.hosts.length === 0) lines.push('(no hosts: no snapshot has any node yet)')
  const fenced = report.hosts.filter((h) => h.fence !== null)
  if (fenced.length > 0) lines.push('', ...fenced.map((h) => `${h.host}: ${hostFenceText(h.fence!)}`))
  lines.push('')
  if (report.notifications.length === 0) lines.push('notifications: none to send')
  else {
    lines.push(`notifications ${report.dryRun ? 'that would be sent (dry run: nothing sent or changed)' : 'queued for Masakari'}:`)
    for (const n of report.notifications) lines.push(`  ${JSON.stringify({ notification: n })}`)
  }
  return `${lines.join('\n')}\n`
}

function timingLine(network: string, t: NetworkTiming): string {
  const window = `quiet window ${t.quietWindow.seconds} s (${t.quietWindow.basis})`
  if (!t.burst) return `${network}: no burst; ${window}`
  const b = t.burst
  return `${network}: BURST in progress since ${b.since} (${b.hosts.length} hosts: ${b.hosts.join(', ')}; the last at ${b.lastDown}), ${window}; its recoveries wait until ${b.quietUntil}`
}

export interface Explanation {
  host: string
  networks: Array<{ network: string; state: string; downSince?: string; consulIndex?: string; receivedAt?: string; inStrategy: boolean }>
  rows: Array<{ row: number; health: string[]; action: 'recovery' | 'none'; matches: boolean }>
  decision: { action: string; reason: string; guard?: { kind: string; until?: string } }
  ledger: { phase?: string; firstSeenAt?: string; notified?: unknown; unsent?: unknown; hold?: unknown }
  pending: Array<HostReport['pending'][number] & { fenced?: Fenced; fenceError?: string }>
  isolation: Record<string, { since: string; reason: string }>
  timing: Record<string, NetworkTiming>
  rateLimit: { recentRecoveries: number; maxRecoveries: number; window: number }
}

export function explainHost(
  host: string,
  decisions: HostDecision[],
  snapshots: Snapshots,
  state: StoreState,
  strategy: Strategy,
  timing: Partial<Record<string, NetworkTiming>>,
  guards: GuardPolicy,
  now: Date,
): Explanation | undefined {
  const d = decisions.find((x) => x.host === host)
  if (!d) return undefined
  const entry = hostEntry(state.ledger, host)
  return {
    host,
    networks: NETWORKS.map((n) => ({
      network: n,
      state: d.vector[n],
      downSince: entry?.downSince?.[n],
      consulIndex: snapshots[n]?.consulIndex,
      receivedAt: snapshots[n]?.receivedAt,
      inStrategy: strategy.sequence.includes(n),
    })),
    rows: strategy.rows.map((r, i) => ({
      row: i + 1,
      health: r.health,
      action: r.recovery ? 'recovery' : 'none',
      matches: d.match.row === i + 1,
    })),
    decision: { action: d.action, reason: d.reason, ...(d.guard ? { guard: d.guard } : {}) },
    ledger: { phase: entry?.phase, firstSeenAt: entry?.firstSeenAt, notified: entry?.notified, unsent: entry?.unsent, hold: entry?.hold },
    pending: state.outbox
      .filter((o) => o.host === host)
      .map((o) => ({
        event: o.notification.payload.event,
        attempts: o.attempts,
        nextAttemptAt: o.nextAttemptAt,
        lastError: o.lastError,
        ...(o.fenced ? { fenced: o.fenced } : {}),
        ...(o.fenceError ? { fenceError: o.fenceError } : {}),
      })),
    isolation: { ...state.isolation } as Record<string, { since: string; reason: string }>,
    timing: { ...timing } as Explanation['timing'],
    rateLimit: { recentRecoveries: rateLimitSlot(state.recoveries, now, guards).recent.length, ...guards.rateLimit },
  }
}

export function formatExplanation(e: Explanation, strategy: Strategy): string {
  const out: string[] = [`host ${e.host}`, '', 'state per network:']
  for (const n of e.networks) {
    const from = n.receivedAt ? `snapshot of ${n.receivedAt}, consul index ${n.consulIndex || '-'}` : 'no snapshot yet'
    const since = n.downSince ? `, down since ${n.downSince}` : ''
    out.push(`  ${n.network.padEnd(10)} ${n.state.padEnd(11)} (${from}${since})${n.inStrategy ? '' : ' — not in the strategy'}`)
  }
  out.push('', `strategy ${strategy.source}, networks [${strategy.sequence.join(', ')}]; rows considered:`)
  for (const r of e.rows)
    out.push(`  ${r.matches ? '→' : ' '} row ${r.row}: [${r.health.join(', ')}] ${r.action}${r.matches ? '   (matches)' : ''}`)
  if (!e.rows.some((r) => r.matches)) out.push('    no row matches: no action')
  out.push('', `decision: ${e.decision.action === 'none' ? 'no action' : e.decision.action} — ${e.decision.reason}`)
  if (e.decision.guard)
    out.push(`held back by: ${e.decision.guard.kind}${e.decision.guard.until ? ` until ${e.decision.guard.until}` : ''}`)
  const isolated = Object.entries(e.isolation)
  out.push(
    `self-isolation guard: ${isolated.length === 0 ? 'not tripped' : isolated.map(([n, i]) => `${n} since ${i.since} (${i.reason})`).join('; ')}`,
  )
  for (const [n, t] of Object.entries(e.timing)) out.push(`burst guard, ${timingLine(n, t)}`)
  out.push(
    `rate limit: ${e.rateLimit.recentRecoveries} recoveries in the last ${e.rateLimit.window} s (limit ${e.rateLimit.maxRecoveries === 0 ? 'lifted' : e.rateLimit.maxRecoveries})`,
  )
  out.push('', `ledger: phase ${e.ledger.phase ?? '-'}, first seen ${e.ledger.firstSeenAt ?? '-'}`)
  if (e.ledger.notified) out.push(`  last held by Masakari: ${JSON.stringify(e.ledger.notified)}`, ...fenceLines(e.ledger.notified))
  if (e.ledger.unsent) out.push(`  last not delivered: ${JSON.stringify(e.ledger.unsent)}`, ...fenceLines(e.ledger.unsent))
  if (e.ledger.hold) out.push(`  hold: ${JSON.stringify(e.ledger.hold)}`)
  out.push(
    `outbox: ${e.pending.length === 0 ? 'nothing pending' : e.pending.map((p) => `${p.event} (attempts ${p.attempts}, next ${p.nextAttemptAt}${p.lastError ? `, last error: ${p.lastError}` : ''}${p.fenced ? `, ${fencedText(p.fenced)}` : ''})`).join('; ')}`,
  )
  return `${out.join('\n')}\n`
}

/** "fenced at …, power off confirmed by fence_ipmilan" (issue #21). */
export const fencedText = (f: Pick<Fenced, 'at' | 'agent'>) => `fenced at ${f.at}, power off confirmed by ${f.agent}`

/** What a ledger record says of fencing: its confirmed off, or the UNKNOWN it was sent with. */
function fenceLines(record: unknown): string[] {
  const r = record as Partial<LedgerRecord>
  if (r.fenced) return [`    ${fencedText(r.fenced)}`]
  if (r.hostStatus === 'UNKNOWN')
    return [`    sent with host_status UNKNOWN: fencing failed (${r.fenceError ?? 'no message'}); not evacuated`]
  return []
}
