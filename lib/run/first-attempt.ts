/**
 * The handler's own first delivery attempt. Starting a worker costs a second node process
 * (~0.2 s) before the first POST: the run that recorded a notification sends it itself, within
 * a short budget, and hands the rest (retries, backoff, held-back decisions) to the worker. The
 * outbox is unchanged: the entry is recorded before it is sent, and its answer recorded under
 * the store lock, exactly as a worker's pass does (lib/run/delivery.ts).
 */
import { join } from 'node:path'
import { deliveryDeps, deliveryPass } from './delivery.js'
import { withDeadline } from '../base/http.js'
import { stage } from '../base/stages.js'
import { NotSenderError } from '../consul/kv-store.js'
import { tryLock } from '../state/lock.js'
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'
import type { StoreState } from '../decide/state-shape.js'
import { hasPendingWork } from '../decide/outbox.js'

export type FirstAttempt =
  /** Sent; nothing left for a worker. `left`: the record after it. */
  | { outcome: 'delivered'; left: StoreState }
  /** Something is left (a retry, a hold, more entries): a worker was started. */
  | { outcome: 'worker started'; left: StoreState }
  /** A worker holds worker.lock: it sees the new entry (it watches state.json) and sends it. */
  | { outcome: 'left to the running worker' }
  /** Another controller took the sender lock meanwhile: it delivers. */
  | { outcome: 'left to the new sender' }

/**
 * Holding worker.lock (so that no worker sends the same entry at the same time), one delivery
 * pass whose every request ends by the deadline: a Masakari that does not answer holds the
 * watch for `budgetS` at most. An answer that does not come in time counts as a failed attempt,
 * retried by the worker as any other.
 */
export async function sendFirstAttempt(monitor: Monitor, deps: Deps, budgetS: number): Promise<FirstAttempt> {
  const { config, logger } = monitor
  let lost = false
  const release = await tryLock(join(config.stateDir, 'worker.lock'), () => {
    lost = true
  })
  if (!release) return { outcome: 'left to the running worker' }
  stage('worker lock taken')
  let left: StoreState
  try {
    const deadline = AbortSignal.timeout(budgetS * 1000)
    // A fence (power off, status until off: seconds to fencing.timeout) does not fit the
    // watch's budget, and a handler killed mid-fence would leave a power-off half done: an
    // entry that needs one is left to the worker, which fences before its POST.
    const delivery = await deliveryDeps(monitor, deps, {
      requestTimeout: budgetS,
      fetch: withDeadline(await deps.fetch(), deadline),
      leaveFencesToWorker: true,
    })
    const pass = await deliveryPass(delivery)
    left = await monitor.store.read()
    logger.debug('first attempt made by the handler', { sent: pass.sent, remaining: left.outbox.length, lockLost: lost })
  } catch (err) {
    if (err instanceof NotSenderError) {
      logger.warn('lost the sender lock before sending: the new sender delivers', { error: err.message })
      return { outcome: 'left to the new sender' }
    }
    // The entry is in the outbox: a worker retries it, whatever went wrong here.
    deps.spawnWorker(config.source, config.stateDir)
    throw err
  } finally {
    await release().catch(() => {})
  }
  if (!hasPendingWork(left)) return { outcome: 'delivered', left }
  deps.spawnWorker(config.source, config.stateDir)
  return { outcome: 'worker started', left }
}
