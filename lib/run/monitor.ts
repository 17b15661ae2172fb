/**
 * The monitor's run, shared by the checks handler and evaluate.js: load config and strategy,
 * evaluate the stored snapshots under the store lock, record decisions, hand the outbox and
 * any held-back decision to the worker.
 */
import { randomUUID } from 'node:crypto'
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'
import type { Check } from '../consul/checks-payload.js'
import { writeSeen } from './quiet-run.js'
import { loadConfig, type Config } from '../config/config.js'
import { askAgents } from '../consul/consul-agents.js'
import { consulTls, coordination, readOnlyCoordination } from './coordination.js'
import { type Confirmation, evaluate, type Evaluation, type HostDecision } from '../decide/evaluator.js'
import type { Network } from '../base/networks.js'
import { sendFirstAttempt } from './first-attempt.js'
import { NotSenderError } from '../consul/kv-store.js'
import { jsonLogger, type Logger, type LogSink, OutputError } from '../base/log.js'
import { writeMetrics } from '../state/metrics.js'
import { dueEntries } from '../decide/outbox.js'
import { readSnapshots, writeSnapshot } from '../state/snapshot.js'
import { type Snapshot, type Snapshots, supersedes } from '../decide/snapshot-shape.js'
import { masakariHostName } from '../consul/host-names.js'
import { masakariNamer } from './host-namer.js'
import { clearFailed, type Health, healthOf, unsettled, writeFailed, writeHealth, writeResync, writeWake } from '../state/status-files.js'
import { localStore, readOnlyStore } from '../state/store.js'
import { emptyState, type Notification, type StoreState } from '../decide/state-shape.js'
import type { Role } from '../consul/sender.js'
import { DEFAULT_STRATEGY, parseStrategy, StrategyError, type Strategy } from '../decide/strategy.js'

/**
 * `readOnly`: for the operator's commands that only read (status, explain, outbox): they log
 * to stderr only and their stores and lock refuse to write (readOnlyCoordination), so that one
 * run as root creates, appends to and chmods nothing (no root-owned decisions.log in Consul's
 * log directory).
 */
export async function loadMonitor(configPath: string, deps: Deps, component: string, opts: { readOnly?: boolean } = {}): Promise<Monitor> {
  const config = await loadConfig(configPath, deps.configEnv)
  const strategy = await loadStrategy(config, deps)
  const problems: string[] = []
  const sinks = [deps.stderr]
  if (config.logFile && !opts.readOnly) sinks.push(logFileSink(config.logFile, deps, component, problems))
  const logger = jsonLogger(sinks, deps.now, { component }, config.log.level)
  for (const warning of config.warnings) logger.warn('config', { warning })
  const local = opts.readOnly ? readOnlyStore(localStore(config.stateDir)) : localStore(config.stateDir)
  const coordinated = await coordination(config, deps)
  const shared = coordinated && opts.readOnly ? readOnlyCoordination(coordinated, local, logger) : coordinated
  return {
    config,
    strategy,
    store: shared?.shared ?? local,
    local,
    ...(shared ? { coordination: shared } : {}),
    logger,
    problems,
    critical: [],
  }
}

/**
 * Appends each line to logFile. When it cannot (no permission as Consul's user, a full disk,
 * a symlink planted there) the run goes on: stderr still has every line, and a decision must
 * not wait on its log. But Consul keeps a handler's stderr only at DEBUG, so the failure is
 * said once on stderr, kept in `problems` for the health note (noteStatus), and the handler
 * and evaluate.js end with exit 74 (Consul logs a failed handler at ERROR).
 */
function logFileSink(logFile: string, deps: Deps, component: string, problems: string[]): LogSink {
  let failed = false
  return (line) => {
    if (failed) return
    try {
      deps.appendLog(logFile, line)
    } catch (err) {
      failed = true
      const error = (err as Error).message
      problems.push(`cannot append to logFile ${logFile} (${error}): the log goes to stderr only, which Consul keeps only at DEBUG`)
      const msg = 'cannot append to logFile; logging to stderr only'
      deps.stderr(JSON.stringify({ time: deps.now().toISOString(), level: 'error', msg, component, logFile, error }))
    }
  }
}

/**
 * Throws once a run's work is done if it could not write its log or metrics file: the decisions
 * are recorded, but an operator would not see them where they look.
 */
export function assertOutputsWritten(monitor: Monitor): void {
  if (monitor.problems.length > 0) throw new OutputError(monitor.problems)
}

async function loadStrategy(config: Config, deps: Deps): Promise<Strategy> {
  if (config.strategy === undefined) return DEFAULT_STRATEGY
  let text: string
  try {
    text = await deps.configEnv.readFile(config.strategy)
  } catch (err) {
    throw new StrategyError(config.strategy, [`cannot read it (set in ${config.source}): ${(err as Error).message}`])
  }
  return parseStrategy(text, config.strategy)
}

export interface RunResult {
  decisions: HostDecision[]
  snapshots: Snapshots
  state: StoreState
  /** Notifications this run queued (or would queue, in a dry run). */
  queued: Notification[]
  /** Per network: the quiet window and the burst in progress. */
  timing: Evaluation['timing']
  /** With several controllers: whether this one is the sender, or who is. */
  role?: Role
}

export interface RecordOptions {
  dryRun: boolean
  /** New snapshots (a watch run's one, a resync's one per network read), each replacing its network's unless older. */
  incoming?: Snapshot[]
  startWorker?: boolean
  firstAttempt?: boolean
  /** A resync: it read every network just now, so it sets the next resync time (see noteStatus). */
  resync?: boolean
  /** A watch run: the payload its snapshot came from, whose digest quiet runs compare (quiet-run.ts). */
  seen?: { checks: readonly Check[]; lockCheck: string }
}

/**
 * Evaluates under the store lock. `incoming` replaces the stored snapshot of its network (a
 * dry run shows what a new snapshot would do without writing it). When the evaluation would
 * decide a recovery and the monitor's own agents are configured, it asks them first and
 * decides again on their answer.
 *
 * Not a dry run: `incoming` is written under the lock, once state.json and the other
 * snapshots have been read and the evaluation made, just before state.json: a run that fails
 * on the lock or a corrupt state file leaves the state directory as it was.
 */
export async function evaluateAndRecord(monitor: Monitor, deps: Deps, opts: RecordOptions): Promise<RunResult> {
  const role = await roleOf(monitor, opts.dryRun)
  const run = (state: StoreState, confirm = true) => evaluateState(monitor, deps, opts.incoming ?? [], state, confirm)
  const result = ({ evaluation, snapshots }: Evaluated): RunResult => ({
    decisions: evaluation.decisions,
    snapshots,
    state: evaluation.next,
    queued: evaluation.queued.map((e) => e.notification),
    timing: evaluation.timing,
    ...(role ? { role } : {}),
  })
  if (opts.dryRun) return result(await run(await monitor.store.read()))
  if (role && !role.sender) return result(await standby(monitor, deps, opts, role, (state) => run(state, false)))
  let recorded: Evaluated
  try {
    recorded = await record(monitor, opts, run)
  } catch (err) {
    // Another controller took the sender lock between our acquire and our write: it decides.
    if (!(err instanceof NotSenderError) || !monitor.coordination) throw err
    const peeked = await monitor.coordination.lock.peek()
    const lost = peeked.sender ? { sender: false as const, why: 'the sender lock was lost while recording' } : peeked
    return result(await standby(monitor, deps, opts, lost, (state) => run(state, false)))
  }
  const { evaluation, snapshots } = recorded
  await noteRefusals(monitor.config.stateDir, recorded.confirmations)
  for (const e of evaluation.events) monitor.logger[e.level](e.msg, e.fields)
  logDecisions(monitor.logger, evaluation.decisions, monitor.strategy)
  const resync = { resynced: opts.resync ?? false }
  await noteStatus(monitor, evaluation.next, snapshots, role, deps.now(), resync)
  const left = await handOff(monitor, deps, evaluation.next, opts)
  // The first attempt delivered (some of) it: the wake and health notes say what is left.
  if (left) await noteStatus(monitor, left, snapshots, role, deps.now(), resync)
  return result(recorded)
}

/**
 * What the record leaves to do. A run that may make the first attempt (the handler) sends what
 * is due now itself (lib/run/first-attempt.ts); otherwise, or for what is left, a worker.
 */
async function handOff(
  monitor: Monitor,
  deps: Deps,
  next: StoreState,
  opts: { startWorker?: boolean; firstAttempt?: boolean },
): Promise<StoreState | undefined> {
  if (!(opts.startWorker ?? true) || (next.outbox.length === 0 && next.wakeAt === undefined)) return undefined
  const budget = monitor.config.masakari.delivery.firstAttemptBudget
  if (opts.firstAttempt && budget > 0 && dueEntries(next, deps.now(), 1).length > 0) {
    const attempt = await sendFirstAttempt(monitor, deps, budget)
    return 'left' in attempt ? attempt.left : undefined
  }
  deps.spawnWorker(monitor.config.source, monitor.config.stateDir)
  return undefined
}

interface Evaluated {
  evaluation: Evaluation
  snapshots: Snapshots
  /** The incoming snapshots the evaluation used: those not older than the stored ones. */
  fresh: Snapshot[]
  /** The own agents' answers, when they were asked. */
  confirmations?: Partial<Record<Network, Confirmation>>
}

/** Under the store lock: evaluate, write the incoming snapshots, then the record if it changed. */
function record(monitor: Monitor, opts: RecordOptions, run: (state: StoreState) => Promise<Evaluated>): Promise<Evaluated> {
  return monitor.store.transact(async (state, held) => {
    const r = await run(state)
    await writeFresh(monitor, opts, r.fresh, held)
    return { next: r.evaluation.dirty ? r.evaluation.next : undefined, result: r }
  })
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
 * One evaluation of the stored snapshots (with `incoming` in place of its network's) against
 * `state`. When it would decide a recovery and the own agents are configured (and `confirm`),
 * the agents are asked and it decides again on their answer.
 */
async function evaluateState(monitor: Monitor, deps: Deps, incoming: Snapshot[], state: StoreState, confirm: boolean): Promise<Evaluated> {
  const { config, strategy, logger } = monitor
  const snapshots = await readSnapshots(config.stateDir)
  const fresh = incoming.filter((s) => supersedes(s, snapshots[s.network]))
  for (const s of incoming.filter((s) => !fresh.includes(s))) {
    const stored = snapshots[s.network]!
    logger.info('a newer view of this network is already stored; this older one is not used', {
      network: s.network,
      consulIndex: s.consulIndex,
      storedIndex: stored.consulIndex,
      storedAt: stored.receivedAt,
    })
  }
  for (const s of fresh) snapshots[s.network] = s
  const gossip = config.consul.gossip
  const input = {
    snapshots,
    strategy,
    state,
    ownHost: config.hostname,
    firstSight: config.firstSight,
    now: deps.now(),
    newId: randomUUID,
    guards: config.guards,
    gossip: { management: gossip, tenant: gossip, storage: gossip },
    masakariName: (node: string) => masakariHostName(node, config.hostNames),
  }
  let evaluation = evaluate(input)
  // Node meta is asked for only when a notification is about to be built (the watch's payload has none).
  if (evaluation.queued.length > 0 && config.hostNames.metaKey !== undefined) {
    input.masakariName = await masakariNamer(config, deps, logger)
    evaluation = evaluate(input)
  }
  const recovering = evaluation.queued.some((e) => e.notification.payload.event === 'STOPPED')
  if (!confirm || !recovering || Object.keys(config.consul.agents).length === 0) return { evaluation, snapshots, fresh }
  const access = config.consulAccess
  const tls = await consulTls(access, deps)
  const confirmations = await askAgents(strategy.sequence, config.hostname, config.consul, await deps.fetch(), access, tls)
  for (const [network, c] of Object.entries(confirmations)) {
    if (c.ok) continue
    if (!c.refused) {
      logger.warn('own agent did not confirm; its network counts as unknown for recoveries', { network, reason: c.reason })
      continue
    }
    // Not a passing check with a warn line: every later recovery on this network would be lost as quietly.
    logger.error('own agent answered without seeing nodes; its network counts as unknown for recoveries', { network, reason: c.reason })
    const said = `${network} agent: ${c.reason}`
    if (!monitor.critical.includes(said)) monitor.critical.push(said)
  }
  return { evaluation: evaluate({ ...input, confirmations }), snapshots, fresh, confirmations }
}

/**
 * An own agent that answered without seeing nodes keeps the check critical until it confirms
 * again: the runs between (a hold, a watch run) ask no agent and would write a passing note.
 */
async function noteRefusals(stateDir: string, confirmations: Evaluated['confirmations']): Promise<void> {
  for (const [network, c] of Object.entries(confirmations ?? {}) as Array<[Network, Confirmation]>) {
    if (c.ok) await clearFailed(stateDir, `confirm-${network}`)
    else if (c.refused) await writeFailed(stateDir, `confirm-${network}`, { status: 'critical', reason: `${network} agent: ${c.reason}` })
  }
}

/**
 * The wake and health files the pulse check reads (status-files.ts). A standby wakes a worker
 * only when nobody holds the sender lock: then, after the lock-delay, it takes over.
 */
export async function noteStatus(
  monitor: Monitor,
  state: StoreState,
  snapshots: Snapshots,
  role: Role | undefined,
  now: Date,
  opts: { resynced: boolean } = { resynced: false },
): Promise<void> {
  const { stateDir, resync } = monitor.config
  const health = healthOf(state, snapshots, monitor.strategy.sequence, role, now)
  await writeMetricsFile(monitor, { state, snapshots, health: withProblems(health, monitor.problems, monitor.critical), now })
  await writeHealth(stateDir, withProblems(health, monitor.problems, monitor.critical))
  const why = unsettled(state, snapshots, monitor.strategy.sequence)
  await writeResync(stateDir, why === undefined ? undefined : new Date(now.getTime() + resync * 1000), { postpone: opts.resynced })
  if (role === undefined || role.sender) return writeWake(stateDir, state)
  const takeOverAt = new Date(now.getTime() + (monitor.coordination?.config.lockDelay ?? 0) * 1000)
  await writeWake(stateDir, emptyState(), role.holder === undefined ? takeOverAt : undefined)
}

/**
 * The health note with the run's problems: a passing monitor that cannot write its log is at
 * warning; one refused a view of the nodes (`critical`) is critical, whatever else it says.
 */
export function withProblems(health: Health, problems: string[], critical: string[] = []): Health {
  const base: Health = critical.length === 0 ? health : { status: 'critical', reason: critical.join('; ') }
  const also = [...(critical.length > 0 && health.status !== 'passing' ? [health.reason] : []), ...problems]
  if (also.length === 0) return base
  return base.status === 'passing'
    ? { status: 'warning', reason: also.join('; ') }
    : { status: base.status, reason: `${base.reason}; also: ${also.join('; ')}` }
}

/**
 * The metrics textfile, when configured: a failure to write it (the collector's directory not
 * writable by Consul's user) is a problem of the run like an unwritable logFile, never a reason
 * to lose the decision.
 */
async function writeMetricsFile(monitor: Monitor, input: Parameters<typeof writeMetrics>[1]): Promise<void> {
  const path = monitor.config.metrics.textfile
  if (path === undefined) return
  try {
    await writeMetrics(path, input)
  } catch (err) {
    const error = (err as Error).message
    monitor.logger.error('cannot write the metrics textfile', { textfile: path, error })
    monitor.problems.push(`cannot write metrics.textfile ${path} (${error})`)
  }
}

/** With several controllers: take the sender lock if we can (a dry run only looks who holds it). */
async function roleOf(monitor: Monitor, dryRun: boolean): Promise<Role | undefined> {
  const lock = monitor.coordination?.lock
  if (!lock) return undefined
  return dryRun ? lock.peek() : lock.acquire()
}

/**
 * Another controller sends: keep this controller's view current (its snapshot, under the local
 * lock) so that it can take over at once, evaluate the shared record for the log and
 * evaluate.js, and record nothing. When nobody holds the lock (its holder just lost it), start
 * a worker: it waits out the lock-delay, takes over, and decides from this controller's view,
 * which may hold what the lost holder never recorded (it died before its own handler ran).
 */
async function standby(
  monitor: Monitor,
  deps: Deps,
  opts: RecordOptions,
  role: Extract<Role, { sender: false }>,
  run: (state: StoreState) => Promise<Evaluated>,
): Promise<Evaluated> {
  const { config, logger } = monitor
  const shared = await monitor.store.read()
  const r = await monitor.local.transact(async (_state, held) => {
    const evaluated = await run(shared)
    await writeFresh(monitor, opts, evaluated.fresh, held)
    return { result: evaluated }
  })
  const pending = shared.outbox.length > 0 || shared.wakeAt !== undefined
  logger.info('standby: another controller sends; nothing recorded here', { holder: role.holder, why: role.why, pending })
  // Every run ends with this summary line, standby or not (tools and tests wait for it).
  logger.info('evaluated', { hosts: r.evaluation.decisions.length, notifications: 0, strategy: monitor.strategy.source, standby: true })
  await noteStatus(monitor, shared, r.snapshots, role, deps.now(), { resynced: opts.resync ?? false })
  if ((opts.startWorker ?? true) && role.holder === undefined) deps.spawnWorker(config.source, config.stateDir)
  return r
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
