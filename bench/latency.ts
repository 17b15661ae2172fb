/**
 * Section 1, detection latency on the real stack: a compute's storage agent is frozen (its
 * storage link is "cut"); we record when Consul turned its serfHealth critical (the floor: no
 * monitor can know earlier), when our handler decided, and when Masakari's 202 for the STOPPED
 * came back. Thawed, and its STARTED waited for, between trials. Then the same faults under the
 * upstream Python monitor (interval 1 s, then its default 60 s), then ours again with the
 * fast-detection gossip profile (consul-config/gossip-fast.json on every agent).
 *
 * On each of the two stacks, a lone failure is also measured as an operator runs the monitor:
 * the example config's guards (rate limit lifted) and its own agents asked before each STOPPED;
 * with `compareDist`, the same trials alternate with an older build's handler on the same
 * clusters, so the cost of what changed in between is measured under the same drift.
 */
import { execFileSync } from 'node:child_process'
import { spawn } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { NETWORKS, NOT_IN_AGENTS_ENV, startConsulStack, type ConsulStack } from '../stack/consul.js'
import type { OpenStack } from '../stack/openstack.js'
import { type Clocks, startProbe, startStoreClock } from './clocks.js'
import { HANDLER, readLog, waitIdle, waitUntil, writeMonitorConfig } from './common.js'
import { ROOT, sleep } from './proc.js'
import { round, summarize, type Summary } from './stats.js'
import { startUpstream, UPSTREAM_BIN, upstreamConfig, type UpstreamMonitor } from './upstream.js'

export interface Trial {
  host: string
  /** Seconds from the fault to serfHealth critical (Consul's own detection: the floor). */
  serfS: number
  /** Seconds from the fault to our handler's decision line (ours only). */
  decidedS?: number
  /**
   * Seconds from the fault to the first run of an independent checks watch on the controller's
   * storage agent that saw the host critical: Consul's detection as the operator's tooling sees
   * it (bench/clocks.ts).
   */
  watchS?: number
  /** Seconds from the fault until masakari-api's database held the STOPPED (bench/clocks.ts). */
  storedS: number
  /** storedS - watchS (else - serfS): what the monitor adds to Consul's detection. */
  addedS: number
  /** Masakari's created_at (whole seconds) minus the fault, a cross-check of storedS. */
  createdAtS?: number
  /** Ours: the guards the decision log named while the STOPPED was held back (hold, burst, …). */
  guards?: string[]
  /** Ours: the STOPPED waited because the own agent said its gossip view was degraded. */
  degradedHold?: boolean
  /** Ours: what the agent's metrics showed when it said so. */
  degradedBy?: string[]
}

export interface LatencyMode {
  name: string
  monitor: 'ours' | 'upstream'
  gossip: 'default' | 'fast'
  /**
   * Ours: `off` = every guard that holds a recovery back on purpose off, no own agents (the
   * pipeline); `deployed` = the example config's guards (rate limit lifted) and the controller's
   * own agents asked before each STOPPED (a lone failure as an operator runs it).
   */
  guards?: 'off' | 'deployed'
  /** Ours: `current` = this checkout's dist/; `before` = the handler from --compare-dist. */
  build?: 'current' | 'before'
  /** Ours: the guards' hold time (s). */
  hold?: number
  /** The build's dist directory and git commit (`before` only). */
  dist?: string
  commit?: string
  note: string
  trials: Trial[]
  serfS: Summary
  storedS: Summary
  addedS: Summary
  decidedS?: Summary
  /** Consul's detection as the probe watch saw it (bench/clocks.ts). */
  watchS?: Summary
}

// Nine computes: in the upstream 60 s trials up to four are frozen at once, and fewer live
// members slow memberlist's detection of the next one.
export const computes = ['cmp1', 'cmp2', 'cmp3', 'cmp4', 'cmp5', 'cmp6', 'cmp7', 'cmp8', 'cmp9']

/** The hosts of n trials in turn: the first five computes, so the other four keep the clusters' size. */
export const victims = (n: number): string[] => Array.from({ length: n }, (_, i) => computes[i % 5]!)

const segments = new WeakMap<OpenStack, Promise<void>>()

/**
 * The computes as Masakari hosts, in one failover segment per Masakari: the latency and versus
 * sections both use them, and Masakari takes a host name once.
 */
export function latencySegment(openstack: OpenStack): Promise<void> {
  let made = segments.get(openstack)
  if (!made) {
    made = openstack.createSegment('bench-latency').then(async (segment) => {
      for (const c of computes) await openstack.addHost(segment, c)
    })
    segments.set(openstack, made)
  }
  return made
}

export function mode(
  name: string,
  monitor: LatencyMode['monitor'],
  gossip: LatencyMode['gossip'],
  note: string,
  trials: Trial[],
  extra: Pick<LatencyMode, 'guards' | 'build' | 'dist' | 'commit' | 'hold'> = {},
): LatencyMode {
  const decided = trials.map((t) => t.decidedS).filter((x): x is number => x !== undefined)
  const watched = trials.map((t) => t.watchS).filter((x): x is number => x !== undefined)
  return {
    name,
    monitor,
    gossip,
    ...extra,
    note,
    trials,
    serfS: summarize(trials.map((t) => t.serfS)),
    storedS: summarize(trials.map((t) => t.storedS)),
    addedS: summarize(trials.map((t) => t.addedS)),
    ...(decided.length > 0 ? { decidedS: summarize(decided) } : {}),
    ...(watched.length > 0 ? { watchS: summarize(watched) } : {}),
  }
}

export const GOSSIP_FAST = join(ROOT, 'consul-config', 'gossip-fast.json')

export interface Ours {
  /** The checks-handler bundle the watches run. */
  handler: string
  configPath: string
  stateDir: string
  logFile: string
  /**
   * The watches' XDG_RUNTIME_DIR (quiet notes and the full handler's V8 code cache,
   * lib/run/quiet-run.ts runtimeDir); unset: the agents' own, as deployed.
   */
  runtimeDir?: string
}

/** What the monitor's config says besides the state directory and Masakari. */
type Settings = Record<string, unknown>

export const EXAMPLE_CONFIG = join(ROOT, 'consul-config', 'monitor', 'config.yaml')
const WATCH_SH = join(ROOT, 'consul-config', 'watch.sh')

/**
 * A lone failure as an operator runs the monitor: the example config's guards and agent timeout
 * (hold 5 s, burst auto, isolation on), the rate limit lifted (else the trials stop after five),
 * and this stack's controller agents as the own agents, asked before each STOPPED. With
 * gossip-fast.json on the agents, the monitor is told the fast tuning too, as the example
 * config says.
 */
function deployedSettings(consul: ConsulStack, gossip: LatencyMode['gossip']): Settings {
  const example = parseYaml(readFileSync(EXAMPLE_CONFIG, 'utf8')) as {
    guards: Record<string, Record<string, unknown>>
    consul: { timeout: number; gossip: Record<string, number> }
  }
  return {
    guards: { ...example.guards, rateLimit: { ...example.guards.rateLimit, maxRecoveries: 0 } },
    consul: {
      timeout: example.consul.timeout,
      gossip: gossip === 'fast' ? { ...example.consul.gossip, probeInterval: 0.4, suspicionMult: 2 } : example.consul.gossip,
      agents: Object.fromEntries(NETWORKS.map((n) => [n, consul.httpAddr(consul.controller, n)])),
    },
  }
}

/**
 * deployedSettings with the guards' hold (recovery and back) at `hold` seconds; the example
 * config's (5 s) when undefined. `holdText` names it in the modes' names and notes.
 */
export function deployedAtHold(
  consul: ConsulStack,
  gossip: LatencyMode['gossip'],
  hold: number | undefined,
): { settings: Settings; holdText: string } {
  const deployed = deployedSettings(consul, gossip)
  const guards = deployed.guards as Record<string, unknown>
  const settings = hold === undefined ? deployed : { ...deployed, guards: { ...guards, hold: { recovery: hold, back: hold } } }
  return { settings, holdText: hold === undefined ? 'hold 5 s' : `hold ${hold} s` }
}

export function oursConfig(dir: string, openstack: OpenStack, settings: Settings, handler = HANDLER): Ours {
  const stateDir = join(dir, 'state')
  const configPath = writeMonitorConfig(join(dir, 'monitor'), {
    stateDir,
    ...settings,
    masakari: {
      authUrl: openstack.authUrl,
      auth: {
        username: openstack.monitor.username,
        userDomainName: 'Default',
        password: openstack.monitor.password,
        projectName: 'service',
        projectDomainName: 'Default',
      },
      region: openstack.region,
      delivery: { initialBackoff: 0.5, maxBackoff: 2, expiry: 120 },
    },
  })
  return { handler, configPath, stateDir, logFile: join(stateDir, 'decisions.log') }
}

export async function enableOurs(consul: ConsulStack, ours: Ours, log: (m: string) => void): Promise<void> {
  const since = new Date().toISOString()
  // Enabled again with the same view, its first run would be quiet (nothing new since it last
  // ran) and write no snapshot to wait for: forget what it saw, as a full run would.
  for (const network of NETWORKS) rmSync(join(ours.stateDir, 'snapshots', `${network}.seen`), { force: true })
  for (const network of NETWORKS) {
    // As deployed: this checkout's watches run through watch.sh (consul-config/watches/); an
    // older build's (--compare-dist) ran the handler directly, as it was deployed then.
    const direct = [process.execPath, ours.handler, '--network', network, '--config', ours.configPath]
    const deployed = ['/bin/sh', WATCH_SH, network, ours.configPath, ours.stateDir, ours.handler, process.execPath]
    // Consul's watch takes no environment of its own: env(1) sets the runtime directory and execs the rest.
    const env = ours.runtimeDir ? ['/usr/bin/env', `XDG_RUNTIME_DIR=${ours.runtimeDir}`] : []
    consul.writeControllerConfig(network, 'watch-masakari-consul.json', {
      watches: [{ type: 'checks', args: [...env, ...(ours.handler === HANDLER ? deployed : direct)] }],
    })
    await consul.reloadController(network)
  }
  // The watch fires once when loaded: every node up in every snapshot written since (a monitor
  // enabled again keeps its older snapshots).
  await waitUntil(
    'our first snapshots',
    () => {
      for (const network of NETWORKS) {
        const snap = JSON.parse(readFileSync(join(ours.stateDir, 'snapshots', `${network}.json`), 'utf8')) as {
          receivedAt: string
          nodes: Record<string, string>
        }
        if (snap.receivedAt < since || !computes.every((c) => snap.nodes[c] === 'up')) return undefined
      }
      return true
    },
    60_000,
    100,
  )
  log(`latency: our watches are loaded (${ours.handler})`)
  // As the pulse keeps it (consul-config/pulse.sh): this checkout's resident, with the agents' environment.
  if (ours.handler === HANDLER) await startResident(ours)
}
export async function disableOurs(consul: ConsulStack, ours: Ours): Promise<void> {
  await stopResident(ours)
  for (const network of NETWORKS) {
    rmSync(join(consul.configDir(consul.controller, network), 'watch-masakari-consul.json'), { force: true })
    await consul.reloadController(network)
  }
  await waitIdle(ours.stateDir, ours.configPath)
}

/** The pid in the resident's heartbeat note (lib/run/resident.ts), if its process is alive. */
function residentPid(ours: Ours): number | undefined {
  try {
    const pid = Number(readFileSync(join(ours.stateDir, 'resident'), 'utf8').split('\n', 1)[0])
    process.kill(pid, 0)
    return pid
  } catch {
    return undefined
  }
}

/**
 * Starts the resident as pulse.sh does (detached, the agents' environment: no NODE_EXTRA_CA_CERTS)
 * and waits until it has answered each network once (its index notes): ready as an install is
 * within a pulse of its start.
 */
async function startResident(ours: Ours): Promise<void> {
  const env = { ...process.env, ...NOT_IN_AGENTS_ENV, ...(ours.runtimeDir ? { XDG_RUNTIME_DIR: ours.runtimeDir } : {}) }
  const stderr = openSync(join(ours.stateDir, 'resident.stderr'), 'w')
  const child = spawn(process.execPath, [ours.handler, '--resident', '--config', ours.configPath], {
    env,
    detached: true,
    stdio: ['ignore', 'ignore', stderr],
  })
  closeSync(stderr)
  child.unref()
  await waitUntil(
    'the resident ready (its first answers handled)',
    () => (residentPid(ours) === child.pid && NETWORKS.every((n) => existsSync(join(ours.stateDir, `resident-${n}`))) ? true : undefined),
    30_000,
    100,
  )
}

/** SIGTERM, as systemd stops it with the agent: it finishes a run under way and removes its notes. */
async function stopResident(ours: Ours): Promise<void> {
  const pid = residentPid(ours)
  if (pid === undefined) return
  process.kill(pid, 'SIGTERM')
  await waitUntil('the resident to end', () => (residentPid(ours) === undefined ? true : undefined), 30_000, 100)
}

function lineAfter(ours: Ours, after: number, match: (l: Record<string, unknown>) => boolean): number | undefined {
  const line = readLog(ours.logFile).find((l) => Date.parse(l.time) >= after && match(l))
  return line ? Date.parse(line.time) : undefined
}

async function createdAt(openstack: OpenStack, host: string, event: string, after: number): Promise<number | undefined> {
  const list = await openstack.listNotifications()
  const n = list.find(
    (x) => x.hostname === host && x.payload?.event === event && Date.parse(`${x.created_at}Z`) >= Math.floor(after / 1000) * 1000,
  )
  return n ? Date.parse(`${n.created_at}Z`) : undefined
}

/** One of our trials, not frozen before `notBefore` (ms); also says when the host was thawed. */
export async function timedOursTrial(
  consul: ConsulStack,
  openstack: OpenStack,
  ours: Ours,
  host: string,
  notBefore: number,
  clocks: Clocks,
): Promise<{ trial: Trial; thawedAt: number }> {
  await waitIdle(ours.stateDir, ours.configPath)
  await sleep(Math.max(500, notBefore - Date.now()))
  const t0 = Date.now()
  consul.freeze(host, 'storage')
  const serfMs = await consul.waitForSerf(host, 'storage', 'critical', 60_000)
  const decided = await waitUntil(
    `our STOPPED decision for ${host}`,
    () => lineAfter(ours, t0, (l) => l.msg === 'decision' && l.host === host && l.action === 'STOPPED'),
    // a hold time, and a degraded gossip view (10 s at a time), delay it on purpose
    90_000,
  )
  await waitUntil(
    `Masakari's 202 for ${host}'s STOPPED`,
    () => lineAfter(ours, t0, (l) => l.msg === 'notification accepted by Masakari' && l.host === host && l.event === 'STOPPED'),
    30_000,
  )
  const stored = await waitUntil(`${host}'s STOPPED in Masakari's database`, () => clocks.store.storedAt(host, 'STOPPED', t0), 10_000)
  const created = await createdAt(openstack, host, 'STOPPED', t0)
  const watch = clocks.probe.firstCritical(host, t0)
  const t1 = Date.now()
  consul.thaw(host, 'storage')
  await waitUntil(
    `Masakari's 202 for ${host}'s STARTED`,
    () => lineAfter(ours, t1, (l) => l.msg === 'notification accepted by Masakari' && l.host === host && l.event === 'STARTED'),
    60_000,
  )
  // What held the STOPPED back, as the decision log says it.
  const held = readLog(ours.logFile).filter((l) => {
    const at = Date.parse(l.time)
    return at >= t0 && at <= decided && l.msg === 'decision' && l.host === host && typeof l.guard === 'string'
  })
  const degraded = held.flatMap((l) => /gossip view is degraded \((.*?)\): failures/.exec(String(l.reason))?.[1] ?? [])
  return {
    trial: {
      ...trial(host, t0, serfMs, stored, decided, created, watch),
      guards: [...new Set(held.map((l) => l.guard as string))],
      degradedHold: degraded.length > 0,
      ...(degraded.length > 0 ? { degradedBy: [...new Set(degraded)] } : {}),
    },
    thawedAt: t1,
  }
}

/**
 * A lone failure means a calm cluster before it: by default no trial is frozen within 20 s of
 * the previous thaw. An agent's /v1/agent/metrics shows its last finished 10 s interval, so
 * nothing the previous trial's fault and rejoin left there (a health score, an unconfirmed
 * death) can be what the next STOPPED reads (≥ 20 s + detection + hold later). It is a
 * precaution: the degraded-view holds seen in our back-to-back runs (`--lone-settle 0`) came
 * from the trial's own failure (bench/README.md).
 */
export const LONE_SETTLE_S = 20

/**
 * A lone failure as deployed (`deployedSettings`), `trials` times on this stack; with a
 * `before` build, each trial alternates with one on the same host under that build (ABBA
 * order, so neither build always goes first), one monitor's watches loaded at a time.
 */
async function loneFailureTrials(
  consul: ConsulStack,
  openstack: OpenStack,
  dir: string,
  gossip: LatencyMode['gossip'],
  hosts: string[],
  before: { dist: string; commit: string } | undefined,
  settleS: number,
  log: (m: string) => void,
  clocks: Clocks,
  /** Guards' hold (recovery and back), seconds: the example config's (5 s) when undefined. */
  hold?: number,
): Promise<LatencyMode[]> {
  const { settings, holdText } = deployedAtHold(consul, gossip, hold)
  const builds = [
    { build: 'current' as const, ours: oursConfig(join(dir, 'current'), openstack, settings), trials: [] as Trial[] },
    ...(before
      ? [
          {
            build: 'before' as const,
            ours: oursConfig(join(dir, 'before'), openstack, settings, join(before.dist, 'checks-handler.js')),
            trials: [] as Trial[],
          },
        ]
      : []),
  ]
  let active: Ours | undefined
  let notBefore = Date.now() + settleS * 1000
  for (const [i, host] of hosts.entries()) {
    const order = i % 2 === 0 ? builds : [...builds].reverse()
    for (const b of order) {
      if (active !== b.ours) {
        if (active) await disableOurs(consul, active)
        await enableOurs(consul, b.ours, log)
        active = b.ours
      }
      const { trial, thawedAt } = await timedOursTrial(consul, openstack, b.ours, host, notBefore, clocks)
      b.trials.push(trial)
      notBefore = thawedAt + settleS * 1000
      log(`latency: ours as deployed (${b.build}, ${holdText}), ${gossip} gossip, ${host}: ${JSON.stringify(b.trials.at(-1))}`)
    }
  }
  if (active) await disableOurs(consul, active)
  const profile = gossip === 'fast' ? 'gossip-fast.json' : 'Consul default gossip'
  const note =
    `lone failure (frozen ≥ ${settleS} s after the previous thaw); example config guards (${holdText}, burst auto, isolation on), rate limit lifted; own agents = the controller agents` +
    (gossip === 'fast' ? '; consul.gossip probeInterval 0.4, suspicionMult 2' : '')
  return builds.map((b) =>
    b.build === 'current'
      ? mode(`masakari-consul, as deployed, ${holdText}, ${profile}`, 'ours', gossip, note, b.trials, {
          guards: 'deployed',
          build: 'current',
          hold: hold ?? 5,
        })
      : mode(`masakari-consul ${before!.commit} (--compare-dist), as deployed, ${holdText}, ${profile}`, 'ours', gossip, note, b.trials, {
          guards: 'deployed',
          build: 'before',
          hold: hold ?? 5,
          dist: before!.dist,
          commit: before!.commit,
        }),
  )
}

/** The git commit a dist/ directory was built from (its checkout's HEAD). */
export function distCommit(dist: string): string {
  try {
    return execFileSync('git', ['-C', dirname(dist), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
  } catch {
    return 'unknown commit'
  }
}

function trial(host: string, t0: number, serfMs: number, stored: number, decided?: number, created?: number, watch?: number): Trial {
  const serfS = round(serfMs / 1000)
  const storedS = round((stored - t0) / 1000)
  const watchS = watch === undefined ? undefined : round((watch - t0) / 1000)
  return {
    host,
    serfS,
    ...(watchS === undefined ? {} : { watchS }),
    ...(decided === undefined ? {} : { decidedS: round((decided - t0) / 1000) }),
    storedS,
    addedS: round(storedS - (watchS ?? serfS)),
    ...(created === undefined ? {} : { createdAtS: round((created - t0) / 1000) }),
  }
}

/** One trial under upstream, not frozen before `notBefore` (ms); also says when the host was thawed. */
export async function upstreamTrial(
  consul: ConsulStack,
  openstack: OpenStack,
  up: UpstreamMonitor,
  host: string,
  clocks: Clocks,
  notBefore = 0,
): Promise<{ trial: Trial; thawedAt: number }> {
  await sleep(Math.max(500, notBefore - Date.now()))
  const t0 = Date.now()
  consul.freeze(host, 'storage')
  const serfMs = await consul.waitForSerf(host, 'storage', 'critical', 60_000)
  await waitUntil(`upstream's STOPPED for ${host}`, () => up.answered(host, 'STOPPED', t0), 150_000, 100)
  const stored = await waitUntil(`${host}'s STOPPED in Masakari's database`, () => clocks.store.storedAt(host, 'STOPPED', t0), 10_000)
  const created = await createdAt(openstack, host, 'STOPPED', t0)
  const watch = clocks.probe.firstCritical(host, t0)
  const t1 = Date.now()
  consul.thaw(host, 'storage')
  await waitUntil(`upstream's STARTED for ${host}`, () => up.answered(host, 'STARTED', t1), 150_000, 100)
  return { trial: trial(host, t0, serfMs, stored, undefined, created, watch), thawedAt: t1 }
}

/**
 * Upstream at its default 60 s interval: one trial per host, the faults spread evenly over one
 * polling period (at (i + 0.5) × 60 / n s after a poll), so the trials sample the poll phase
 * the way faults at random moments would, in ~3 minutes instead of ~2 per trial.
 */
async function upstreamSpreadTrials(
  consul: ConsulStack,
  openstack: OpenStack,
  up: UpstreamMonitor,
  hosts: string[],
  periodS: number,
  log: (m: string) => void,
): Promise<Trial[]> {
  const poll = up.polls().at(-1)!
  const plan = hosts.map((host, i) => ({ host, at: poll + ((i + 0.5) * periodS * 1000) / hosts.length }))
  const results = await Promise.all(
    plan.map(async ({ host, at }) => {
      await sleep(Math.max(0, at - Date.now()))
      const t0 = Date.now()
      consul.freeze(host, 'storage')
      const serfMs = await consul.waitForSerf(host, 'storage', 'critical', 60_000)
      const stored = await waitUntil(`upstream's STOPPED for ${host}`, () => up.answered(host, 'STOPPED', t0), 3 * periodS * 1000, 100)
      log(
        `latency: upstream (interval ${periodS} s) ${host}: frozen ${((t0 - poll) / 1000).toFixed(1)} s after a poll, serf ${(serfMs / 1000).toFixed(1)} s, stored after ${((stored - t0) / 1000).toFixed(1)} s`,
      )
      return { host, t0, serfMs, stored }
    }),
  )
  const trials = []
  for (const r of results)
    trials.push(trial(r.host, r.t0, r.serfMs, r.stored, undefined, await createdAt(openstack, r.host, 'STOPPED', r.t0)))
  const t1 = Date.now()
  for (const host of hosts) consul.thaw(host, 'storage')
  for (const host of hosts)
    await waitUntil(`upstream's STARTED for ${host}`, () => up.answered(host, 'STARTED', t1), 3 * periodS * 1000, 200)
  return trials
}

/** Upstream at a 1 s poll (and, with `upstreamDefault`, at its default 60 s) on the same stack. */
async function upstreamModes(
  consul: ConsulStack,
  openstack: OpenStack,
  clocks: Clocks,
  opts: { dir: string; trials: number; upstreamDefault?: boolean },
  log: (m: string) => void,
): Promise<LatencyMode[]> {
  if (!existsSync(UPSTREAM_BIN)) throw new Error(`masakari-host-monitor is not installed (bench/setup-upstream.sh): no ${UPSTREAM_BIN}`)
  const upDir = join(opts.dir, 'upstream')
  mkdirSync(upDir, { recursive: true })
  const modes: LatencyMode[] = []
  const up = await startUpstream(upstreamConfig(upDir, consul, openstack, 1), join(upDir, 'hostmonitor-interval-1.log'))
  try {
    const t: Trial[] = []
    for (const host of victims(opts.trials)) {
      t.push((await upstreamTrial(consul, openstack, up, host, clocks)).trial)
      log(`latency: upstream, interval 1 s, ${host}: ${JSON.stringify(t.at(-1))}`)
    }
    modes.push(
      mode('upstream masakari-hostmonitor 14.0.0, monitoring_interval = 1', 'upstream', 'default', 'polls agent.members() every 1 s', t),
    )
  } finally {
    await up.stop()
  }
  if (!opts.upstreamDefault) return modes
  const slow = await startUpstream(upstreamConfig(upDir, consul, openstack, undefined), join(upDir, 'hostmonitor-default.log'))
  try {
    const t = await upstreamSpreadTrials(consul, openstack, slow, victims(Math.min(opts.trials, 5)), 60, log)
    modes.push(
      mode(
        'upstream masakari-hostmonitor 14.0.0, defaults (monitoring_interval 60)',
        'upstream',
        'default',
        'faults spread evenly over one 60 s polling period, one host each',
        t,
      ),
    )
  } finally {
    await slow.stop()
  }
  return modes
}

export async function detectionLatency(opts: {
  openstack: OpenStack
  dir: string
  trials: number
  /** Trials of each lone-failure-as-deployed mode (and of its `before` build). */
  loneTrials: number
  /** Seconds from a lone-failure trial's thaw to the next freeze (LONE_SETTLE_S). */
  loneSettleS: number
  octet: number
  upstream: boolean
  /** Also upstream at its default 60 s poll (≈ 4 min more). */
  upstreamDefault?: boolean
  /** An older build's dist/ directory: the lone-failure modes run it too, alternating. */
  compareDist?: string
  log: (m: string) => void
}): Promise<LatencyMode[]> {
  const { openstack, log } = opts
  if (opts.compareDist && !existsSync(join(opts.compareDist, 'checks-handler.js')))
    throw new Error(`--compare-dist ${opts.compareDist}: no checks-handler.js there (build it first)`)
  const before = opts.compareDist ? { dist: opts.compareDist, commit: distCommit(opts.compareDist) } : undefined
  await latencySegment(openstack)
  const modes: LatencyMode[] = []
  const store = startStoreClock(openstack)
  const lone = (consul: ConsulStack, clocks: Clocks, gossip: LatencyMode['gossip'], hold: number | undefined) =>
    loneFailureTrials(
      consul,
      openstack,
      join(opts.dir, `lone-${gossip}-hold-${hold ?? 'default'}`),
      gossip,
      victims(opts.loneTrials),
      before,
      opts.loneSettleS,
      log,
      clocks,
      hold,
    )
  try {
    // --- default gossip: ours at hold 0, upstream at 1 s (and 60 s), ours at the default hold
    let consul = await startConsulStack({ dir: join(opts.dir, 'consul-default'), computes, octet: opts.octet, log: () => {} })
    try {
      const clocks = { probe: await startProbe(consul, join(opts.dir, 'probe-default')), store }
      modes.push(...(await lone(consul, clocks, 'default', 0)))
      if (opts.upstream) modes.push(...(await upstreamModes(consul, openstack, clocks, opts, log)))
      modes.push(...(await lone(consul, clocks, 'default', undefined)))
    } finally {
      await consul.stop()
    }

    // --- fast-detection gossip profile on every agent: ours at hold 0
    const fast = JSON.parse(readFileSync(GOSSIP_FAST, 'utf8')) as object
    consul = await startConsulStack({
      dir: join(opts.dir, 'consul-fast'),
      computes,
      octet: opts.octet + 3,
      extraConfig: fast,
      log: () => {},
    })
    try {
      const clocks = { probe: await startProbe(consul, join(opts.dir, 'probe-fast')), store }
      modes.push(...(await lone(consul, clocks, 'fast', 0)))
    } finally {
      await consul.stop()
    }
  } finally {
    store.stop()
  }
  return modes
}
