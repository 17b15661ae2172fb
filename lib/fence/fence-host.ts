/**
 * Fencing one host, with its options (lib/fence/fence-template.ts): power off through its agent, then status until it reports off, within
 * fencing.timeout; each step chosen by fenceStep (lib/decide/fence-step.ts), each run of the
 * agent given what is left of the timeout. Run by the sender before a fenced host's STOPPED (lib/run/fence-delivery.ts).
 */
import { type AgentAnswer, fenceStep, type FenceProgress } from '../decide/fence-step.js'
import { type AgentContext, type FenceAction, runFenceAgent } from './fence-agent.js'
import type { FenceOptions } from './fence-config.js'

export interface FenceResult {
  fenced: boolean
  /** Why not, when not fenced: the agent's own message among it. */
  reason?: string
  /** Every run of the agent, in order, with its answer and when it came (ms since the start). */
  runs: Array<{ action: FenceAction; answer: AgentAnswer; at: number }>
  elapsed: number
}

export interface FenceClock {
  now: () => Date
  sleep: (ms: number) => Promise<void>
}

/**
 * A run of the agent has what is left of the timeout, but at least this much (or the whole
 * timeout when it is shorter): a status begun just before the deadline gets the second or two an
 * answer takes, so that a failure names the power state the BMC reported, not our kill. A fence
 * then overruns its timeout by at most this.
 */
const LEAST_RUN_MS = 5000

export async function fenceHost(ctx: AgentContext, clock: FenceClock, options: FenceOptions): Promise<FenceResult> {
  const limits = { timeout: ctx.fencing.timeout * 1000, statusInterval: ctx.fencing.statusInterval * 1000 }
  const start = clock.now().getTime()
  const elapsed = () => clock.now().getTime() - start
  const runs: FenceResult['runs'] = []
  const progress: FenceProgress = { elapsed: 0, statuses: 0 }
  const run = async (action: FenceAction) => {
    const left = Math.max(limits.timeout - elapsed(), Math.min(limits.timeout, LEAST_RUN_MS))
    const answer = await runFenceAgent(ctx, options, action, left)
    runs.push({ action, answer, at: elapsed() })
    return answer
  }
  for (;;) {
    progress.elapsed = elapsed()
    const next = fenceStep(progress, limits)
    if (next.step === 'fenced') return { fenced: true, runs, elapsed: progress.elapsed }
    if (next.step === 'failed') return { fenced: false, reason: next.reason, runs, elapsed: progress.elapsed }
    if (next.step === 'off') progress.off = await run('off')
    else {
      if (next.wait > 0) await clock.sleep(next.wait)
      const answer = await run('status')
      progress.status = { answer, at: elapsed() }
      progress.statuses++
    }
  }
}
