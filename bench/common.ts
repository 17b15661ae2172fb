/** What every section shares: monitor configs, the decision log, waiting, machine facts. */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { cpus, totalmem, release } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './proc.js'

export const HANDLER = join(ROOT, 'dist', 'checks-handler.js')

/** Guards that hold recoveries back on purpose (hold time, burst, isolation, rate limit), all off. */
export const GUARDS_OFF = {
  hold: { recovery: 0, back: 0 },
  burst: { quietWindow: 0 },
  isolation: { maxDownFraction: 1, maxDownCount: null },
  rateLimit: { maxRecoveries: 0 },
}

export interface MonitorConfig {
  stateDir: string
  masakari: Record<string, unknown>
  [key: string]: unknown
}

/** Writes a monitor config (JSON is YAML) and returns its path. */
export function writeMonitorConfig(dir: string, config: MonitorConfig): string {
  mkdirSync(dir, { recursive: true })
  const path = join(dir, 'config.yaml')
  writeFileSync(path, `${JSON.stringify({ hostname: 'controller', ...config }, null, 2)}\n`)
  // Dated a minute back, as a config installed before the watches run is: a file changed in
  // the last 2 s is never trusted by a quiet run (lib/run/quiet-run.ts), so a fresh one would make
  // the first runs full ones and measure the wrong thing.
  const past = new Date(Date.now() - 60_000)
  utimesSync(path, past, past)
  return path
}

/** A config for runs that never reach Masakari (port 1 refuses at once). */
export function offlineConfig(dir: string, extra: Record<string, unknown> = {}): string {
  return writeMonitorConfig(dir, {
    stateDir: join(dir, 'state'),
    masakari: {
      authUrl: 'http://127.0.0.1:1/v3',
      auth: { username: 'bench', userDomainName: 'Default', password: 'x', projectName: 'service', projectDomainName: 'Default' },
      delivery: { initialBackoff: 0.2, maxBackoff: 0.5, expiry: 2 },
    },
    ...extra,
  })
}

export type LogLine = { time: string; level: string; msg: string; [k: string]: unknown }

export function readLog(file: string): LogLine[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as LogLine)
  } catch {
    return []
  }
}

/** Processes whose command line mentions `needle` (the monitor's detached workers carry the config path). */
export function pidsWith(needle: string): number[] {
  const found: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(needle)) found.push(Number(name))
    } catch {}
  }
  return found
}

/** The monitor's resident (`--resident`, lib/run/resident.ts): the pulse keeps it running, so it is never work under way. */
export function isResident(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--resident')
  } catch {
    return false
  }
}

export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await Promise.resolve()
      .then(probe)
      .catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** The state document's outbox is empty and no worker process runs for this config. */
export async function waitIdle(stateDir: string, configPath: string, timeoutMs = 60_000): Promise<void> {
  await waitUntil(
    'the outbox to empty and the worker to exit',
    // The wake file exists while anything waits (outbox or a held decision), whether the record
    // is state.json or, with own agents configured, Consul's KV (lib/state/status-files.ts).
    () => (!existsSync(join(stateDir, 'wake')) && pidsWith(configPath).filter((p) => !isResident(p)).length === 0 ? true : undefined),
    timeoutMs,
  )
}

function tryRun(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return undefined
  }
}

export function machine() {
  const cpu = cpus()
  const pkg = (name: string) => tryRun('dpkg-query', ['-W', `-f=${'$'}{Version}`, name])
  return {
    cpuModel: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    kernel: release(),
    os: (() => {
      try {
        return /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? 'unknown'
      } catch {
        return 'unknown'
      }
    })(),
    consul: tryRun('consul', ['version'])?.split('\n')[0],
    masakariApi: pkg('masakari-api'),
    keystone: pkg('keystone'),
    upstreamHostMonitor: pkg('masakari-host-monitor'),
    commit: tryRun('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    dirty: (tryRun('git', ['-C', ROOT, 'status', '--porcelain', '--', 'lib', 'handlers', 'build.mjs']) ?? '') !== '',
  }
}
