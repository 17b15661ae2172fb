/**
 * What the pulse check (consul-config/pulse.sh, a script check the controller's Consul agent
 * runs every 15 s) reads without starting node: two small files in the state directory.
 *
 *   wake    when a worker must run next (epoch seconds); absent when nothing waits. A worker
 *           killed with work pending leaves it behind, and the check starts a new one once due:
 *           Consul runs watch handlers only on changes, and a dead host makes none.
 *   health  `passing`, `warning` or `critical` on the first line, the reason on the second:
 *           the monitor's own health where operators already look (`consul catalog`, the UI);
 *           on the third, the system's uptime in whole seconds when it was written. The pulse
 *           takes a deep look when the note is 30 minutes old: it reads /proc/uptime with its
 *           shell's own `read`, where finding a file's age would start a process every pulse
 *           (most of an idle pulse's cost).
 *   resync  when the pulse must next run a resync (epoch seconds, lib/run/resync.ts); absent while
 *           everything is settled. Watch runs are edge-triggered: this is the level trigger.
 *   warmed  written by each deep look (lib/run/pulse.ts): when, and what its warm-up found. The
 *           pulse takes a deep look while it is missing: right after an install, the watches'
 *           first runs have written a fresh health note, and without it the first warm-up (the
 *           Keystone token, Masakari's host list) would wait 30 minutes, left to the first
 *           failure to pay for (~0.5 s, issue #22).
 *   failed-<network>  written by watch.sh when a watch run failed (any exit but 0, a crash,
 *           node missing); the check is critical while one is there, and a successful run of
 *           that network, or a resync that read it, removes it.
 *
 * And one that only node runs read: `fence-check` (fencing on), JSON, when the pulse last
 * started a fence check and what the last finished one found (lib/run/fence-check.ts); every
 * run that writes the health note folds it in, so a BMC that does not answer keeps the check
 * at warning between two fence checks whatever run wrote the note last.
 */
import { readdir, readFile, unlink } from 'node:fs/promises'
import { uptime } from 'node:os'
import { join } from 'node:path'
import { writeFileAtomic } from './atomic-file.js'
import { wakePath } from './paths.js'
import { hostEntry } from '../base/host-record.js'
import { type Network, NETWORKS } from '../base/networks.js'
import { nextWake } from '../decide/outbox.js'
import type { Role } from '../consul/sender.js'
import type { Snapshots } from '../decide/snapshot-shape.js'
import type { StoreState } from '../decide/state-shape.js'
import { type FenceCheckNote, FenceCheckNoteSchema } from '../decide/fence-watch.js'

export interface Health {
  status: 'passing' | 'warning' | 'critical'
  reason: string
}

/** A notification waiting longer than this is a backlog worth a warning. */
export const BACKLOG_WARN_S = 60
/**
 * An expired notification keeps the check at warning this long (an operator must look at the
 * host). Not critical: the sender's session is tied to this check, and a past expiry must not
 * stop every controller from sending what comes next.
 */
export const EXPIRED_WARN_S = 3600

/** The monitor's health from its record and snapshots (pure). */
export function healthOf(state: StoreState, snapshots: Snapshots, sequence: Network[], role: Role | undefined, now: Date): Health {
  const ago = (t: string) => (now.getTime() - Date.parse(t)) / 1000
  const expired = Object.keys(state.ledger)
    .map((h) => [h, hostEntry(state.ledger, h)?.unsent] as const)
    .filter(([, u]) => u?.outcome === 'expired' && ago(u.at) < EXPIRED_WARN_S)
  if (expired.length > 0) {
    const [host, u] = expired[0]!
    return {
      status: 'warning',
      reason: `${u!.event} for ${host} expired undelivered at ${u!.at}${expired.length > 1 ? ` (and ${expired.length - 1} more)` : ''}: recover it by hand`,
    }
  }
  const fencing = fenceWarning(state, ago)
  if (fencing) return fencing
  const isolated = isolationWarning(state)
  if (isolated) return isolated
  const oldest = state.outbox.reduce<(typeof state.outbox)[number] | undefined>(
    (o, e) => (!o || e.decidedAt < o.decidedAt ? e : o),
    undefined,
  )
  if (oldest && ago(oldest.decidedAt) > BACKLOG_WARN_S) {
    const why = oldest.lastError ? `; last error: ${oldest.lastError}` : ''
    return {
      status: 'warning',
      reason: `${state.outbox.length} notification(s) waiting, the oldest (${oldest.host} ${oldest.notification.payload.event}) since ${oldest.decidedAt}${why}`,
    }
  }
  const missing = sequence.filter((n) => snapshots[n] === undefined)
  if (missing.length > 0)
    return { status: 'warning', reason: `no snapshot of ${missing.join(', ')} yet: is its checks watch installed and running?` }
  const who = role === undefined ? '' : role.sender ? '; this controller sends' : `; standby: ${role.why}`
  return { status: 'passing', reason: `${state.outbox.length} notification(s) pending${who}` }
}

/**
 * Fencing (issue #21) said where the backlog is: a STOPPED sent UNKNOWN after failed fences
 * keeps the check at warning as long as an expired one (the host was never powered off), a
 * fence failing now turns it warning at once (not after the backlog's minute).
 */
function fenceWarning(state: StoreState, ago: (t: string) => number): Health | undefined {
  for (const host of Object.keys(state.ledger)) {
    const entry = hostEntry(state.ledger, host)
    const sent = [entry?.notified, entry?.unsent].find((r) => r?.hostStatus === 'UNKNOWN' && ago(r.at) < EXPIRED_WARN_S)
    if (sent)
      return {
        status: 'warning',
        reason: `${sent.event} for ${host} sent with host_status UNKNOWN at ${sent.at}: fencing failed (${sent.fenceError ?? 'no message'}); Masakari will not evacuate it: power it off and recover it by hand`,
      }
  }
  const failing = state.outbox.find((e) => e.fenceError !== undefined)
  if (failing)
    return {
      status: 'warning',
      reason: `fencing ${failing.host} failed (${failing.fenceError}); its STOPPED (decided ${failing.decidedAt}) waits, never NORMAL without a confirmed off: retried until its delivery expiry`,
    }
  return undefined
}

/**
 * The self-isolation guard holds every recovery on a network back: hosts are down there and
 * nobody is told. That is the right call when the monitor's own side is cut off, and a silent
 * one unless the check says it (never silently blind). Warning, not critical: the sender's
 * session is tied to this check, and a real mass failure seen by every controller must not
 * leave none of them holding the lock when the hosts come back under the threshold.
 */
function isolationWarning(state: StoreState): Health | undefined {
  const held = NETWORKS.filter((n) => state.isolation[n] !== undefined)
  if (held.length === 0) return undefined
  const said = held.map((n) => `${n} since ${state.isolation[n]!.since}: ${state.isolation[n]!.reason}`).join('; ')
  return {
    status: 'warning',
    reason: `self-isolation guard holds every recovery back (${said}); a host down there is not notified until fewer hosts are down: look at this controller's links, or recover hosts by hand`,
  }
}

const fenceCheckPath = (stateDir: string) => join(stateDir, 'fence-check')

/** The fence check's note; undefined when there is none or it cannot be read (then a check is due, which rewrites it). */
export async function readFenceCheck(stateDir: string): Promise<FenceCheckNote | undefined> {
  const text = await readFile(fenceCheckPath(stateDir), 'utf8').catch(() => undefined)
  if (text === undefined) return undefined
  try {
    const parsed = FenceCheckNoteSchema.safeParse(JSON.parse(text))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

export async function writeFenceCheck(stateDir: string, note: FenceCheckNote): Promise<void> {
  await writeFileAtomic(fenceCheckPath(stateDir), `${JSON.stringify(note)}\n`, 0o640, { durable: false })
}

/** Fencing off: the last check's result says nothing any more (and a later enable starts afresh). */
export async function clearFenceCheck(stateDir: string): Promise<void> {
  await removeNote(fenceCheckPath(stateDir))
}

/** A note's first two lines, as pulse.sh reads them: the status, the reason on one line. */
function noteText(health: Health): string {
  return `${health.status}\n${health.reason.replace(/\s+/g, ' ')}\n`
}

export async function writeHealth(stateDir: string, health: Health, uptimeS = uptime()): Promise<void> {
  // Notes, rewritten on every run: no fsync (it would delay the first attempt's POST).
  await writeFileAtomic(join(stateDir, 'health'), `${noteText(health)}${Math.floor(uptimeS)}\n`, 0o640, { durable: false })
}

/** The deep look's note that it ran (see the module comment): one JSON line. */
export async function writeWarmed(stateDir: string, note: { at: string; warmed?: unknown }): Promise<void> {
  await writeFileAtomic(join(stateDir, 'warmed'), `${JSON.stringify(note)}\n`)
}

/** The wake file: when the next retry or held-back decision is due; removed when nothing is. */
export async function writeWake(stateDir: string, state: StoreState, extra?: Date): Promise<void> {
  const times = [nextWake(state), extra].filter((d): d is Date => d !== undefined).map((d) => d.getTime())
  const path = wakePath(stateDir)
  if (times.length === 0) return removeNote(path)
  await writeFileAtomic(path, `${Math.ceil(Math.min(...times) / 1000)}\n`, 0o640, { durable: false })
}

/**
 * Why the view is not settled, or undefined when it is: every host up on every network of the
 * strategy, nothing held, unconfirmed or pending, and a snapshot of each. Only then may the
 * monitor rely on the watches alone (pure).
 */
export function unsettled(state: StoreState, snapshots: Snapshots, sequence: Network[]): string | undefined {
  if (state.outbox.length > 0) return `${state.outbox.length} notification(s) pending`
  if (state.wakeAt !== undefined) return `a decision is held or unconfirmed until ${state.wakeAt}`
  const seen = new Set<string>()
  for (const network of sequence) {
    const nodes = snapshots[network]?.nodes
    if (nodes === undefined) return `no snapshot of ${network}`
    for (const host of Object.keys(nodes)) seen.add(host)
  }
  for (const host of seen) {
    // A host already recovered waits for its operator: nothing is left to decide while it is down.
    if (hostEntry(state.ledger, host)?.phase === 'recovery') continue
    for (const network of sequence) {
      const s = hostEntry(snapshots[network]!.nodes, host)
      if (s !== 'up' && s !== 'maintenance') return `${host} is ${s ?? 'missing'} on ${network}`
    }
  }
  return undefined
}

/**
 * The resync note. `due` undefined removes it. Anything but a resync only brings it forward
 * (`postpone` false): a watch run of one network has not re-read the others, whose watches may
 * be the ones that lost an edge.
 */
export async function writeResync(stateDir: string, due: Date | undefined, opts: { postpone: boolean }): Promise<void> {
  const path = join(stateDir, 'resync')
  // A failed run's note stays until a run reads its network again: so does the resync.
  if (due === undefined && !(await anyFailed(stateDir))) return removeNote(path)
  if (due === undefined) return
  const at = Math.ceil(due.getTime() / 1000)
  const current = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10)
  if (!opts.postpone && Number.isSafeInteger(current) && current <= at) return
  await writeFileAtomic(path, `${at}\n`, 0o640, { durable: false })
}

/** What a failure note is about: a network's watch runs, the resync, the worker, the resident, an own agent's confirmations. */
export type FailedWhat = Network | 'resync' | 'worker' | 'resident' | `confirm-${Network}`

/**
 * A failure note of our own: it outlives the runs that write a passing health note meanwhile
 * (a run that asks no agent does not know the agent refused the last one), until cleared.
 */
export async function writeFailed(stateDir: string, what: FailedWhat, health: Health, opts: { uptimeS?: number } = {}): Promise<void> {
  // The uptime line: when the pulse may start the resident again (pulse.sh).
  const when = opts.uptimeS === undefined ? '' : `${Math.floor(opts.uptimeS)}\n`
  await writeFileAtomic(join(stateDir, `failed-${what}`), `${noteText(health)}${when}`, 0o640, { durable: false })
}

/** A failure note (`failed-<network>` by watch.sh, `failed-resync` by pulse.sh…), once a run has done it again. */
export async function clearFailed(stateDir: string, what: FailedWhat): Promise<void> {
  await removeNote(join(stateDir, `failed-${what}`))
}

async function anyFailed(stateDir: string): Promise<boolean> {
  const names = await readdir(stateDir).catch(() => [] as string[])
  return names.some((n) => n.startsWith('failed-'))
}

async function removeNote(path: string): Promise<void> {
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err
  })
}
