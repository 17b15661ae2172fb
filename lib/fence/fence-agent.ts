/**
 * One run of a fence agent from fence-agents (fence_ipmilan, fence_redfish…), as Pacemaker runs
 * them: no argument, the options as `key=value` lines on stdin, `action=` one of off, on,
 * status, monitor. The password goes only on stdin: an argument is in every `ps` and in
 * /proc/PID/cmdline for anyone on the controller. The process itself is started by the
 * RunAgentProcess it is given (lib/fence/agent-process.ts, a recording one in the tests).
 */
import type { AgentAnswer } from '../decide/fence-step.js'
import { oneLine } from '../base/quote.js'
import type { FenceOptions, FencingConfig } from './fence-config.js'

export type FenceAction = 'off' | 'on' | 'status' | 'monitor'

/** What the agent's process is started with: no argument on purpose (see above). */
export interface AgentProcess {
  file: string
  stdin: string
  env: Record<string, string>
  /** Killed, with its children, after this long. */
  timeoutMs: number
}

export interface AgentExit {
  /** null when it did not exit by itself (killed at its timeout, or never started). */
  code: number | null
  stdout: string
  stderr: string
  timedOut: boolean
  /** Why it could not be started (ENOENT, EACCES…). */
  error?: string
}

export type RunAgentProcess = (run: AgentProcess) => Promise<AgentExit>

/**
 * The environment an agent gets: what a Python agent and the tools it calls (ipmitool, ssh)
 * need, nothing more. The monitor's own environment holds other secrets (passwordEnv, OS_*,
 * CONSUL_HTTP_TOKEN) that a third-party program has no use for.
 */
const PASSED_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR']

export function agentEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }
  for (const k of PASSED_ENV) if (env[k] !== undefined) out[k] = env[k]
  return out
}

/** fence-agents' stdin: one `key=value` line each; a boolean as fencing.py reads one ("1" set, "0" not). */
export function agentStdin(action: FenceAction, options: FenceOptions, password: string | undefined): string {
  const value = (v: string | number | boolean) => (typeof v === 'boolean' ? (v ? '1' : '0') : String(v))
  const lines = Object.entries(options).map(([k, v]) => `${k}=${value(v)}`)
  lines.push(`action=${action}`)
  if (password !== undefined) lines.push(`password=${password}`)
  return `${lines.join('\n')}\n`
}

/**
 * The answer of a run, as fencing.py reports it (fence_action): `status` prints "Status: ON"
 * and exits 0, or "Status: OFF" and exits 2; every other action exits 0 when done; a failure
 * exits 1 with "Failed: …" logged on stderr. Off is the answer that lets a host be evacuated,
 * so it needs both the exit code and the line: exit 2 alone was EC_BAD_ARGS in older agents.
 */
export function agentAnswer(action: FenceAction, exit: AgentExit, password?: string): AgentAnswer {
  const message = () => redact(agentMessage(exit), password)
  if (exit.error !== undefined) return { kind: 'error', message: `could not be run: ${redact(exit.error, password)}` }
  if (exit.timedOut) return { kind: 'error', message: `no answer in time: killed${withMessage(message())}` }
  if (action !== 'status') return exit.code === 0 ? { kind: 'done' } : failed(exit.code, message())
  const printed = /^Status: (ON|OFF)\s*$/im.exec(exit.stdout)?.[1]?.toUpperCase()
  if (exit.code === 2 && printed === 'OFF') return { kind: 'off' }
  // Exit 0 is on (Pacemaker reads it so), unless the agent printed otherwise.
  if (exit.code === 0 && printed !== 'OFF') return { kind: 'on' }
  if (exit.code === 0 || exit.code === 2)
    return { kind: 'error', message: `exit ${exit.code} with ${printed ? `"Status: ${printed}"` : 'no "Status:" line'}: not a power state` }
  return failed(exit.code, message())
}

const withMessage = (m: string) => (m === '' ? '' : `: ${m}`)

function failed(code: number | null, message: string): AgentAnswer {
  return { kind: 'error', message: `${message === '' ? 'no message' : message} (exit ${code ?? 'by a signal'})` }
}

/** fencing.py's log lines start with a time and a level: "2024-05-01 10:00:00,123 ERROR: Failed: …". */
const LOG_PREFIX = /^\d{4}-\d\d-\d\d[ T][\d:.,]+ +([A-Z]+): */
/** Python's warnings ("…/fencing.py:12: DeprecationWarning: …" and the source line under it): not the agent's message. */
const PY_WARNING = /^\S+:\d+: \w*Warning: |^\s/

/** The agent's own message: its ERROR lines (fencing.py's "Failed: …"), else its last line; one line. */
export function agentMessage(exit: Pick<AgentExit, 'stdout' | 'stderr'>): string {
  const lines = `${exit.stderr}\n${exit.stdout}`.split('\n').filter((l) => l.trim() !== '' && !PY_WARNING.test(l))
  const errors = lines.filter((l) => LOG_PREFIX.exec(l)?.[1] === 'ERROR' || /^Failed: /.test(l))
  const chosen = errors.length > 0 ? errors : lines.slice(-1)
  return oneLine(chosen.map((l) => l.replace(LOG_PREFIX, '').trim()).join('; '), 300)
}

/** An agent never prints the password, but its message is logged: make sure of it. */
function redact(text: string, password: string | undefined): string {
  return password ? text.split(password).join('***') : text
}

export interface AgentContext {
  run: RunAgentProcess
  /** The monitor's environment (agentEnv takes what the agent needs). */
  env: Record<string, string | undefined>
  fencing: FencingConfig
  password: string | undefined
}

/**
 * Runs one action of a host's agent with that host's options (lib/fence/fence-template.ts's
 * fenceTarget); an agent that cannot be run is an error answer.
 */
export async function runFenceAgent(
  ctx: AgentContext,
  options: FenceOptions,
  action: FenceAction,
  timeoutMs: number,
): Promise<AgentAnswer> {
  if (ctx.fencing.agent === undefined) return { kind: 'error', message: 'no fencing.agent' }
  const exit = await ctx.run({
    file: ctx.fencing.agent,
    stdin: agentStdin(action, options, ctx.password),
    env: agentEnv(ctx.env),
    timeoutMs,
  })
  return agentAnswer(action, exit, ctx.password)
}
