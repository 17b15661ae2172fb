/**
 * Section `versus` (issue #22): ours and upstream at a 1 s poll alternating on one stack, and
 * the first failure after a fresh install of ours.
 *
 * Both monitors are timed as in the latency section (bench/latency.ts): added = the row in
 * masakari-api's database − the probe watch's first run that sees the host critical. Per host,
 * one trial of ours (as deployed, hold 0) and one of upstream back to back, which goes first
 * alternating (ABBA), so drift in the machine's load falls on both alike and each pair's
 * difference is measured under the same conditions. Masakari's duplicate check is off in the
 * bench, so only one monitor may be live at a time (both would store a STOPPED each): ours'
 * watches are removed while upstream runs, and upstream is stopped while ours runs.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { NOT_IN_AGENTS_ENV, startConsulStack, type ConsulStack } from '../stack/consul.js'
import { PULSE } from '../stack/real-stack.js'
import type { OpenStack } from '../stack/openstack.js'
import { type Clocks, startProbe, startStoreClock } from './clocks.js'
import {
  computes,
  deployedAtHold,
  disableOurs,
  enableOurs,
  type LatencyMode,
  latencySegment,
  mode,
  type Ours,
  oursConfig,
  timedOursTrial,
  type Trial,
  upstreamTrial,
  victims,
} from './latency.js'
import { run } from './proc.js'
import { round, summarize, type Summary } from './stats.js'
import { startUpstream, UPSTREAM_BIN, upstreamConfig, type UpstreamMonitor } from './upstream.js'

export interface VersusResult {
  /** Seconds from a trial's thaw to the next freeze, whichever monitor ran either. */
  settleS: number
  ours: LatencyMode
  /** Absent with --no-upstream: ours' trials then run in a row. */
  upstream?: LatencyMode
  /** Per host: ours' added − upstream's added, the two trials back to back on that host. */
  pairs?: { host: string; first: 'ours' | 'upstream'; diffS: number }[]
  pairDiffS?: Summary
  /** One trial per fresh install of ours: its first failure. */
  firstFailure: LatencyMode
  /** firstFailure's median added − ours' (alternating) median added. */
  firstVsOursS?: number
}

/** What every trial of the section runs on. */
interface Bed {
  consul: ConsulStack
  openstack: OpenStack
  clocks: Clocks
  dir: string
  settleS: number
  log: (m: string) => void
}

type Who = 'ours' | 'upstream'

/** Ours as deployed at hold 0, exactly as the latency section's lone-failure mode runs it. */
const HOLD = 0

/**
 * Makes `to` the live monitor. Upstream is paused (SIGSTOP of its process group, bench/upstream.ts)
 * rather than started per trial: a process started for each trial would make every upstream trial
 * its first one (Python's start and whatever its first notification sets up), while
 * ours keeps its state between trials; stopped, it provably takes no poll (resume() checks its
 * log for one) and has nothing in flight, since it is paused only after its trial's STARTED was
 * answered. On SIGCONT its sleep is over and it polls at once, seeing every host up as it left them.
 */
async function handOver(bed: Bed, from: Who | undefined, to: Who, ours: Ours, up: UpstreamMonitor | undefined): Promise<Who> {
  if (from === to) return to
  if (from === 'ours') await disableOurs(bed.consul, ours)
  if (from === 'upstream') await up!.pause()
  if (to === 'ours') await enableOurs(bed.consul, ours, bed.log)
  if (to === 'upstream') await up!.resume()
  return to
}

/**
 * A private runtime directory for an install of ours. The full handler's V8 code cache (and the
 * quiet notes) live in $XDG_RUNTIME_DIR/masakari-consul-<uid>, else $TMPDIR's (lib/run/embedded.ts
 * codeCache, lib/run/quiet-run.ts runtimeDir): outside the state directory, shared by every
 * monitor of this user on the machine. Each install gets its own (the watches run with
 * XDG_RUNTIME_DIR set by env(1)), so a fresh one starts with none, and no other run on the
 * machine (another build's removes this build's cache) touches the alternating one's.
 */
function withRuntimeDir(ours: Ours, dir: string): Ours {
  const runtimeDir = join(dir, 'runtime')
  mkdirSync(runtimeDir, { recursive: true, mode: 0o700 })
  return { ...ours, runtimeDir }
}

/** Per host, ours and upstream back to back, the first alternating; ours only without upstream. */
async function alternatingTrials(
  bed: Bed,
  hosts: string[],
  up: UpstreamMonitor | undefined,
): Promise<{ ours: Trial[]; upstream: Trial[]; firsts: Who[]; notBefore: number }> {
  const { consul, openstack, clocks, settleS, log } = bed
  const { settings, holdText } = deployedAtHold(consul, 'default', HOLD)
  const ours = withRuntimeDir(oursConfig(join(bed.dir, 'ours'), openstack, settings), join(bed.dir, 'ours'))
  const trials: Record<Who, Trial[]> = { ours: [], upstream: [] }
  const firsts: Who[] = []
  let live: Who | undefined = up ? 'upstream' : undefined // startUpstream left it polling
  let notBefore = Date.now() + settleS * 1000
  for (const [i, host] of hosts.entries()) {
    const order: Who[] = !up ? ['ours'] : i % 2 === 0 ? ['ours', 'upstream'] : ['upstream', 'ours']
    firsts.push(order[0]!)
    for (const who of order) {
      live = await handOver(bed, live, who, ours, up)
      const { trial, thawedAt } =
        who === 'ours'
          ? await timedOursTrial(consul, openstack, ours, host, notBefore, clocks)
          : await upstreamTrial(consul, openstack, up!, host, clocks, notBefore)
      trials[who].push(trial)
      notBefore = thawedAt + settleS * 1000
      log(`versus: ${who === 'ours' ? `ours as deployed (${holdText})` : 'upstream, interval 1 s'}, ${host}: ${JSON.stringify(trial)}`)
    }
  }
  if (live === 'ours') await disableOurs(consul, ours)
  return { ...trials, firsts, notBefore }
}

/**
 * A fresh install of ours: a new directory (config, state directory: no snapshot, record,
 * session, token or host list of an earlier run), its own runtime directory (no code cache),
 * and its own KV prefix for the sender lock and the shared record (consul.lock.prefix): with
 * own agents the record is in Consul KV, where an earlier install's would still be, and the
 * lock would be held by its session, which a run on the same node takes over.
 */
function freshInstall(bed: Bed, name: string, settings: Record<string, unknown>): Ours {
  const dir = join(bed.dir, name)
  rmSync(dir, { recursive: true, force: true })
  const consulSettings = settings.consul as Record<string, unknown>
  const fresh = { ...settings, consul: { ...consulSettings, lock: { prefix: `masakari-consul-bench-${name}/` } } }
  return withRuntimeDir(oursConfig(dir, bed.openstack, fresh), dir)
}

/**
 * Per trial a fresh install: its watches loaded (enableOurs waits for its first snapshots, every
 * host up: the runs an install makes, which also write its code cache, as a real install's
 * do), the settle gap from then (and from the previous thaw), then one host frozen: that first
 * failure is the trial. Unloaded after.
 */
async function firstFailureTrials(bed: Bed, hosts: string[], notBefore: number): Promise<Trial[]> {
  const { consul, openstack, clocks, settleS, log } = bed
  const { settings } = deployedAtHold(consul, 'default', HOLD)
  const trials: Trial[] = []
  for (const [i, host] of hosts.entries()) {
    const ours = freshInstall(bed, `first-${i + 1}`, settings)
    await enableOurs(consul, ours, log)
    await firstPulse(ours)
    const start = Math.max(notBefore, Date.now() + settleS * 1000)
    const { trial, thawedAt } = await timedOursTrial(consul, openstack, ours, host, start, clocks)
    await disableOurs(consul, ours)
    trials.push(trial)
    notBefore = thawedAt + settleS * 1000
    log(`versus: first failure after a fresh install (hold ${HOLD} s), ${host}: ${JSON.stringify(trial)}`)
  }
  return trials
}

/**
 * The install's first pulse (consul-config/pulse.sh), as the management agent runs it within
 * its 15 s interval of the check's registration: with no deep look yet (no `warmed` note), it
 * takes one, which gets the Keystone token and Masakari's host list ahead of the first failure.
 * The bench registers no pulse check (the stack's checks are the deployed monitor's): it runs the
 * script once itself, with the agents' environment, and the trial starts after it.
 */
async function firstPulse(ours: Ours): Promise<void> {
  const env = { ...NOT_IN_AGENTS_ENV, XDG_RUNTIME_DIR: ours.runtimeDir }
  const r = await run('/bin/sh', [PULSE, ours.configPath, ours.stateDir, ours.handler, process.execPath], { env })
  if (r.code !== 0 || !existsSync(join(ours.stateDir, 'warmed')))
    throw new Error(`the first pulse failed (exit ${r.code}): ${r.stdout} ${r.stderr}`)
}

/** The modes, the per-host differences and the first failure against ours' median. */
function versusResult(
  alt: { ours: Trial[]; upstream: Trial[]; firsts: Who[] },
  first: Trial[],
  settleS: number,
  upstream: boolean,
): VersusResult {
  const extra = { guards: 'deployed' as const, build: 'current' as const, hold: HOLD }
  const settle = `frozen ≥ ${settleS} s after the previous thaw`
  const ours = mode(
    `masakari-consul, as deployed, hold ${HOLD} s, Consul default gossip${upstream ? ', alternating with upstream' : ''}`,
    'ours',
    'default',
    `${settle}; example config guards (hold ${HOLD} s, burst auto, isolation on), rate limit lifted; own agents = the controller agents${upstream ? '; upstream SIGSTOPped meanwhile' : ''}`,
    alt.ours,
    extra,
  )
  const firstFailure = mode(
    `masakari-consul, first failure after a fresh install, hold ${HOLD} s, Consul default gossip`,
    'ours',
    'default',
    `${settle} and after the install's first runs; new config, state directory, runtime directory (no code cache) and KV prefix per trial`,
    first,
    extra,
  )
  const firstVsOursS = firstFailure.addedS.n > 0 && ours.addedS.n > 0 ? round(firstFailure.addedS.median - ours.addedS.median) : undefined
  const result: VersusResult = { settleS, ours, firstFailure, ...(firstVsOursS === undefined ? {} : { firstVsOursS }) }
  if (!upstream) return result
  const pairs = alt.upstream.map((u, i) => ({ host: u.host, first: alt.firsts[i]!, diffS: round(alt.ours[i]!.addedS - u.addedS) }))
  return {
    ...result,
    upstream: mode(
      'upstream masakari-hostmonitor 14.0.0, monitoring_interval = 1, alternating with ours',
      'upstream',
      'default',
      `${settle}; polls agent.members() every 1 s; ours' watches removed meanwhile`,
      alt.upstream,
    ),
    pairs,
    pairDiffS: summarize(pairs.map((p) => p.diffS)),
  }
}

export async function versusLatency(opts: {
  openstack: OpenStack
  dir: string
  /** Hosts of the alternating mode: one trial of each monitor per host. */
  trials: number
  /** Fresh installs of ours, one first failure each. */
  firstTrials: number
  /** Seconds from a thaw to the next freeze (LONE_SETTLE_S). */
  settleS: number
  octet: number
  upstream: boolean
  log: (m: string) => void
}): Promise<VersusResult> {
  const { openstack, log } = opts
  if (opts.upstream && !existsSync(UPSTREAM_BIN))
    throw new Error(`masakari-host-monitor is not installed (bench/setup-upstream.sh): no ${UPSTREAM_BIN}`)
  await latencySegment(openstack)
  const store = startStoreClock(openstack)
  try {
    const consul = await startConsulStack({ dir: join(opts.dir, 'consul'), computes, octet: opts.octet, log: () => {} })
    try {
      const clocks = { probe: await startProbe(consul, join(opts.dir, 'probe')), store }
      const bed: Bed = { consul, openstack, clocks, dir: opts.dir, settleS: opts.settleS, log }
      const upDir = join(opts.dir, 'upstream')
      mkdirSync(upDir, { recursive: true })
      const up =
        opts.upstream && opts.trials > 0
          ? await startUpstream(upstreamConfig(upDir, consul, openstack, 1), join(upDir, 'hostmonitor-interval-1.log'))
          : undefined
      let alt: Awaited<ReturnType<typeof alternatingTrials>>
      try {
        alt = await alternatingTrials(bed, victims(opts.trials), up)
      } finally {
        await up?.stop()
      }
      const first = await firstFailureTrials(bed, victims(opts.firstTrials), alt.notBefore)
      return versusResult(alt, first, opts.settleS, up !== undefined)
    } finally {
      await consul.stop()
    }
  } finally {
    store.stop()
  }
}
