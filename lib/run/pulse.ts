/**
 * `checks-handler.js --pulse`: the deep look the pulse check (consul-config/pulse.sh) takes when
 * the health note is missing or old, or the config changed: load and validate the config and
 * strategy, read the record (state.json or the shared record in Consul KV) and the snapshots,
 * write the health and wake notes, and start a worker if something is due. With fencing on it
 * starts the fence check when due (`--pulse --fence-check` runs it, then looks as deeply:
 * lib/run/fence-check.ts). It renews the Keystone token and Masakari's host list ahead of need
 * (lib/run/warm-up.ts), and says so in the `warmed` note (lib/state/status-files.ts). Records nothing.
 */
import { loadMonitor } from './load-monitor.js'
import { noteStatus } from './notes.js'
import type { Deps } from './deps.js'
import { pulseFenceCheck } from './fence-check.js'
import { readSnapshots } from '../state/snapshot.js'
import { nextWake } from '../decide/outbox.js'
import { warmUp } from './warm-up.js'
import { writeWarmed } from '../state/status-files.js'

export async function runPulse(configPath: string, deps: Deps, opts: { fenceCheck?: boolean } = {}): Promise<number> {
  const monitor = await loadMonitor(configPath, deps, 'pulse')
  const { config, store } = monitor
  const fence = await pulseFenceCheck(monitor, deps, opts.fenceCheck ?? false)
  // Before anything fails: a failure's first POST then waits for neither Keystone nor the host list.
  const warmed = await warmUp(monitor, deps)
  const role = monitor.coordination ? await monitor.coordination.lock.peek() : undefined
  const state = await store.read()
  // One line per deep look (every 30 minutes, or each pulse while critical): it also tries
  // logFile, so an unwritable one shows in the health note even when no host changes. A BMC
  // that did not answer the last fence check makes it a warning line.
  monitor.logger[fence.failing ? 'warn' : 'info']('pulse: deep look', {
    pending: state.outbox.length,
    ...(role ? { sender: role.sender } : {}),
    ...(warmed ? { warmed } : {}),
    ...fence.fields,
  })
  await noteStatus(monitor, state, await readSnapshots(config.stateDir), role, deps.now())
  await writeWarmed(config.stateDir, { at: deps.now().toISOString(), ...(warmed ? { warmed } : {}) })
  const due = (nextWake(state)?.getTime() ?? Number.POSITIVE_INFINITY) <= deps.now().getTime()
  if (due && (role === undefined || role.sender || role.holder === undefined)) deps.spawnWorker(config.source, config.stateDir)
  return 0
}
