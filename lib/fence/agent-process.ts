/**
 * The real RunAgentProcess: a fence agent as a child process, its stdin written and closed,
 * its output kept up to a bound, and at its timeout killed with every process it started
 * (fence_ipmilan runs ipmitool, which a kill of the agent alone would leave behind).
 */
import { spawn } from 'node:child_process'
import type { AgentExit, AgentProcess } from './fence-agent.js'

/** An agent's answer is a few lines; a runaway one must not fill the monitor's memory. */
const MAX_OUTPUT = 64 * 1024

export function runAgentProcess(run: AgentProcess): Promise<AgentExit> {
  return new Promise((resolve) => {
    const out = { stdout: '', stderr: '' }
    let timedOut = false
    // Its own process group (detached), so that the timeout can kill the group.
    const child = spawn(run.file, [], { env: run.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true })
    const keep = (key: 'stdout' | 'stderr') => (chunk: Buffer) => {
      if (out[key].length < MAX_OUTPUT) out[key] += chunk.toString('utf8').slice(0, MAX_OUTPUT - out[key].length)
    }
    child.stdout.on('data', keep('stdout'))
    child.stderr.on('data', keep('stderr'))
    const timer = setTimeout(() => {
      timedOut = true
      killGroup(child.pid)
    }, run.timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      resolve({ code: null, ...out, timedOut: false, error: err.message })
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      // What it left running (a hung ipmitool) goes with it.
      if (timedOut) killGroup(child.pid)
      resolve({ code: timedOut ? null : code, ...out, timedOut })
    })
    // An agent that exits before reading all its stdin closes the pipe: that is its answer, not ours.
    child.stdin.on('error', () => {})
    child.stdin.end(run.stdin)
  })
}

function killGroup(pid: number | undefined) {
  if (pid === undefined) return
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // already gone
  }
}
