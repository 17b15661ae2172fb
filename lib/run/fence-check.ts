/**
 * The fence check: every fenced host's agent asked `action=status` (or `monitor`), as
 * Pacemaker's stonith monitor does, so that a BMC with a wrong password or no route is found
 * before a failure needs it. It powers nothing off or on. `fence-check` and `validate` run it
 * when asked; the pulse's deep look every FENCE_CHECK_EVERY_S (lib/decide/fence-watch.ts), in a
 * process of its own (`--pulse --fence-check`): a BMC that does not answer takes a whole
 * fencing.timeout, and the pulse is a script check that Consul kills after 10 s (its timeout in
 * consul-config/watches/pulse.json), which would turn it critical and cost the sender its lock.
 */
import { stat } from 'node:fs/promises'
import { basename } from 'node:path'
import type { AgentAnswer } from '../decide/fence-step.js'
import { type FenceCheckResult, fenceCheckDue, fenceCheckProblem, fenceCheckResult } from '../decide/fence-watch.js'
import type { Config } from '../config/config.js'
import { runFenceAgent } from '../fence/fence-agent.js'
import { clearFenceCheck, readFenceCheck, writeFenceCheck } from '../state/status-files.js'
import type { Deps } from './deps.js'
import { checkTargets } from './fence-targets.js'
import { fencesHost } from '../fence/fence-template.js'
import type { Monitor } from './monitor-context.js'

export type CheckAction = 'status' | 'monitor'

export interface FenceCheckRow {
  host: string
  /** The agent's name (fence_ipmilan), its path in the config. */
  agent: string
  /**
   * on / off (status), ok (monitor), error with the agent's own message, or uncovered: no
   * options for the host (fencing.template cannot be filled for it), the agent not run.
   */
  result: 'on' | 'off' | 'ok' | 'error' | 'uncovered'
  message?: string
}

export interface FenceCheck {
  rows: FenceCheckRow[]
  /** What limits the check (fencing.template: no management snapshot yet…): warnings. */
  notes: string[]
}

/** BMCs answer slowly (a few seconds each): several at a time, but not a storm on the management network. */
const CONCURRENCY = 8

/** Each checked host's answer (lib/run/fence-targets.ts's checkTargets), in host order; each run killed after fencing.timeout. */
export async function fenceCheckRows(config: Config, deps: Deps, action: CheckAction = 'status'): Promise<FenceCheck> {
  const { targets, notes } = await checkTargets(config, deps)
  const ctx = { run: deps.runAgent, env: deps.configEnv.env, fencing: config.fencing, password: config.fencePassword }
  const agent = agentName(config)
  const rows: FenceCheckRow[] = new Array(targets.length)
  let next = 0
  const worker = async () => {
    for (let i = next++; i < targets.length; i = next++) {
      const { host, target } = targets[i]!
      rows[i] =
        'reason' in target
          ? { host, agent, result: 'uncovered', message: target.reason }
          : { host, agent, ...resultOf(await runFenceAgent(ctx, target.options, action, config.fencing.timeout * 1000)) }
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, targets.length) }, worker))
  return { rows, notes }
}

const agentName = (config: Config) => basename(config.fencing.agent ?? '')

function resultOf(answer: AgentAnswer): Pick<FenceCheckRow, 'result' | 'message'> {
  if (answer.kind === 'error') return { result: 'error', message: answer.message }
  return { result: answer.kind === 'done' ? 'ok' : answer.kind }
}

/** What a deep look says of the fence check in its log line. */
export interface PulseFence {
  /** The `fenceCheck` field: the last result, and whether this deep look started a check or ran one. */
  fields: { fenceCheck?: Partial<FenceCheckResult> & { started?: true } }
  /** A BMC did not answer at the last check: the line is a warning. */
  failing: boolean
}

/**
 * The deep look's part (fencing on). `runNow` (`--pulse --fence-check`): run the check and keep
 * its result in the fence-check note; else start that process when a check is due. Fencing off:
 * no agent is run and the note goes.
 */
export async function pulseFenceCheck(monitor: Monitor, deps: Deps, runNow: boolean): Promise<PulseFence> {
  const { config } = monitor
  if (!config.fencing.enabled) {
    await clearFenceCheck(config.stateDir)
    return { fields: {}, failing: false }
  }
  const started = deps.now()
  if (runNow) {
    const last = fenceCheckResult((await fenceCheckRows(config, deps)).rows, agentName(config), deps.now())
    await writeFenceCheck(config.stateDir, { startedAt: started.toISOString(), last })
    return said(config, last, false)
  }
  const note = await readFenceCheck(config.stateDir)
  if (!fenceCheckDue(note, started, await modifiedAt(config.source))) return said(config, note?.last, false)
  await writeFenceCheck(config.stateDir, { ...note, startedAt: started.toISOString() })
  deps.spawnFenceCheck(config.source, config.stateDir)
  return said(config, note?.last, true)
}

/** Failing as the health note says it (noteStatus): a host no longer fenced (config changed) does not count. */
function said(config: Config, last: FenceCheckResult | undefined, started: boolean): PulseFence {
  const fenceCheck = started ? { ...last, started: true as const } : last
  const failing = fenceCheckProblem(last, (host) => fencesHost(config.fencing, host)) !== undefined
  return { fields: fenceCheck ? { fenceCheck } : {}, failing }
}

/** The config file's mtime; undefined when it cannot be read (the deep look has just loaded it). */
async function modifiedAt(path: string): Promise<Date | undefined> {
  return stat(path).then(
    (s) => s.mtime,
    () => undefined,
  )
}
