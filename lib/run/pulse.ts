/**
 * `checks-handler.js --pulse`: the deep look the pulse check (consul-config/pulse.sh) takes when
 * the health note is missing or old, or the config changed: load and validate the config and
 * strategy, read the record (state.json or the shared record in Consul KV) and the snapshots,
 * write the health and wake notes, and start a worker if something is due. Records nothing.
 */
import { loadMonitor } from './load-monitor.js'
import { noteStatus } from './notes.js'
import type { Deps } from './deps.js'
import { readSnapshots } from '../state/snapshot.js'
import { nextWake } from '../decide/outbox.js'

export async function runPulse(configPath: string, deps: Deps): Promise<number> {
  const monitor = await loadMonitor(configPath, deps, 'pulse')
  const { config, store } = monitor
  const role = monitor.coordination ? await monitor.coordination.lock.peek() : undefined
  const state = await store.read()
  // One line per deep look (every 30 minutes, or each pulse while critical): it also tries
  // logFile, so an unwritable one shows in the health note even when no host changes.
  monitor.logger.info('pulse: deep look', { pending: state.outbox.length, ...(role ? { sender: role.sender } : {}) })
  await noteStatus(monitor, state, await readSnapshots(config.stateDir), role, deps.now())
  const due = (nextWake(state)?.getTime() ?? Number.POSITIVE_INFINITY) <= deps.now().getTime()
  if (due && (role === undefined || role.sender || role.holder === undefined)) deps.spawnWorker(config.source, config.stateDir)
  return 0
}
