/**
 * `fence-check`: every configured host's fence agent asked `action=status` (or `monitor`), as
 * Pacemaker's stonith monitor does, so that a BMC with a wrong password or no route is found
 * before a failure needs it. It powers nothing off or on. `validate` runs the same check.
 */
import { basename } from 'node:path'
import type { AgentAnswer } from '../decide/fence-step.js'
import { type Config, loadConfig } from '../config/config.js'
import { escapeControls } from '../base/quote.js'
import { runFenceAgent } from '../fence/fence-agent.js'
import { EXIT } from '../run/cli.js'
import type { Deps } from '../run/deps.js'

export type CheckAction = 'status' | 'monitor'

export interface FenceCheckRow {
  host: string
  /** The agent's name (fence_ipmilan), its path in the config. */
  agent: string
  /** on / off (status), ok (monitor), or error with the agent's own message. */
  result: 'on' | 'off' | 'ok' | 'error'
  message?: string
}

/** BMCs answer slowly (a few seconds each): several at a time, but not a storm on the management network. */
const CONCURRENCY = 8

/** Each configured host's answer, in host order. */
export async function fenceCheckRows(config: Config, deps: Deps, action: CheckAction = 'status'): Promise<FenceCheckRow[]> {
  const hosts = Object.keys(config.fencing.hosts).sort()
  const ctx = { run: deps.runAgent, env: deps.configEnv.env, fencing: config.fencing, password: config.fencePassword }
  const agent = basename(config.fencing.agent ?? '')
  const rows: FenceCheckRow[] = new Array(hosts.length)
  let next = 0
  const worker = async () => {
    for (let i = next++; i < hosts.length; i = next++) {
      const host = hosts[i]!
      rows[i] = { host, agent, ...resultOf(await runFenceAgent(ctx, host, action, config.fencing.timeout * 1000)) }
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, hosts.length) }, worker))
  return rows
}

function resultOf(answer: AgentAnswer): Pick<FenceCheckRow, 'result' | 'message'> {
  if (answer.kind === 'error') return { result: 'error', message: answer.message }
  return { result: answer.kind === 'done' ? 'ok' : answer.kind }
}

/** 0 when every BMC answered, 69 (unavailable) when any did not. */
export const fenceCheckExit = (rows: readonly FenceCheckRow[]): number => (rows.some((r) => r.result === 'error') ? EXIT.consul : EXIT.ok)

/** The table: HOST | AGENT | RESULT, the result with the agent's message when it failed. */
export function formatFenceCheck(rows: readonly FenceCheckRow[]): string {
  const cells = rows.map((r) => [r.host, r.agent, r.result === 'error' ? `error: ${r.message}` : r.result].map(escapeControls))
  const all = [['HOST', 'AGENT', 'RESULT'], ...cells]
  const width = [0, 1].map((c) => Math.max(...all.map((row) => row[c]!.length)))
  const lines = all.map(([h, a, r]) => `${h!.padEnd(width[0]!)}  ${a!.padEnd(width[1]!)}  ${r}`.trimEnd())
  return `${lines.join('\n')}\n`
}

export const FENCING_OFF = 'fencing is off (fencing.enabled is false): no fence agent to check'

/** Prints the table (--json: {enabled, action, hosts, exit}); the exit of fenceCheckExit. */
export async function runFenceCheck(opts: { config: string; json: boolean; action: CheckAction }, deps: Deps): Promise<number> {
  const config = await loadConfig(opts.config, deps.configEnv)
  if (!config.fencing.enabled) {
    deps.stdout(opts.json ? `${JSON.stringify({ enabled: false, hosts: [], exit: EXIT.ok }, null, 2)}\n` : `${FENCING_OFF}\n`)
    return EXIT.ok
  }
  const rows = await fenceCheckRows(config, deps, opts.action)
  const exit = fenceCheckExit(rows)
  if (opts.json) deps.stdout(`${JSON.stringify({ enabled: true, action: opts.action, hosts: rows, exit }, null, 2)}\n`)
  else deps.stdout(formatFenceCheck(rows))
  return exit
}
