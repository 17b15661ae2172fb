/**
 * The steps every run is made of after loading (load-monitor.ts): a watch run, a resync, the
 * worker and evaluate.js each call the ones they need, in this order.
 *
 *   previewRun  evaluate without recording anything (--dry-run, status, explain)
 *   recordRun   take the sender lock; evaluate and record under the store lock; log; write the notes
 *   handOff     deliver what is due now (the first attempt) or start a worker for it
 *
 * A controller that is not the sender records only its own view (standby) and hands off nothing,
 * unless nobody holds the lock: then a worker waits out the lock-delay and takes over.
 */
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'
import type { Check } from '../consul/checks-payload.js'
import { writeSeen } from './quiet-run.js'
import type { HostDecision, Evaluation } from '../decide/evaluator.js'
import { sendFirstAttempt } from './first-attempt.js'
import { NotSenderError } from '../consul/kv-store.js'
import type { Logger } from '../base/log.js'
import { stage } from '../base/stages.js'
import { dueEntries, hasPendingWork } from '../decide/outbox.js'
import { writeSnapshot } from '../state/snapshot.js'
import type { Snapshot, Snapshots } from '../decide/snapshot-shape.js'
import { type Notification, ownHoldsAfter, type StoreState } from '../decide/state-shape.js'
import { type OwnHoldsFile, readOwnHolds, writeOwnHolds } from '../state/own-holds.js'
import type { Role } from '../consul/sender.js'
import type { Strategy } from '../decide/strategy.js'
import { type Evaluated, evaluateView } from './evaluate-view.js'
import { noteRefusals, noteStatus } from './notes.js'

export interface RunResult {
  decisions: HostDecision[]
  snapshots: Snapshots
  state: StoreState
  /** Notifications this run queued (or would queue, in a preview). */
  queued: Notification[]
  /** Per network: the quiet window and the burst in progress. */
  timing: Evaluation['timing']
  /** With several controllers: whether this one is the sender, or who is. */
  role?: Role
  /** A resync: it read every network just now, so it sets the next resync time (notes.ts). */
  resynced: boolean
}

export interface RecordOptions {
  /** New snapshots (a watch run's one, a resync's one per network read), each replacing its network's unless older. */
  incoming?: Snapshot[]
  resync?: boolean
  /** A watch run: the payload its snapshot came from, whose digest quiet runs compare (quiet-run.ts). */
  seen?: { checks: readonly Check[]; lockCheck: string }
}

/** What `incoming` would do, recording nothing: the own agents are asked as a real run would. */
export async function previewRun(monitor: Monitor, deps: Deps, incoming: Snapshot[] = []): Promise<RunResult> {
  const role = await monitor.coordination?.lock.peek()
  const own = await readOwn(monitor)
  const evaluated = await evaluateView(monitor, deps, incoming, await monitor.store.read(), true, own?.holds)
  return runResult(evaluated, role, false)
}

/**
 * Evaluates and records under the store lock: `incoming` is written there once state.json and
 * the other snapshots have been read and the evaluation made, just before the record, so a run
 * that fails on the lock or a corrupt record leaves the state directory as it was.
 */
export async function recordRun(monitor: Monitor, deps: Deps, opts: RecordOptions = {}): Promise<RunResult> {
  const resynced = opts.resync ?? false
  // The sender lock's consistent read and the shared record's are independent: asked together
  // (one round trip, not two), the record's under the store lock, which waits for the lock's
  // answer before it evaluates. Awaited below: a refusal before then is not an unhandled one.
  const acquiring = acquireEarly(monitor)
  let turn: Turn
  try {
    turn = await transact(monitor, deps, opts, acquiring, false)
    // Taken just now: the record read beside it may predate the last holder's last write.
    if ('taken' in turn) turn = await transact(monitor, deps, opts, acquiring, true)
  } catch (err) {
    // The lock's own refusal (an ACL hint, no answer) is what the run fails with, as before.
    const refused = await acquiring.then(
      () => undefined,
      (e: unknown) => ({ e }),
    )
    if (refused) throw refused.e
    // Another controller took the sender lock between our acquire and our write: it decides.
    if (!(err instanceof NotSenderError) || !monitor.coordination) throw err
    const peeked = await monitor.coordination.lock.peek()
    return standby(monitor, deps, opts, peeked.sender ? { sender: false, why: 'the sender lock was lost while recording' } : peeked)
  }
  const role = await acquiring
  if ('notSender' in turn) return standby(monitor, deps, opts, turn.notSender)
  // A second turn reads again whatever the role: it never answers 'taken'.
  if ('taken' in turn) throw new Error('bug: the shared record was not read again after the sender lock was taken')
  const recorded = turn.recorded
  stage('recorded')
  const { evaluation, snapshots } = recorded
  await noteRefusals(monitor.config.stateDir, recorded.confirmations)
  for (const e of evaluation.events) monitor.logger[e.level](e.msg, e.fields)
  logDecisions(monitor.logger, evaluation.decisions, monitor.strategy)
  await noteStatus(monitor, evaluation.next, snapshots, role, deps.now(), { resynced })
  stage('notes written')
  return runResult(recorded, role, resynced)
}

/**
 * What the record leaves to do. A run that may make the first attempt (a watch run, a resync)
 * sends what is due now itself (first-attempt.ts), then notes what is left; otherwise a worker.
 */
export async function handOff(monitor: Monitor, deps: Deps, run: RunResult, opts: { firstAttempt: boolean }): Promise<void> {
  const { config } = monitor
  if (run.role && !run.role.sender) {
    if (run.role.holder === undefined) deps.spawnWorker(config.source, config.stateDir)
    return
  }
  if (!hasPendingWork(run.state)) return
  const budget = config.masakari.delivery.firstAttemptBudget
  if (!opts.firstAttempt || budget <= 0 || dueEntries(run.state, deps.now(), 1).length === 0)
    return deps.spawnWorker(config.source, config.stateDir)
  const attempt = await sendFirstAttempt(monitor, deps, budget)
  if ('left' in attempt) await noteStatus(monitor, attempt.left, run.snapshots, run.role, deps.now(), { resynced: run.resynced })
}

function runResult({ evaluation, snapshots }: Evaluated, role: Role | undefined, resynced: boolean): RunResult {
  return {
    decisions: evaluation.decisions,
    snapshots,
    state: evaluation.next,
    queued: evaluation.queued.map((e) => e.notification),
    timing: evaluation.timing,
    ...(role ? { role } : {}),
    resynced,
  }
}

/** What one turn under the store lock came to: recorded, another controller sends, or the lock was taken just now. */
type Turn = { recorded: Evaluated } | { notSender: Extract<Role, { sender: false }> } | { taken: true }

/** The sender lock asked for at once (with several controllers), its answer awaited where it is needed. */
function acquireEarly(monitor: Monitor): Promise<Role | undefined> {
  const acquiring = monitor.coordination ? monitor.coordination.lock.acquire() : Promise.resolve(undefined)
  acquiring.then(
    (role) => role && stage('sender lock acquired'),
    () => {},
  )
  return acquiring
}

/**
 * Under the store lock, once the sender lock has answered: nothing when another controller
 * sends, or when this run took the lock just now and `reread` is false (the caller reads
 * again); else evaluate, write the incoming snapshots and this controller's own holds, then the
 * record if it changed.
 */
function transact(monitor: Monitor, deps: Deps, opts: RecordOptions, acquiring: Promise<Role | undefined>, reread: boolean): Promise<Turn> {
  return monitor.store.transact(async (state, held): Promise<{ next?: StoreState; result: Turn }> => {
    const role = await acquiring
    if (role && !role.sender) return { result: { notSender: role } }
    if (role?.taken && !reread) return { result: { taken: true } }
    const own = await readOwn(monitor)
    const r = await evaluateView(monitor, deps, opts.incoming ?? [], state, true, own?.holds)
    await writeFresh(monitor, opts, r.fresh, held)
    await writeOwn(monitor, own, r.evaluation, held, deps.now())
    return { next: r.evaluation.dirty ? r.evaluation.next : undefined, result: { recorded: r } }
  })
}

/**
 * With several controllers: the holds this controller's own runs saw (holds.json), which the
 * shared record lacks when its sender died before recording them. One unusable is said, and its
 * holds count from now.
 */
async function readOwn(monitor: Monitor): Promise<OwnHoldsFile | undefined> {
  if (!monitor.coordination) return undefined
  const own = await readOwnHolds(monitor.config.stateDir)
  if (own.invalid) monitor.logger.warn('holds.json cannot be used: its holds count from now', { error: own.invalid })
  return own
}

/**
 * Every evaluation, the sender's too, leaves its holds in holds.json: one left from an older run
 * would count a hold across a flap this controller saw meanwhile. A hold that ran out in this
 * evaluation stays (ownHoldsAfter): on a standby, nothing recorded its decision.
 */
async function writeOwn(
  monitor: Monitor,
  own: OwnHoldsFile | undefined,
  evaluation: Evaluation,
  held: () => Promise<void>,
  now: Date,
): Promise<void> {
  if (!own) return
  const holds = ownHoldsAfter(evaluation.next.ledger, evaluation.decisions, own.holds, now.toISOString())
  await writeOwnHolds(monitor.config.stateDir, holds, own, held)
}

/**
 * The snapshots the evaluation used, and with a watch run's the digest quiet runs compare,
 * naming that snapshot: both under the state lock, so a stale run finishing meanwhile can
 * leave neither a view nor a digest of its own behind.
 */
async function writeFresh(monitor: Monitor, opts: RecordOptions, fresh: Snapshot[], held: () => Promise<void>): Promise<void> {
  const { stateDir } = monitor.config
  for (const s of fresh) {
    await writeSnapshot(stateDir, s, { beforeRename: held })
    if (opts.seen && s === opts.incoming?.[0]) await writeSeen(stateDir, s.network, opts.seen.checks, opts.seen.lockCheck)
  }
}

/**
 * Another controller sends: keep this controller's view current (its snapshot and its own holds,
 * under the local lock) so that it can take over at once, evaluate the shared record for the log
 * and evaluate.js, and record nothing. When nobody holds the lock (its holder just lost it),
 * handOff starts a worker: it waits out the lock-delay, takes over, and decides from this
 * controller's view, which may hold what the lost holder never recorded (it died before its own
 * handler ran), a hold that went by meanwhile included.
 */
async function standby(monitor: Monitor, deps: Deps, opts: RecordOptions, role: Extract<Role, { sender: false }>): Promise<RunResult> {
  const { logger } = monitor
  const resynced = opts.resync ?? false
  const shared = await monitor.store.read()
  const r = await monitor.local.transact(async (_state, held) => {
    const own = await readOwn(monitor)
    const evaluated = await evaluateView(monitor, deps, opts.incoming ?? [], shared, false, own?.holds)
    await writeFresh(monitor, opts, evaluated.fresh, held)
    await writeOwn(monitor, own, evaluated.evaluation, held, deps.now())
    return { result: evaluated }
  })
  logger.info('standby: another controller sends; nothing recorded here', {
    holder: role.holder,
    why: role.why,
    pending: hasPendingWork(shared),
  })
  // Every run ends with this summary line, standby or not (tools and tests wait for it).
  logger.info('evaluated', { hosts: r.evaluation.decisions.length, notifications: 0, strategy: monitor.strategy.source, standby: true })
  await noteStatus(monitor, shared, r.snapshots, role, deps.now(), { resynced })
  return runResult(r, role, resynced)
}

/**
 * One line per decision that acts, or whose host changed state or hold, and one summary line:
 * a quiet run of a 10,000-host cloud must not write 10,000 lines.
 */
function logDecisions(logger: Logger, decisions: HostDecision[], strategy: Strategy): void {
  let acted = 0
  for (const d of decisions) {
    if (d.action === 'none' && !d.changed) continue
    if (d.action !== 'none') acted++
    const fields = {
      host: d.host,
      vector: d.vector,
      row: d.match.row,
      action: d.action === 'none' ? 'no action' : d.action,
      reason: d.reason,
      ...(d.guard ? { guard: d.guard.kind, until: d.guard.until } : {}),
    }
    if (d.action === 'STOPPED') logger.warn('decision', fields)
    else logger.info('decision', fields)
  }
  logger.info('evaluated', { hosts: decisions.length, notifications: acted, strategy: strategy.source })
}
