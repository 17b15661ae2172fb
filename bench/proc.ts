/** Running a child process and measuring it: wall time from spawn to exit, peak RSS, CPU. */
import { spawn } from 'node:child_process'
import { closeSync, createReadStream, openSync, readFileSync, rmSync } from 'node:fs'
import { basename, join } from 'node:path'

/** bench/, whether this runs bundled (bench/out/bench.js) or not. */
export const BENCH_DIR = basename(import.meta.dirname) === 'out' ? join(import.meta.dirname, '..') : import.meta.dirname
export const ROOT = join(BENCH_DIR, '..')
export const RSS_PROBE = join(BENCH_DIR, 'rss-probe.mjs')
export const FLOOR = join(BENCH_DIR, 'floor.mjs')

export interface RunResult {
  ms: number
  code: number | null
  stderr: string
  stdout: string
  /** From rss-probe.mjs, when `probe` was asked for. */
  maxRssKb?: number
  cpuMs?: number
}

export interface RunOptions {
  /** A file fed as stdin (opened as a file descriptor: no pipe copy through this process). */
  stdinFile?: string
  /** A file written into the child's stdin through a pipe, as Consul feeds a watch handler. */
  pipeFile?: string
  env?: Record<string, string | undefined>
  cwd?: string
  /** Load rss-probe.mjs into the child (node children only) to learn its peak RSS. */
  probe?: boolean
  probeFile?: string
  timeoutMs?: number
}

export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const stdinFd = opts.stdinFile ? openSync(opts.stdinFile, 'r') : 'ignore'
  const probeFile = opts.probe ? (opts.probeFile ?? join(ROOT, 'bench', 'out', `rss-${process.pid}.jsonl`)) : undefined
  if (probeFile) rmSync(probeFile, { force: true })
  const fullArgs = opts.probe ? ['--import', RSS_PROBE, ...args] : args
  const env = { ...process.env, ...opts.env, ...(probeFile ? { BENCH_RSS_FILE: probeFile } : {}) }
  const t0 = performance.now()
  const child = spawn(cmd, fullArgs, { cwd: opts.cwd ?? ROOT, env, stdio: [opts.pipeFile ? 'pipe' : stdinFd, 'pipe', 'pipe'] })
  if (typeof stdinFd === 'number') closeSync(stdinFd)
  if (opts.pipeFile) {
    child.stdin!.on('error', () => {}) // the child may exit without reading it all
    createReadStream(opts.pipeFile, { highWaterMark: 1 << 20 }).pipe(child.stdin!)
  }
  let stderr = ''
  let stdout = ''
  child.stdout!.on('data', (d) => (stdout += d))
  child.stderr!.on('data', (d) => (stderr += d))
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('exit', (c) => resolve(c))
  })
  const ms = performance.now() - t0
  clearTimeout(timer)
  const result: RunResult = { ms, code, stderr, stdout }
  if (probeFile) {
    try {
      const line = readFileSync(probeFile, 'utf8').trim().split('\n').at(-1)!
      const p = JSON.parse(line) as { maxRssKb: number; userUs: number; systemUs: number }
      result.maxRssKb = p.maxRssKb
      result.cpuMs = (p.userUs + p.systemUs) / 1000
    } catch {
      /* the child died before its exit hook */
    }
  }
  return result
}

/** run(), failing loudly on a non-zero exit. */
export async function runOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.slice(0, 2000)}`)
  return r
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
