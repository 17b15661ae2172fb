/**
 * The monitor's run, shared by the checks handler and evaluate.js: load config and strategy,
 * evaluate the stored snapshots under the store lock, record decisions, hand the outbox and
 * any held-back decision to the worker.
 */
import { randomUUID } from 'node:crypto'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { EXIT } from './cli.js'
import { loadConfig, type Config, type ConfigEnv } from './config.js'
import { askAgents } from './consul-agents.js'
import { deliveryPass } from './delivery.js'
import { evaluate, type Evaluation, type HostDecision } from './evaluator.js'
import { nextDue } from './outbox.js'
import { tryLock } from './lock.js'
import { jsonLogger, type Logger } from './log.js'
import { masakariClient, type Fetch, type MasakariClient } from './masakari.js'
import { readSnapshots, writeSnapshot, type Snapshot, type Snapshots } from './snapshot.js'
import { localStore, type Notification, type Store, type StoreState } from './store.js'
import { DEFAULT_STRATEGY, parseStrategy, StrategyError, type Strategy } from './strategy.js'
import { fileTokenCache } from './token-cache.js'

/** Every side effect the monitor has, passed in: real ones in production, recording ones in tests. */
export interface Deps {
  /** All of stdin as bytes, up to a little past `maxBytes` (the edge decodes and checks it). */
  readStdin: (maxBytes: number) => Promise<Uint8Array>
  now: () => Date
  fetch: () => Promise<Fetch>
  /** Builds the https.Agent for a CA bundle / insecure switch (used for https: URLs only). */
  tlsAgent: (caPem: string | undefined, insecure: boolean) => Promise<unknown>
  /** Starts the worker (`--deliver`) in a detached process that outlives the handler. */
  spawnWorker: (configPath: string, stateDir: string) => void
  sleep: (ms: number) => Promise<void>
  stdout: (text: string) => void
  stderr: (line: string) => void
  appendLog: (file: string, line: string) => void
  configEnv: ConfigEnv
}

export interface Monitor {
  config: Config
  strategy: Strategy
  store: Store
  logger: Logger
}

export async function loadMonitor(configPath: string, deps: Deps, component: string): Promise<Monitor> {
  const config = await loadConfig(configPath, deps.configEnv)
  const strategy = await loadStrategy(config, deps)
  const sinks = [deps.stderr]
  const logFile = config.logFile
  if (logFile) {
    let warned = false
    sinks.push((line) => {
      try {
        deps.appendLog(logFile, line)
      } catch (err) {
        // stderr still has it; a full disk (or a symlink planted there) must not stop a
        // decision. Said once per run, on stderr.
        if (!warned)
          deps.stderr(
            JSON.stringify({
              time: deps.now().toISOString(),
              level: 'warn',
              msg: 'cannot append to logFile; logging to stderr only',
              component,
              logFile,
              error: (err as Error).message,
            }),
          )
        warned = true
      }
    })
  }
  const logger = jsonLogger(sinks, deps.now, { component })
  return { config, strategy, store: localStore(config.stateDir), logger }
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
export async function evaluateAndRecord(
  monitor: Monitor,
  deps: Deps,
  opts: { dryRun: boolean; incoming?: Snapshot; startWorker?: boolean },
): Promise<RunResult> {
  const { config, strategy, store, logger } = monitor
  const run = async (state: StoreState) => {
    const snapshots = await readSnapshots(config.stateDir)
    if (opts.incoming) snapshots[opts.incoming.network] = opts.incoming
    const input = {
      snapshots,
      strategy,
      state,
      ownHost: config.hostname,
      firstSight: config.firstSight,
      now: deps.now(),
      newId: randomUUID,
      guards: config.guards,
    }
    let evaluation = evaluate(input)
    const recovering = evaluation.queued.some((e) => e.notification.payload.event === 'STOPPED')
    if (recovering && Object.keys(config.consul.agents).length > 0) {
      const confirmations = await askAgents(strategy.sequence, config.consul, await deps.fetch())
      evaluation = evaluate({ ...input, confirmations })
      for (const [network, c] of Object.entries(confirmations)) {
        if (!c.ok) logger.warn('own agent did not confirm; its network counts as unknown for recoveries', { network, reason: c.reason })
      }
    }
    return { evaluation, snapshots }
  }
  const result = (evaluation: Evaluation, snapshots: Snapshots): RunResult => ({
    decisions: evaluation.decisions,
    snapshots,
    state: evaluation.next,
    queued: evaluation.queued.map((e) => e.notification),
  })
  if (opts.dryRun) {
    const { evaluation, snapshots } = await run(await store.read())
    return result(evaluation, snapshots)
  }
  const { evaluation, snapshots } = await store.transact(async (state, held) => {
    const r = await run(state)
    if (opts.incoming) await writeSnapshot(config.stateDir, opts.incoming, { beforeRename: held })
    return { next: r.evaluation.dirty ? r.evaluation.next : undefined, result: r }
  })
  for (const e of evaluation.events) logger[e.level](e.msg, e.fields)
  logDecisions(logger, evaluation.decisions, strategy)
  const next = evaluation.next
  if ((opts.startWorker ?? true) && (next.outbox.length > 0 || next.wakeAt !== undefined)) deps.spawnWorker(config.source, config.stateDir)
  return result(evaluation, snapshots)
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

/**
 * The detached follow-up process, one at a time: delivers the outbox, and re-evaluates when a
 * held-back decision (hold time, rate limit) comes due, since Consul only runs the handler on
 * changes. Exits when nothing is left to deliver or wait for.
 */
export async function runWorker(monitor: Monitor, deps: Deps): Promise<number> {
  const { config, store, logger } = monitor
  const lockPath = join(config.stateDir, 'deliverer.lock')
  // We were frozen past the lock's staleness and another worker took over. proper-lockfile
  // calls this from a timer: a throw would be an uncaught exception (a minified stack in
  // worker.stderr). Note it; the loop stops before its next round, with one line.
  let lost: Error | undefined
  const onCompromised = (err: Error) => {
    lost ??= err
  }
  const stopIfLost = () => {
    if (!lost) return false
    logger.error('worker lock taken over by another process (this one was stalled past its stale time); stopping', {
      lock: lockPath,
      error: lost.message,
    })
    return true
  }
  let client: MasakariClient | undefined
  const fetch = await deps.fetch()
  const agent = await deps.tlsAgent(config.caPem, config.masakari.insecure)
  const clientDeps = { fetch, now: deps.now, logger, agent, tokenCache: fileTokenCache(join(config.stateDir, 'token.json')) }
  const delivery = {
    store,
    client: () => (client ??= masakariClient(config, clientDeps)),
    policy: config.masakari.delivery,
    now: deps.now,
    sleep: deps.sleep,
    logger,
  }
  const pendingWork = (s: StoreState) => s.outbox.length > 0 || s.wakeAt !== undefined
  const statePath = join(config.stateDir, 'state.json')
  for (;;) {
    const release = await tryLock(lockPath, onCompromised)
    if (!release) {
      logger.debug('another worker is running; leaving the outbox to it')
      return 0
    }
    try {
      for (;;) {
        if (stopIfLost()) return EXIT.lock
        let state = await store.read()
        let sent = 0
        if (state.outbox.length > 0) {
          sent = (await deliveryPass(delivery)).sent
          state = await store.read()
        }
        if (state.wakeAt !== undefined && Date.parse(state.wakeAt) <= deps.now().getTime()) {
          await evaluateAndRecord(monitor, deps, { dryRun: false, startWorker: false })
          state = await store.read()
        }
        if (stopIfLost()) return EXIT.lock
        if (!pendingWork(state)) break
        if (sent > 0) continue
        const times = [nextDue(state), state.wakeAt === undefined ? undefined : new Date(state.wakeAt)]
          .filter((d): d is Date => d !== undefined)
          .map((d) => d.getTime())
        await sleepUnlessChanged(statePath, Math.max(20, Math.min(...times) - deps.now().getTime()), deps)
      }
    } finally {
      // a lock taken over is already released: its release() rejects, and must not replace our exit code
      await release().catch(() => {})
    }
    // A handler may have queued work after our last look and found the lock still held:
    // look once more now that it is free, so that work is not left without a worker.
    if (!pendingWork(await store.read())) return 0
  }
}

/**
 * Sleeps up to `ms`, waking early when the state document changes: a handler that queued work
 * while we wait for a backoff or a hold could not start a worker of its own (we hold the lock).
 */
async function sleepUnlessChanged(path: string, ms: number, deps: Deps): Promise<void> {
  const mtime = async () => (await stat(path).catch(() => undefined))?.mtimeMs
  const before = await mtime()
  const end = deps.now().getTime() + ms
  for (;;) {
    const left = end - deps.now().getTime()
    if (left <= 0) return
    await deps.sleep(Math.min(left, 100))
    if ((await mtime()) !== before) return
  }
}
