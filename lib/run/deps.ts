import type { Fetch } from '../base/http.js'
import type { ConfigEnv } from '../config/config.js'
import type { RunAgentProcess } from '../fence/fence-agent.js'

/** Every side effect the monitor has, passed in: the real ones in lib/commands/runtime.ts, recording ones in the tests. */
export interface Deps {
  /** All of stdin as bytes, up to a little past `maxBytes` (the edge decodes and checks it). */
  readStdin: (maxBytes: number) => Promise<Uint8Array>
  /**
   * When stdin was read, if before the handler asked (the bundle's entry reads it first, and
   * takes the time just before): a snapshot's age is when Consul's view was taken at the
   * latest, which orders overlapping runs (supersedes).
   */
  stdinReadAt?: Date
  now: () => Date
  fetch: () => Promise<Fetch>
  /** Builds the https.Agent for a CA bundle / insecure switch (used for https: URLs only). */
  tlsAgent: (caPem: string | undefined, insecure: boolean) => Promise<unknown>
  /** Starts the worker (lib/run/worker.ts, `--worker`) in a detached process that outlives the handler. */
  spawnWorker: (configPath: string, stateDir: string) => void
  /** Starts the pulse's fence check (lib/run/fence-check.ts, `--pulse --fence-check`) in a detached process. */
  spawnFenceCheck: (configPath: string, stateDir: string) => void
  sleep: (ms: number) => Promise<void>
  stdout: (text: string) => void
  stderr: (line: string) => void
  appendLog: (file: string, line: string) => void
  /** Runs a fence agent (fencing): options and password on its stdin, never as arguments. */
  runAgent: RunAgentProcess
  configEnv: ConfigEnv
}
