/**
 * The notes a run leaves for the pulse check and the operator (lib/state/status-files.ts): the
 * health note with the run's problems, the wake and resync notes, the metrics textfile, and an
 * own agent's refusal, which outlives the runs that ask no agent.
 */
import type { Monitor } from './monitor-context.js'
import type { Confirmation } from '../decide/evaluator.js'
import type { Network } from '../base/networks.js'
import { writeMetrics } from '../state/metrics.js'
import type { Snapshots } from '../decide/snapshot-shape.js'
import {
  clearFailed,
  type Health,
  healthOf,
  readFenceCheck,
  unsettled,
  writeFailed,
  writeHealth,
  writeResync,
  writeWake,
} from '../state/status-files.js'
import { fenceCheckProblem } from '../decide/fence-watch.js'
import { fencesHost } from '../fence/fence-template.js'
import { emptyState, type StoreState } from '../decide/state-shape.js'
import type { Role } from '../consul/sender.js'
import { packageVersion } from './version.js'

/**
 * An own agent that answered without seeing nodes keeps the check critical until it confirms
 * again: the runs between (a hold, a watch run) ask no agent and would write a passing note.
 */
export async function noteRefusals(stateDir: string, confirmations: Partial<Record<Network, Confirmation>> | undefined): Promise<void> {
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
  const fencing = await fenceCheckProblems(monitor)
  await writeMetricsFile(monitor, {
    state,
    snapshots,
    health: withProblems(health, [...monitor.problems, ...fencing], monitor.critical),
    now,
    version: packageVersion(),
  })
  // Again, not the metrics' copy: a textfile that cannot be written adds its problem to monitor.problems.
  await writeHealth(stateDir, withProblems(health, [...monitor.problems, ...fencing], monitor.critical))
  const why = unsettled(state, snapshots, monitor.strategy.sequence)
  await writeResync(stateDir, why === undefined ? undefined : new Date(now.getTime() + resync * 1000), { postpone: opts.resynced })
  if (role === undefined || role.sender) return writeWake(stateDir, state)
  const takeOverAt = new Date(now.getTime() + (monitor.coordination?.config.lockDelay ?? 0) * 1000)
  await writeWake(stateDir, emptyState(), role.holder === undefined ? takeOverAt : undefined)
}

/**
 * A BMC that did not answer the pulse's last fence check (lib/run/fence-check.ts), from its
 * note: every run that writes the health note says it, or the next watch run would turn the
 * check passing again until the next check, half an hour later. Not one of the run's own
 * problems: those end it with exit 74.
 */
async function fenceCheckProblems(monitor: Monitor): Promise<string[]> {
  const { fencing, stateDir } = monitor.config
  if (!fencing.enabled) return []
  const problem = fenceCheckProblem((await readFenceCheck(stateDir))?.last, (host) => fencesHost(fencing, host))
  return problem === undefined ? [] : [problem]
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
