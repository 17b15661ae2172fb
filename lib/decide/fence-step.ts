/**
 * Fencing a host, decided step by step from what its fence agent has answered so far (pure):
 * power off, then status until the agent says off, within one deadline. Off is what makes an
 * evacuation safe (issue #21: `host_status: NORMAL` only after a confirmed off), so only an
 * answer that is off by both the exit code and the printed status counts as off.
 */

/** What one run of a fence agent answered, as fence-agents' fencing.py reports it. */
export type AgentAnswer =
  /** action=status: exit 0 with "Status: ON". */
  | { kind: 'on' }
  /** action=status: exit 2 with "Status: OFF". */
  | { kind: 'off' }
  /** action=off, on or monitor: exit 0. */
  | { kind: 'done' }
  /** Anything else: the agent's own message (or why it could not be run, or that it was killed at its timeout). */
  | { kind: 'error'; message: string }

/** The fence so far, times in ms since it started. */
export interface FenceProgress {
  elapsed: number
  /** The power-off's answer, once it has come. */
  off?: AgentAnswer
  /** The latest status answer, and when it came. */
  status?: { answer: AgentAnswer; at: number }
  /** How many status answers have come. */
  statuses: number
}

export interface FenceLimits {
  /** ms the whole fence may take, power-off and status polls. */
  timeout: number
  /** ms between two status runs. */
  statusInterval: number
}

export type FenceNext =
  | { step: 'off' }
  /** Run action=status after waiting this long. */
  | { step: 'status'; wait: number }
  | { step: 'fenced'; statuses: number }
  | { step: 'failed'; reason: string }

/** What to do next, from the answers so far. */
export function fenceStep(p: FenceProgress, limits: FenceLimits): FenceNext {
  // The confirmation is checked before the deadline: an off seen in time stays an off.
  if (p.status?.answer.kind === 'off') return { step: 'fenced', statuses: p.statuses }
  if (p.off === undefined) {
    if (p.elapsed >= limits.timeout) return { step: 'failed', reason: `power off not sent within ${seconds(limits.timeout)}` }
    return { step: 'off' }
  }
  // A refused power-off (wrong password, BMC unreachable) fails at once: polling a BMC that
  // refused the off would only spend the timeout; retrying is the caller's (with its backoff).
  if (p.off.kind === 'error') return { step: 'failed', reason: `power off failed: ${p.off.message}` }
  if (p.off.kind === 'on' || p.off.kind === 'off')
    return { step: 'failed', reason: `power off answered as a status (${p.off.kind}): not a power-off` }
  // The count bounds it too: a clock that does not move (a suspended VM, a test's) must not poll for ever.
  if (p.elapsed >= limits.timeout || p.statuses > limits.timeout / limits.statusInterval)
    return { step: 'failed', reason: `power off not confirmed within ${seconds(limits.timeout)}: ${lastSeen(p)}` }
  // The first status right after the off (fence agents wait for the power to drop before they
  // answer an off); the next ones every statusInterval, never past the deadline.
  const due = p.status === undefined ? p.elapsed : p.status.at + limits.statusInterval
  const wait = Math.max(0, Math.min(due, limits.timeout) - p.elapsed)
  return { step: 'status', wait }
}

function lastSeen(p: FenceProgress): string {
  const answer = p.status?.answer
  if (answer === undefined) return 'no status answer'
  if (answer.kind === 'error') return `last status: error: ${answer.message}`
  return `last status: ${answer.kind === 'done' ? 'no power state printed' : answer.kind} (${p.statuses} status runs)`
}

const seconds = (ms: number) => `${ms / 1000} s`
