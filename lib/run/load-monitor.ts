/**
 * The first step of every run: load and check the config and strategy, open the log, the
 * record (state.json, or the shared record in Consul KV with the sender lock) and carry them
 * as a Monitor through the run's steps.
 */
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'
import { loadConfig, type Config } from '../config/config.js'
import { coordination, readOnlyCoordination } from './coordination.js'
import { jsonLogger, type LogSink, OutputError } from '../base/log.js'
import { localStore, readOnlyStore } from '../state/store.js'
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
    ...(opts.readOnly ? { readOnly: true } : {}),
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
