/**
 * The monitor's run, shared by the checks handler and evaluate.js: load config and strategy,
 * evaluate the stored snapshots under the store lock, record decisions, hand the outbox to
 * the delivery process.
 */
import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadConfig, type Config, type ConfigEnv } from './config.js'
import { deliverAll } from './delivery.js'
import { evaluate, type HostDecision } from './evaluator.js'
import { tryLock } from './lock.js'
import { jsonLogger, type Logger } from './log.js'
import { masakariClient, type Fetch, type MasakariClient } from './masakari.js'
import { readSnapshots, type Snapshot, type Snapshots } from './snapshot.js'
import { localStore, type Notification, type Store, type StoreState } from './store.js'
import { DEFAULT_STRATEGY, parseStrategy, StrategyError, type Strategy } from './strategy.js'
import { fileTokenCache } from './token-cache.js'

/** Every side effect the monitor has, passed in: real ones in production, recording ones in tests. */
export interface Deps {
  readStdin: () => Promise<string>
  now: () => Date
  fetch: () => Promise<Fetch>
  /** Builds the https.Agent for a CA bundle / insecure switch. */
  tlsAgent: (caPem: string | undefined, insecure: boolean) => Promise<unknown>
  /** Starts `--deliver` in a detached process that outlives the handler. */
  spawnDeliverer: (configPath: string) => void
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
    sinks.push((line) => {
      try {
        deps.appendLog(logFile, line)
      } catch {
        // stderr still has it; a full disk must not stop a decision.
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
 * dry run shows what a new snapshot would do without writing it).
 */
export async function evaluateAndRecord(monitor: Monitor, deps: Deps, opts: { dryRun: boolean; incoming?: Snapshot }): Promise<RunResult> {
  const { config, strategy, store, logger } = monitor
  const run = async (state: StoreState) => {
    const snapshots = await readSnapshots(config.stateDir)
    if (opts.incoming) snapshots[opts.incoming.network] = opts.incoming
    const evaluation = evaluate({
      snapshots,
      strategy,
      state,
      ownHost: config.hostname,
      firstSight: config.firstSight,
      now: deps.now(),
      newId: randomUUID,
    })
    return { evaluation, snapshots }
  }
  if (opts.dryRun) {
    const { evaluation, snapshots } = await run(await store.read())
    return { decisions: evaluation.decisions, snapshots, state: evaluation.next, queued: evaluation.queued.map((e) => e.notification) }
  }
  const { evaluation, snapshots } = await store.transact(async (state) => {
    const result = await run(state)
    return { next: result.evaluation.dirty ? result.evaluation.next : undefined, result }
  })
  logDecisions(logger, evaluation.decisions, strategy)
  if (evaluation.next.outbox.length > 0) deps.spawnDeliverer(config.source)
  return { decisions: evaluation.decisions, snapshots, state: evaluation.next, queued: evaluation.queued.map((e) => e.notification) }
}

/**
 * One line per decision that acts or whose host changed state, and one summary line: a quiet
 * run of a 10,000-host cloud must not write 10,000 lines.
 */
function logDecisions(logger: Logger, decisions: HostDecision[], strategy: Strategy): void {
  let acted = 0
  for (const d of decisions) {
    if (d.action === 'none' && !d.changed) continue
    if (d.action !== 'none') acted++
    const fields = { host: d.host, vector: d.vector, row: d.match.row, action: d.action === 'none' ? 'no action' : d.action, reason: d.reason }
    if (d.action === 'STOPPED') logger.warn('decision', fields)
    else logger.info('decision', fields)
  }
  logger.info('evaluated', { hosts: decisions.length, notifications: acted, strategy: strategy.source })
}

/** The detached delivery process: one at a time; exits when the outbox is empty. */
export async function runDeliverer(monitor: Monitor, deps: Deps): Promise<number> {
  const { config, store, logger } = monitor
  const lockPath = join(config.stateDir, 'deliverer.lock')
  const onCompromised = (err: Error) => {
    // We were frozen past the lock's staleness and another deliverer took over: stop at once
    // (the uncaught error ends this process) rather than deliver beside it.
    logger.error('delivery lock taken over by another process; stopping', { error: err.message })
    throw err
  }
  let client: MasakariClient | undefined
  const fetch = await deps.fetch()
  const agent = await deps.tlsAgent(
    config.masakari.caFile === undefined ? undefined : await readFile(config.masakari.caFile, 'utf8'),
    config.masakari.insecure,
  )
  const clientDeps = { fetch, now: deps.now, logger, agent, tokenCache: fileTokenCache(join(config.stateDir, 'token.json')) }
  for (;;) {
    const release = await tryLock(lockPath, onCompromised)
    if (!release) {
      logger.debug('another delivery process is running; leaving the outbox to it')
      return 0
    }
    try {
      await deliverAll({
        store,
        client: () => (client ??= masakariClient(config, clientDeps)),
        policy: config.masakari.delivery,
        now: deps.now,
        sleep: deps.sleep,
        logger,
      })
    } finally {
      await release()
    }
    // A handler may have queued an entry after our last look and found the lock still held:
    // look once more now that it is free, so that entry is not left without a deliverer.
    if ((await store.read()).outbox.length === 0) return 0
  }
}
