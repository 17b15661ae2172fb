/**
 * Section `idle` (issue #10): what the monitor costs when nothing happens. One controller (the
 * three servers) with ten computes (three clients each), the monitor as deployed (the three
 * watches and the pulse check of consul-config/watches/, the pulse at its deployed interval),
 * nothing failing. Consul runs the handlers and the pulse script as its own children and reaps
 * them, so their CPU (and that of what they ran and reaped: find, date, node) shows in the
 * controller agents' cutime + cstime (/proc/PID/stat) once they exit. A detached worker is not
 * counted there: the window is sampled every second for one (there should be none when idle).
 *
 * The pulse's deep look (`checks-handler.js --pulse`, when the health note is older than 30
 * minutes) is rarer than any practical window: it is measured on its own (five runs, the node
 * process's CPU from process.resourceUsage) and counted twice an hour.
 *
 * In the same window, on the same agents, the upstream driver (Debian's masakari-hostmonitor,
 * `monitoring_interval = 1`) runs too: its process's utime + stime (+ children) over the window.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { NETWORKS } from '../stack/consul.js'
import type { OpenStack } from '../stack/openstack.js'
import { DEPLOYED_WATCHES, HANDLER, type RealStack, startRealStack } from '../stack/real-stack.js'
import { isResident, pidsWith } from './common.js'
import { sleep, run } from './proc.js'
import { round, summarize, type Summary } from './stats.js'
import { startUpstream, upstreamConfig, type UpstreamMonitor } from './upstream.js'

export interface IdleResult {
  computes: number
  windowS: number
  pulseInterval: string
  ours: {
    /** CPU-s the controller agents' reaped children (handlers, pulse runs) and the resident used in the window */
    windowCpuS: number
    /** of which the resident (lib/run/resident.ts: not the agents' child once the pulse has started it), its pid and CPU-s */
    resident: { pids: number[]; cpuS: number }
    /** handler runs in the window ('evaluated' lines in the decision log) */
    handlerRuns: number
    /** each of them: its component and time */
    runComponents: string[]
    /** times the health note was rewritten in the window (a deep look or a handler run) */
    healthNoteWrites: number
    /** monitor processes seen alive outside the agents (detached workers), by pid */
    detachedWorkers: number[]
    /** one deep look's CPU (node --pulse), s */
    deepLookCpuS: Summary
    /** window rate × 3600 + two deep looks */
    perHourS: number
  }
  /** the controller agents' own CPU (gossip, RPC, answering both monitors) in the window */
  agentsOwnCpuS: number
  upstream?: { windowCpuS: number; perHourS: number; polls: number }
  /** ours / upstream, per hour */
  ratio?: number
}

const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
// Not the latency section's cmp1…: Masakari holds each host name once, in one segment.
const computes = Array.from({ length: 10 }, (_, i) => `idle${i + 1}`)

/** utime+stime and cutime+cstime of a process, seconds. */
function cpu(pid: number): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number)
  return { own: (f[11]! + f[12]!) / TICK, children: (f[13]! + f[14]!) / TICK }
}

/** The controller's three agents, whose reaped children are the monitor's cost. */
const controllerAgents = (stack: RealStack) => NETWORKS.map((n) => stack.consul.pid(stack.consul.controller, n)!)

const sum = (pids: number[], part: 'own' | 'children') => pids.reduce((a, p) => a + cpu(p)[part], 0)

/** One deep look's CPU, as the pulse starts it: `node checks-handler.js --pulse --config …`. */
async function deepLookCpu(configPath: string): Promise<Summary> {
  const ms: number[] = []
  for (let i = 0; i < 5; i++) {
    // As the agents start it (stack/consul.ts cleanEnv): without this shell's CA bundle for node.
    const r = await run(process.execPath, [HANDLER, '--pulse', '--config', configPath], {
      probe: true,
      env: { NODE_EXTRA_CA_CERTS: undefined },
    })
    if (r.code !== 0 || r.cpuMs === undefined) throw new Error(`--pulse exited ${r.code}: ${r.stderr.slice(0, 500)}`)
    ms.push(r.cpuMs / 1000)
  }
  return summarize(ms)
}

/** Waits until the catalog holds what the pulse reports now: the health note, passing. */
async function pulseOutputSynced(stack: RealStack, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const [status, reason] = readFileSync(join(stack.stateDir, 'health'), 'utf8').split('\n')
    const own = (await stack.consul.health('management')).find((c) => c.Node === stack.consul.controller && c.CheckID === 'masakari-consul')
    if (status === 'passing' && own?.Status === 'passing' && own.Output?.trim() === `${status}: ${reason}`) return
    if (Date.now() > deadline) throw new Error(`the pulse's output never reached the catalog: ${JSON.stringify(own)}`)
    await sleep(1000)
  }
}

/**
 * Waits until the agents' reaped children used no CPU for QUIET_S seconds in a row. The pulse's
 * output reaching the catalog is a change the management watch runs on: a window opened before
 * that run has ended counts it, as an hourly rate (one section run gave 6.37 CPU-s/h so, 1.05
 * without it).
 */
const QUIET_S = 5
async function agentsQuiet(agents: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = sum(agents, 'children')
  let quiet = 0
  while (quiet < QUIET_S) {
    if (Date.now() > deadline) throw new Error(`the agents' children kept using CPU for ${timeoutMs / 1000} s: not idle`)
    await sleep(1000)
    const now = sum(agents, 'children')
    quiet = now === last ? quiet + 1 : 0
    last = now
  }
}

/** Samples the window every second: detached workers of this monitor, health note rewrites. */
async function watchWindow(stack: RealStack, windowS: number): Promise<{ workers: number[]; noteWrites: number }> {
  const workers = new Set<number>()
  const mtimes = new Set<number>()
  const note = () => statSync(join(stack.stateDir, 'health')).mtimeMs
  const first = note()
  const end = Date.now() + windowS * 1000
  while (Date.now() < end) {
    for (const pid of pidsWith(stack.configPath)) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--worker')) workers.add(pid)
      } catch {}
    }
    mtimes.add(note())
    await sleep(Math.min(1000, Math.max(0, end - Date.now())))
  }
  mtimes.delete(first)
  return { workers: [...workers], noteWrites: mtimes.size }
}

async function measure(stack: RealStack, windowS: number, up: UpstreamMonitor | undefined) {
  const agents = controllerAgents(stack)
  const since = new Date().toISOString()
  const a0 = { own: sum(agents, 'own'), children: sum(agents, 'children') }
  const u0 = up ? cpu(up.pid) : undefined
  const polls0 = up?.polls().length ?? 0
  // The resident lives through the window: its own CPU (and its children's), from its /proc/PID/stat.
  const residents = pidsWith(stack.configPath).filter(isResident)
  if (residents.length !== 1) throw new Error(`expected the pulse's one resident before the window, found ${residents.length}`)
  const r0 = sum(residents, 'own') + sum(residents, 'children')
  const seen = await watchWindow(stack, windowS)
  const a1 = { own: sum(agents, 'own'), children: sum(agents, 'children') }
  const r1 = sum(residents, 'own') + sum(residents, 'children')
  const u1 = up ? cpu(up.pid) : undefined
  const evaluated = stack.logLines().filter((l) => l.msg === 'evaluated' && String(l.time) >= since)
  const runs = evaluated.length
  // Which runs (a watch's handler, a resync, a worker): an idle monitor should have none.
  const runComponents = evaluated.map((l) => `${String(l.component)} at ${String(l.time)}`)
  return {
    oursS: round(a1.children - a0.children + (r1 - r0)),
    resident: { pids: residents, cpuS: round(r1 - r0) },
    agentsOwnS: round(a1.own - a0.own),
    upstreamS: u0 && u1 ? round(u1.own + u1.children - u0.own - u0.children) : undefined,
    polls: (up?.polls().length ?? 0) - polls0,
    runs,
    runComponents,
    ...seen,
  }
}

export async function idleCost(opts: {
  openstack: OpenStack
  dir: string
  windowS: number
  octet: number
  upstream: boolean
  log: (m: string) => void
}): Promise<IdleResult> {
  const { log } = opts
  let stop: (() => Promise<number[]>) | undefined
  let up: UpstreamMonitor | undefined
  try {
    const stack = await startRealStack({
      computes,
      octet: opts.octet,
      pulse: 'deployed',
      sharedOpenStack: opts.openstack,
      teardown: (f) => {
        stop = f
      },
    })
    const pulse = JSON.parse(readFileSync(join(DEPLOYED_WATCHES, 'pulse.json'), 'utf8'))
    // Start-up is not idle: the watches' first runs, the first pulse's deep look, the lock taken,
    // and the pulse's first output reaching the catalog. Consul defers a check's output-only
    // change by check_update_interval / 2 + a random stagger of up to check_update_interval
    // (150–450 s with the default 5 minutes; a run once timed out at 400 s), and the management
    // watch runs when it lands: a window opened before would count that run once, as an hourly rate.
    await stack.waitForDelivery(60_000)
    await pulseOutputSynced(stack, 480_000)
    await agentsQuiet(controllerAgents(stack), 120_000)
    if (opts.upstream) {
      const dir = join(opts.dir, 'upstream')
      mkdirSync(dir, { recursive: true })
      up = await startUpstream(upstreamConfig(dir, stack.consul, opts.openstack, 1), join(dir, 'hostmonitor-interval-1.log'))
      await sleep(5_000) // its imports and first polls are start-up too
    }
    log(`idle: measuring ${opts.windowS} s${up ? ' (upstream at 1 s in the same window)' : ''}`)
    const m = await measure(stack, opts.windowS, up)
    const deep = await deepLookCpu(stack.configPath)
    const perHourS = round((m.oursS / opts.windowS) * 3600 + 2 * deep.median, 2)
    const upstream =
      m.upstreamS !== undefined
        ? { windowCpuS: m.upstreamS, perHourS: round((m.upstreamS / opts.windowS) * 3600, 2), polls: m.polls }
        : undefined
    return {
      computes: computes.length,
      windowS: opts.windowS,
      pulseInterval: String(pulse.check?.interval ?? '?'),
      ours: {
        windowCpuS: m.oursS,
        resident: m.resident,
        handlerRuns: m.runs,
        runComponents: m.runComponents,
        healthNoteWrites: m.noteWrites,
        detachedWorkers: m.workers,
        deepLookCpuS: deep,
        perHourS,
      },
      agentsOwnCpuS: m.agentsOwnS,
      ...(upstream ? { upstream, ratio: round(perHourS / upstream.perHourS) } : {}),
    }
  } finally {
    await up?.stop()
    const left = await stop?.()
    if (left?.length) log(`idle: processes left after stop: ${left.join(', ')}`)
  }
}
