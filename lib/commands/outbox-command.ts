/**
 * `outbox`: the notifications waiting for Masakari (the outbox) and those that expired
 * undelivered (the ledger's last unsent record, outcome `expired`). `outbox retry` requeues
 * expired ones under the state lock, as the worker records its answers, and starts the worker.
 */
import { EXIT, UsageError } from '../run/cli.js'
import { ConsulError } from '../consul/consul-api.js'
import type { Role } from '../consul/sender.js'
import { hostNotification } from '../decide/evaluator.js'
import { withHostEntry } from '../base/host-record.js'
import { loadMonitor } from '../run/load-monitor.js'
import { localView } from './evaluate-command.js'
import type { Deps } from '../run/deps.js'
import type { Monitor } from '../run/monitor-context.js'
import { isExpired } from '../decide/outbox.js'
import type { LedgerEntry, OutboxEntry, StoreState } from '../decide/state-shape.js'

export interface PendingView {
  id: string
  host: string
  event: string
  decidedAt: string
  attempts: number
  nextAttemptAt: string
  /** When the worker gives it up: decidedAt + masakari.delivery.expiry. */
  expiresAt: string
  /** Past its expiry: the worker's next pass records it as expired. */
  overdue: boolean
  lastError?: string
}

export interface ExpiredView {
  id: string
  host: string
  event: string
  generatedTime: string
  expiredAt: string
  message?: string
}

export interface OutboxView {
  pending: PendingView[]
  expired: ExpiredView[]
}

/** What the outbox and the ledger hold now (pure). */
export function outboxView(state: StoreState, now: Date, expirySeconds: number): OutboxView {
  const pending = state.outbox.map(
    (e): PendingView => ({
      id: e.id,
      host: e.host,
      event: e.notification.payload.event,
      decidedAt: e.decidedAt,
      attempts: e.attempts,
      nextAttemptAt: e.nextAttemptAt,
      expiresAt: new Date(Date.parse(e.decidedAt) + expirySeconds * 1000).toISOString(),
      overdue: isExpired(e, now, { initialBackoff: 1, maxBackoff: 1, concurrency: 1, expiry: expirySeconds }),
      ...(e.lastError ? { lastError: e.lastError } : {}),
    }),
  )
  const expired: ExpiredView[] = []
  for (const [host, entry] of Object.entries(state.ledger)) {
    const u = entry.unsent
    if (u?.outcome !== 'expired') continue
    expired.push({
      id: u.id,
      host,
      event: u.event,
      generatedTime: u.generatedTime,
      expiredAt: u.at,
      ...(u.message ? { message: u.message } : {}),
    })
  }
  return { pending, expired }
}

export function formatOutbox(view: OutboxView): string {
  const lines = [`pending (${view.pending.length}):`]
  for (const p of view.pending)
    lines.push(
      `  ${p.id}  ${p.host}  ${p.event}  decided ${p.decidedAt}, ${p.attempts} attempts, next ${p.nextAttemptAt}, ${p.overdue ? 'OVERDUE (expires at the next pass)' : `expires ${p.expiresAt}`}${p.lastError ? `; last error: ${p.lastError}` : ''}`,
    )
  if (view.pending.length === 0) lines.push('  none')
  lines.push(`expired undelivered (${view.expired.length}):`)
  for (const e of view.expired) lines.push(`  ${e.id}  ${e.host}  ${e.event}  expired ${e.expiredAt}${e.message ? `: ${e.message}` : ''}`)
  if (view.expired.length === 0) lines.push('  none')
  else lines.push('  requeue with: outbox retry ID, or outbox retry --all')
  return `${lines.join('\n')}\n`
}

export async function runOutbox(args: { config: string; json: boolean }, deps: Deps): Promise<void> {
  const monitor = await loadMonitor(args.config, deps, 'outbox', { readOnly: true })
  const view = outboxView(await monitor.store.read(), deps.now(), monitor.config.masakari.delivery.expiry)
  deps.stdout(args.json ? `${JSON.stringify({ ...view, localView: localView(monitor) }, null, 2)}\n` : formatOutbox(view))
}

/**
 * Why an expired notification must not be sent now, if so. A STOPPED goes only while the host
 * is still in recovery (sent to a host that came back, it would evacuate a running host); a
 * STARTED only after a STOPPED Masakari holds, while the host is still back; neither when
 * something newer for the host is already in the outbox.
 */
export function refusal(entry: LedgerEntry, event: string, queued: OutboxEntry[]): string | undefined {
  if (queued.length > 0) return `a newer ${queued[0]!.notification.payload.event} for the host is already in the outbox`
  if (event === 'STOPPED' && entry.phase !== 'recovery')
    return `the host is no longer in a recovery row (its vector now: ${entry.vector ?? 'unknown'}); a STOPPED now would evacuate a running host`
  if (event === 'STARTED' && entry.phase !== 'normal')
    return `the host is not back to all-up (its vector now: ${entry.vector ?? 'unknown'})`
  if (event === 'STARTED' && entry.notified?.event !== 'STOPPED') return 'Masakari holds no STOPPED for the host to follow'
  return undefined
}

/**
 * Requeues the chosen expired notifications (pure): the same body, generated_time included
 * (if Masakari got it after all, it answers "duplicate"), a fresh expiry, due now. The ledger's
 * unsent record goes: the notification is pending again.
 */
export function requeue(state: StoreState, ids: string[], now: Date): { next: StoreState; requeued: string[]; refused: string[] } {
  let next = state
  const requeued: string[] = []
  const refused: string[] = []
  for (const [host, entry] of Object.entries(state.ledger)) {
    const u = entry.unsent
    if (u?.outcome !== 'expired' || !ids.includes(u.id)) continue
    const why = refusal(
      entry,
      u.event,
      next.outbox.filter((e) => e.host === host),
    )
    if (why) {
      refused.push(`${u.id} (${host} ${u.event}): ${why}`)
      continue
    }
    const notification = { ...hostNotification(host, u.event, new Date(u.generatedTime)), generated_time: u.generatedTime }
    const at = now.toISOString()
    const reason = `requeued by outbox retry (expired ${u.at}${u.message ? `: ${u.message}` : ''})`
    const queued: OutboxEntry = { id: u.id, host, notification, reason, decidedAt: at, attempts: 0, nextAttemptAt: at }
    const { unsent: _gone, ...kept } = entry
    next = { ...next, outbox: [...next.outbox, queued], ledger: withHostEntry(next.ledger, host, kept) }
    requeued.push(`${u.id} (${host} ${u.event})`)
  }
  return { next, requeued, refused }
}

export async function runOutboxRetry(args: { config: string; id?: string; all: boolean }, deps: Deps): Promise<number> {
  if ((args.id === undefined) === !args.all) throw new UsageError('outbox retry: give one expired notification ID, or --all')
  const monitor = await loadMonitor(args.config, deps, 'outbox')
  await mustSend(monitor)
  const result = await monitor.store.transact(async (state) => {
    const expired = outboxView(state, deps.now(), monitor.config.masakari.delivery.expiry).expired
    if (args.id !== undefined && !expired.some((e) => e.id === args.id))
      throw new UsageError(`outbox retry: no expired notification ${args.id} (expired: ${expired.map((e) => e.id).join(', ') || 'none'})`)
    const r = requeue(state, args.id === undefined ? expired.map((e) => e.id) : [args.id], deps.now())
    return { ...(r.requeued.length > 0 ? { next: r.next } : {}), result: r }
  })
  for (const r of result.requeued) monitor.logger.warn('notification requeued by outbox retry', { notification: r })
  for (const r of result.requeued) deps.stdout(`requeued ${r}\n`)
  for (const r of result.refused) deps.stdout(`not requeued ${r}\n`)
  if (result.requeued.length === 0 && result.refused.length === 0) deps.stdout('nothing expired to requeue\n')
  if (result.requeued.length > 0) deps.spawnWorker(monitor.config.source, monitor.config.stateDir)
  // 65 (EX_DATAERR): the state says no to what was asked.
  return result.refused.length > 0 ? EXIT.badInput : EXIT.ok
}

/**
 * With several controllers only the sender writes the shared record: take the lock, or say who
 * has it. Without the lock's agent there is no shared record to write: unlike the commands that
 * read, retry has no local view to fall back to (a requeue in state.json would never be sent).
 */
async function mustSend(monitor: Monitor): Promise<void> {
  const c = monitor.coordination
  if (!c) return
  let role: Role
  try {
    role = await c.lock.acquire()
  } catch (err) {
    if (!(err instanceof ConsulError)) throw err
    throw new ConsulError(
      `outbox retry writes the shared record in Consul KV, which needs the ${c.config.network} agent: ${err.message}; nothing requeued`,
      err.status,
    )
  }
  if (!role.sender) throw new UsageError(`another controller sends (${role.holder ?? 'nobody yet'}: ${role.why}); run outbox retry there`)
}
