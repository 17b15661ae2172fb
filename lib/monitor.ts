/**
 * The monitor's run, shared by the checks handler and evaluate.js: load config and strategy,
 * evaluate the stored snapshots under the store lock, record decisions, hand the outbox and
 * any held-back decision to the worker.
 */
import { randomUUID } from 'node:crypto'
import { loadConfig, type Config, type ConfigEnv } from './config.js'
import { askAgents } from './consul-agents.js'
import { evaluate, type Evaluation, type HostDecision } from './evaluator.js'
import { jsonLogger, type Logger } from './log.js'
import type { Fetch } from './http.js'
import { readSnapshots, type Snapshot, type Snapshots, writeSnapshot } from './snapshot.js'
import { localStore, type Notification, type Store, type StoreState } from './store.js'
import { DEFAULT_STRATEGY, parseStrategy, StrategyError, type Strategy } from './strategy.js'

/** Every side effect the monitor has, passed in: real ones in production, recording ones in tests. */
export interface Deps {
  readStdin: () => Promise<string>
  now: () => Date
  fetch: () => Promise<Fetch>
  /** Builds the https.Agent for a CA bundle / insecure switch (used for https: URLs only). */
  tlsAgent: (caPem: string | undefined, insecure: boolean) => Promise<unknown>
  /** Starts the worker (lib/worker.ts, `--worker`) in a detached process that outlives the handler. */
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
  /** Per network: the quiet window and the burst in progress. */
  timing: Evaluation['timing']
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
      gossip: { management: config.consul.gossip, tenant: config.consul.gossip, storage: config.consul.gossip },
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
    timing: evaluation.timing,
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
