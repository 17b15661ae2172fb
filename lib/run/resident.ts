/**
 * `checks-handler.js --resident`: the head start (issue #22). A watch run starts node, compiles
 * the full handler and reads the config before its first request to Consul: 0.15–0.26 s of these
 * cores before anything is decided. The resident is the same handler kept running: it asks each
 * own agent what that network's watch asks (a blocking query on /v1/health/state/any) and runs
 * on each answer exactly what a watch run runs on its payload (runWatch, the config read anew).
 *
 * It is only ever a head start; the watches stay. watch.sh gives a live resident (a heartbeat
 * note under 30 s old) up to 3 s to have handled the change its run is for (the resident's index
 * note reaching CONSUL_INDEX), then runs the handler as always: it finds the change recorded
 * (a quiet run) instead of competing with the resident for the cores. A resident dead, hung,
 * failing or slow only brings the full path back. Exactly once stays with what orders any two
 * runs: the store lock, the sender lock and the record's check-and-set.
 *
 * The pulse (pulse.sh) starts it when its heartbeat is missing or old. It ends, and the next
 * pulse starts another, when a file it read changes (config, strategy, upstream config, the
 * bundle), when the state directory or its heartbeat note is gone or another resident's, when
 * it is asked to (SIGTERM), when none of its agents has answered for AGENTS_GONE_MS, and when the
 * pulse check is gone from its node (uninstalled). Under systemd it is in the management agent's
 * control group: stopping that agent stops it.
 */
import { readFile, rm } from 'node:fs/promises'
import { uptime } from 'node:os'
import { join, resolve } from 'node:path'
import { type ConsulAgent, consulAgent } from '../consul/consul-api.js'
import { parseChecks } from '../consul/consul-input.js'
import { NETWORKS, type Network } from '../base/networks.js'
import { uninstallStages } from '../base/stages.js'
import { writeFileAtomic } from '../state/atomic-file.js'
import { tryLock } from '../state/lock.js'
import { clearFailed, writeFailed } from '../state/status-files.js'
import { consulTls } from './coordination.js'
import type { Deps } from './deps.js'
import { loadMonitor } from './load-monitor.js'
import type { Monitor } from './monitor-context.js'
import { fileId, isQuietRun } from './quiet-run.js'
import { runWatch } from './watch-run.js'

/** How often the heartbeat note is written; watch.sh and pulse.sh take a note 30 s old as no resident. */
const HEARTBEAT_MS = 10_000
/** A blocking query's longest wait (Consul's cap is 10 min): an idle cluster answers this often. */
const WAIT_S = 300
/** After an own agent failed to answer: ask again after this, doubling up to RETRY_MAX_MS. */
const RETRY_MS = 500
const RETRY_MAX_MS = 5_000
/** A run that failed is tried again after this, on a fresh view. */
const RERUN_MS = 15_000
/** No own agent answered for this long: the agents are gone (stopped, or a test's stack torn down). */
const AGENTS_GONE_MS = 60_000
/** Taken over only when not refreshed for this long; refreshed at half of it (proper-lockfile). */
const LOCK_STALE_MS = 30_000

/** The heartbeat note: the resident's pid, then the system's uptime in whole seconds when written. */
export function heartbeatPath(stateDir: string): string {
  return join(stateDir, 'resident')
}

/** The last Consul index of `network` the resident has handled (watch.sh waits for its run's). */
export function indexNotePath(stateDir: string, network: string): string {
  return join(stateDir, `resident-${network}`)
}

export async function runResident(configPath: string, bundle: string, deps: Deps, stop: AbortSignal): Promise<number> {
  // The bench's stage timestamps are one line per process, at its exit: not kept for days of runs.
  uninstallStages()
  const monitor = await loadMonitor(configPath, deps, 'resident')
  const { config, logger } = monitor
  const ending = new AbortController()
  let why = ''
  let failed = false
  const end: Follow['end'] = (reason, opts = {}) => {
    if (ending.signal.aborted) return
    why = reason
    failed = opts.failed ?? false
    ending.abort()
  }
  stop.addEventListener('abort', () => end('asked to stop'), { once: true })
  const release = await tryLock(join(config.stateDir, 'resident.lock'), () => end('another resident took its lock over'), {
    staleMs: LOCK_STALE_MS,
  })
  if (!release) {
    logger.debug('a resident is already running')
    return 0
  }
  const files = readFiles(configPath, monitor, bundle)
  const networks = NETWORKS.filter((n) => config.consul.agents[n] !== undefined)
  const running = new Set<Promise<unknown>>()
  const follow: Follow = {
    monitor,
    deps,
    configPath,
    files,
    signal: ending.signal,
    end,
    running,
    failing: new Set(),
    lastAnswer: deps.now().getTime(),
  }
  try {
    await clearFailed(config.stateDir, 'resident')
    logger.info('resident: started', { pid: process.pid, networks })
    for (const network of networks)
      followNetwork(network, follow).catch((err: Error) => end(`following ${network}: ${err.stack ?? err.message}`, { failed: true }))
    await heartbeats(config.stateDir, files, ending.signal, end, deps)
    // A run under way finishes: ending half-way would leave its edge to the watch run's head start.
    await Promise.allSettled([...running])
  } finally {
    await removeIfOurs(config.stateDir)
    for (const n of networks) await rm(indexNotePath(config.stateDir, n), { force: true }).catch(() => {})
    await release().catch(() => {})
  }
  if (!failed) {
    logger.info('resident: ended', { why })
    return 0
  }
  // The watches decide without it; the pulse starts another, not at once (pulse.sh).
  logger.warn('resident: failed', { why })
  const reason = `the resident failed at ${deps.now().toISOString()}: ${why.split('\n', 1)[0]}; decisions wait for node to start until the pulse starts another (in 5 minutes)`
  await writeFailed(config.stateDir, 'resident', { status: 'warning', reason }, { uptimeS: uptime() }).catch(() => {})
  return 70
}

interface Follow {
  monitor: Monitor
  deps: Deps
  configPath: string
  files: Map<string, string | undefined>
  signal: AbortSignal
  /** Ends the resident (the first reason wins); `failed`: a fault of its own, written down for the pulse. */
  end: (why: string, opts?: { failed?: boolean }) => void
  running: Set<Promise<unknown>>
  /** Networks whose last run here failed (handle): failed-resident stays while any does. */
  failing: Set<Network>
  /** When an own agent last answered (ms): shared by the networks, as the agents live and die together. */
  lastAnswer: number
  /** The pulse check was seen on this controller's node (pulseGone). */
  pulseSeen?: boolean
}

/** One network: a blocking query on the own agent, and a watch run's work on every new answer. */
async function followNetwork(network: Network, f: Follow): Promise<void> {
  const { config } = f.monitor
  const fetch = await f.deps.fetch()
  const tls = await consulTls(config.consulAccess, f.deps)
  const agent = consulAgent(config.consul.agents[network]!, config.consulAccess, fetch, tls, WAIT_S + 30)
  let index = ''
  let retry = RETRY_MS
  while (!f.signal.aborted) {
    const answer = await ask(agent, index).catch((err: Error) => err)
    if (f.signal.aborted) return
    if (answer instanceof Error) {
      if (f.deps.now().getTime() - f.lastAnswer > AGENTS_GONE_MS)
        f.end(`no own agent answered for ${AGENTS_GONE_MS / 1000} s (${network}: ${answer.message})`)
      await pause(retry, f.signal, f.deps)
      retry = Math.min(retry * 2, RETRY_MAX_MS)
      continue
    }
    f.lastAnswer = f.deps.now().getTime()
    retry = RETRY_MS
    // The wait ran out with nothing new; without an index Consul cannot block: ask again later.
    if (answer.index === index) continue
    if (answer.index === undefined) await pause(RETRY_MAX_MS, f.signal, f.deps)
    index = answer.index ?? ''
    const changed = changedFile(f.files)
    if (changed) return f.end(`${changed} changed`)
    const gone = network === config.consul.lock.network ? pulseGone(answer.text, f) : undefined
    if (gone) return f.end(gone)
    const ran = await handle(network, answer.text, index, f)
    await writeFileAtomic(indexNotePath(config.stateDir, network), `${index}\n`, 0o640, { durable: false }).catch(() => {})
    // A failed run is tried again on a fresh view (no index: Consul answers at once) after a
    // while, until it runs: its failure note stays until then, whatever the watch runs do.
    if (ran) continue
    await pause(RERUN_MS, f.signal, f.deps)
    index = ''
  }
}

function ask(agent: ConsulAgent, index: string) {
  return agent.ok('GET', `/v1/health/state/any${index ? `?index=${encodeURIComponent(index)}&wait=${WAIT_S}s` : ''}`)
}

/**
 * The pulse check (consul.lock.check) seen on this controller's node, then gone from it: the
 * monitor was uninstalled (its watches and pulse removed, the agent reloaded), and nothing must
 * act for it any more. Not before it was seen once: an agent may sync a check just registered
 * after the pulse's first run has started this resident. An answer that does not parse is the
 * watch run's to refuse (handle), not a reason to end.
 */
function pulseGone(text: string, f: Follow): string | undefined {
  const { hostname, consul } = f.monitor.config
  let present: boolean
  try {
    present = parseChecks(text).some((c) => c.Node === hostname && c.CheckID === consul.lock.check)
  } catch {
    return undefined
  }
  if (present) f.pulseSeen = true
  return !present && f.pulseSeen ? `the pulse check ${consul.lock.check} is no longer registered on ${hostname} (uninstalled)` : undefined
}

/**
 * What a watch run would do with this payload, from the quiet check on; false when it failed.
 * The watch run that follows does it again, and may well succeed (its own token, its own
 * payload), rewriting the health note: so a failure of the resident's run is written down as
 * `failed-resident` (warning: the watches still decide), naming the network and the error, and
 * stays until that network's run succeeds again (a token that cannot read nodes, found by the
 * resident at its start, would otherwise show only when a host fails).
 */
async function handle(network: Network, text: string, index: string, f: Follow): Promise<boolean> {
  const stdin = Buffer.from(text)
  const receivedAt = f.deps.now()
  const { stateDir } = f.monitor.config
  if (isQuietRun(network, f.configPath, stdin)) return ranWell(network, f)
  const run = runWatch(
    { network, config: f.configPath, dryRun: false, consulIndex: index, component: `resident/${network}` },
    { ...f.deps, readStdin: async () => stdin, stdinReadAt: receivedAt },
  ).then(
    () => ranWell(network, f),
    async (err: Error) => {
      const error = err.message.split('\n', 1)[0]
      f.monitor.logger.warn('resident: its run failed; the watch run does it again', { network, error })
      f.failing.add(network)
      const reason = `the resident's ${network} run failed at ${f.deps.now().toISOString()} (tried again every ${RERUN_MS / 1000} s): ${error}`
      await writeFailed(stateDir, 'resident', { status: 'warning', reason }).catch(() => {})
      return false
    },
  )
  f.running.add(run)
  const ran = await run
  f.running.delete(run)
  return ran
}

async function ranWell(network: Network, f: Follow): Promise<true> {
  if (f.failing.delete(network) && f.failing.size === 0) await clearFailed(f.monitor.config.stateDir, 'resident').catch(() => {})
  return true
}

/** Every file the handler's decisions depend on, with its identity now (quiet-run.ts fileId). */
function readFiles(configPath: string, monitor: Monitor, bundle: string): Map<string, string | undefined> {
  const { config } = monitor
  const paths = [configPath, config.strategy, config.upstreamConfig, bundle].filter((p) => p !== undefined).map((p) => resolve(p))
  return new Map(paths.map((p) => [p, fileId(p)]))
}

function changedFile(files: Map<string, string | undefined>): string | undefined {
  for (const [path, id] of files) if (fileId(path) !== id) return path
  return undefined
}

/** Writes the heartbeat note every HEARTBEAT_MS until the resident ends, or finds it must. */
async function heartbeats(stateDir: string, files: Map<string, string | undefined>, signal: AbortSignal, end: Follow['end'], deps: Deps) {
  const path = heartbeatPath(stateDir)
  let written = false
  while (!signal.aborted) {
    const holder = await readFile(path, 'utf8').then(
      (text) => text.split('\n', 1)[0],
      () => undefined,
    )
    if (written && holder !== String(process.pid))
      return end(holder === undefined ? `${path} was removed` : `${path} is another resident's`)
    const changed = changedFile(files)
    if (changed) return end(`${changed} changed`)
    try {
      await writeFileAtomic(path, `${process.pid}\n${Math.floor(uptime())}\n`, 0o640, { durable: false })
    } catch (err) {
      return end(`cannot write ${path}: ${(err as Error).message}`, { failed: true })
    }
    written = true
    await pause(HEARTBEAT_MS, signal, deps)
  }
}

async function removeIfOurs(stateDir: string): Promise<void> {
  const path = heartbeatPath(stateDir)
  const holder = await readFile(path, 'utf8').then(
    (text) => text.split('\n', 1)[0],
    () => undefined,
  )
  if (holder === String(process.pid)) await rm(path, { force: true }).catch(() => {})
}

/** deps.sleep, cut short when the resident ends (the listener removed after: it runs for days). */
function pause(ms: number, signal: AbortSignal, deps: Deps): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((done) => {
    const onAbort = () => done()
    signal.addEventListener('abort', onAbort, { once: true })
    void deps.sleep(ms).then(() => {
      signal.removeEventListener('abort', onAbort)
      done()
    })
  })
}
