/**
 * The worker: the detached process a run starts (`--worker`) when the outbox is not empty or a
 * held-back decision is waiting. One at a time, under `<stateDir>/worker.lock`. It delivers the
 * outbox, and re-evaluates when a held-back decision (hold time, rate limit) comes due, since
 * Consul only runs the handler on changes. It exits when nothing is left to deliver or wait for.
 */
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { EXIT } from './cli.js'
import { deliveryDeps, deliveryPass, type DeliveryDeps } from './delivery.js'
import { NotSenderError } from '../consul/kv-store.js'
import { tryLock } from '../state/lock.js'
import { statePath } from '../state/paths.js'
import type { Logger } from '../base/log.js'
import { loadMonitor } from './load-monitor.js'
import { noteStatus } from './notes.js'
import { recordRun } from './record-run.js'
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'
import { hasPendingWork, nextWake } from '../decide/outbox.js'
import { fileId } from './quiet-run.js'
import { readSnapshots } from '../state/snapshot.js'

/** The worker's whole run; its exit code. */
export async function runWorker(configPath: string, deps: Deps): Promise<number> {
  // A worker lives as long as work is pending: one that kept a config since changed (a token
  // replaced, an agent moved) would act on it for ever. It hands over to a fresh one instead.
  const configId = fileId(configPath)
  const configChanged = () => fileId(configPath) !== configId
  const monitor = await loadMonitor(configPath, deps, 'worker')
  const { config, store, logger } = monitor
  const lockPath = join(config.stateDir, 'worker.lock')
  if (monitor.coordination) {
    if (!(await takeSenderLock(monitor, deps))) return 0
    // Maybe just taken over: decide from this controller's view what a lost holder may never
    // have recorded (it died before its own handler ran). One evaluation per worker start.
    await recordRun(monitor, deps)
  }
  const delivery = await deliveryDeps(monitor, deps)
  const lost = lockLoss(logger, lockPath)
  for (;;) {
    const release = await tryLock(lockPath, lost.onCompromised)
    if (!release) {
      logger.debug('another worker is running; leaving the outbox to it')
      return 0
    }
    let outcome: Awaited<ReturnType<typeof workWhilePending>>
    try {
      outcome = await workWhilePending(monitor, delivery, deps, lost.stop, configChanged)
      if (outcome === 'lost') return EXIT.lock
    } catch (err) {
      if (!(err instanceof NotSenderError)) throw err
      // Fenced: another controller took the sender lock; it delivers what is left.
      logger.warn('lost the sender lock; stopping: the new sender delivers what is left', { error: err.message })
      return 0
    } finally {
      // a lock taken over is already released: its release() rejects, and must not replace our exit code
      await release().catch(() => {})
    }
    if (outcome === 'config changed') {
      logger.info('the config changed: a fresh worker takes over with it', { config: configPath })
      deps.spawnWorker(config.source, config.stateDir)
      return 0
    }
    // A handler may have queued work after our last look and found the lock still held:
    // look once more now that it is free, so that work is not left without a worker.
    const state = await store.read()
    if (!hasPendingWork(state)) {
      const role = monitor.coordination ? ({ sender: true, session: monitor.coordination.lock.session() ?? '' } as const) : undefined
      await noteStatus(monitor, state, await readSnapshots(config.stateDir), role, deps.now())
      return 0
    }
  }
}

/** Seconds the worker keeps trying for a free sender lock beyond Consul's lock-delay. */
const TAKEOVER_SLACK_S = 5

/**
 * With several controllers only the sender delivers. A lock that nobody holds (its holder just
 * lost it) is within Consul's lock-delay: keep trying until it is over, then take it over.
 */
async function takeSenderLock(monitor: Monitor, deps: Deps): Promise<boolean> {
  const { coordination, logger } = monitor
  const deadline = deps.now().getTime() + (coordination!.config.lockDelay + TAKEOVER_SLACK_S) * 1000
  for (let attempt = 0; ; attempt++) {
    const role = await coordination!.lock.acquire()
    if (role.sender) {
      if (attempt > 0) logger.warn('took over the sender lock: this controller sends now', { session: role.session })
      return true
    }
    if (role.holder !== undefined || deps.now().getTime() > deadline) {
      logger.info('standby: the sender delivers; this worker leaves', { holder: role.holder, why: role.why })
      return false
    }
    await deps.sleep(1000)
  }
}

/**
 * We were frozen past the lock's staleness and another worker took over. proper-lockfile
 * calls onCompromised from a timer: a throw would be an uncaught exception (a minified stack
 * in worker.stderr). Note it; the loop stops before its next round, with one line.
 */
function lockLoss(logger: Logger, lockPath: string): { onCompromised: (err: Error) => void; stop: () => boolean } {
  let lost: Error | undefined
  return {
    onCompromised: (err) => {
      lost ??= err
    },
    stop: () => {
      if (!lost) return false
      logger.error('worker lock taken over by another process (this one was stalled past its stale time); stopping', {
        lock: lockPath,
        error: lost.message,
      })
      return true
    },
  }
}

/**
 * Holding the worker lock: delivery passes and due re-evaluations until nothing is pending,
 * sleeping until the next retry or wake-up when a round sent nothing. Stops early when the lock
 * was lost on the way, or the config changed.
 */
async function workWhilePending(
  monitor: Monitor,
  delivery: DeliveryDeps,
  deps: Deps,
  lost: () => boolean,
  configChanged: () => boolean,
): Promise<'done' | 'lost' | 'config changed'> {
  const { store } = monitor
  const recordPath = statePath(monitor.config.stateDir)
  for (;;) {
    if (lost()) return 'lost'
    if (configChanged()) return 'config changed'
    let state = await store.read()
    let sent = 0
    if (state.outbox.length > 0) {
      sent = (await deliveryPass(delivery)).sent
      state = await store.read()
    }
    if (state.wakeAt !== undefined && Date.parse(state.wakeAt) <= deps.now().getTime()) {
      await recordRun(monitor, deps)
      state = await store.read()
    }
    if (lost()) return 'lost'
    if (!hasPendingWork(state)) return 'done'
    if (sent > 0) continue
    await sleepUnlessChanged(recordPath, Math.max(20, nextWake(state)!.getTime() - deps.now().getTime()), deps)
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
