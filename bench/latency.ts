/**
 * Section 1, detection latency on the real stack: a compute's storage agent is frozen (its
 * storage link is "cut"); we record when Consul turned its serfHealth critical (the floor: no
 * monitor can know earlier), when our handler decided, and when Masakari's 202 for the STOPPED
 * came back. Thawed, and its STARTED waited for, between trials. Then the same faults under the
 * upstream Python monitor (interval 1 s, then its default 60 s), then ours again with the
 * fast-detection gossip profile (consul-config/gossip-fast.json on every agent).
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { NETWORKS, startConsulStack, type ConsulStack } from '../stack/consul.js'
import type { OpenStack } from '../stack/openstack.js'
import { GUARDS_OFF, HANDLER, readLog, waitIdle, waitUntil, writeMonitorConfig } from './common.js'
import { ROOT, sleep } from './proc.js'
import { round, summarize, type Summary } from './stats.js'
import { startUpstream, upstreamConfig, type UpstreamMonitor } from './upstream.js'

export interface Trial {
  host: string
  /** Seconds from the fault to serfHealth critical (Consul's own detection: the floor). */
  serfS: number
  /** Seconds from the fault to our handler's decision line (ours only). */
  decidedS?: number
  /** Seconds from the fault until the monitor had Masakari's 202 for the STOPPED. */
  storedS: number
  /** storedS - serfS: what the monitor adds to Consul's detection. */
  addedS: number
  /** Masakari's created_at (whole seconds) minus the fault, a cross-check of storedS. */
  createdAtS?: number
}

export interface LatencyMode {
  name: string
  monitor: 'ours' | 'upstream'
  gossip: 'default' | 'fast'
  note: string
  trials: Trial[]
  serfS: Summary
  storedS: Summary
  addedS: Summary
  decidedS?: Summary
}

// Nine computes: in the upstream 60 s trials up to four are frozen at once, and fewer live
// members slow memberlist's detection of the next one.
const computes = ['cmp1', 'cmp2', 'cmp3', 'cmp4', 'cmp5', 'cmp6', 'cmp7', 'cmp8', 'cmp9']

function mode(name: string, monitor: LatencyMode['monitor'], gossip: LatencyMode['gossip'], note: string, trials: Trial[]): LatencyMode {
  const decided = trials.map((t) => t.decidedS).filter((x): x is number => x !== undefined)
  return {
    name,
    monitor,
    gossip,
    note,
    trials,
    serfS: summarize(trials.map((t) => t.serfS)),
    storedS: summarize(trials.map((t) => t.storedS)),
    addedS: summarize(trials.map((t) => t.addedS)),
    ...(decided.length > 0 ? { decidedS: summarize(decided) } : {}),
  }
}

export const GOSSIP_FAST = join(ROOT, 'consul-config', 'gossip-fast.json')

interface Ours {
  configPath: string
  stateDir: string
  logFile: string
}

function oursConfig(dir: string, openstack: OpenStack): Ours {
  const stateDir = join(dir, 'state')
  const configPath = writeMonitorConfig(join(dir, 'monitor'), {
    stateDir,
    // The hold time delays a STOPPED on purpose (flap suppression, 5 s by default): off, to
    // measure the pipeline itself; the rate limit would stop the trials after five.
    guards: GUARDS_OFF,
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
  return { configPath, stateDir, logFile: join(stateDir, 'decisions.log') }
}

async function enableOurs(consul: ConsulStack, ours: Ours, log: (m: string) => void): Promise<void> {
  for (const network of NETWORKS) {
    consul.writeControllerConfig(network, 'watch-masakari-consul.json', {
      watches: [{ type: 'checks', args: [process.execPath, HANDLER, '--network', network, '--config', ours.configPath] }],
    })
    await consul.reloadController(network)
  }
  // The watch fires once when loaded: every node up in every snapshot.
  await waitUntil(
    'our first snapshots',
    () => {
      for (const network of NETWORKS) {
        const snap = JSON.parse(readFileSync(join(ours.stateDir, 'snapshots', `${network}.json`), 'utf8')) as {
          nodes: Record<string, string>
        }
        if (!computes.every((c) => snap.nodes[c] === 'up')) return undefined
      }
      return true
    },
    60_000,
    100,
  )
  log('latency: our watches are loaded')
}

async function disableOurs(consul: ConsulStack, ours: Ours): Promise<void> {
  for (const network of NETWORKS) {
    rmSync(join(consul.configDir(consul.controller, network), 'watch-masakari-consul.json'), { force: true })
    await consul.reloadController(network)
  }
  await waitIdle(ours.stateDir, ours.configPath)
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

async function oursTrial(consul: ConsulStack, openstack: OpenStack, ours: Ours, host: string): Promise<Trial> {
  await waitIdle(ours.stateDir, ours.configPath)
  await sleep(500)
  const t0 = Date.now()
  consul.freeze(host, 'storage')
  const serfMs = await consul.waitForSerf(host, 'storage', 'critical', 60_000)
  const decided = await waitUntil(
    `our STOPPED decision for ${host}`,
    () => lineAfter(ours, t0, (l) => l.msg === 'decision' && l.host === host && l.action === 'STOPPED'),
    30_000,
  )
  const stored = await waitUntil(
    `Masakari's 202 for ${host}'s STOPPED`,
    () => lineAfter(ours, t0, (l) => l.msg === 'notification accepted by Masakari' && l.host === host && l.event === 'STOPPED'),
    30_000,
  )
  const created = await createdAt(openstack, host, 'STOPPED', t0)
  const t1 = Date.now()
  consul.thaw(host, 'storage')
  await waitUntil(
    `Masakari's 202 for ${host}'s STARTED`,
    () => lineAfter(ours, t1, (l) => l.msg === 'notification accepted by Masakari' && l.host === host && l.event === 'STARTED'),
    60_000,
  )
  return trial(host, t0, serfMs, stored, decided, created)
}

function trial(host: string, t0: number, serfMs: number, stored: number, decided?: number, created?: number): Trial {
  const serfS = round(serfMs / 1000)
  const storedS = round((stored - t0) / 1000)
  return {
    host,
    serfS,
    ...(decided === undefined ? {} : { decidedS: round((decided - t0) / 1000) }),
    storedS,
    addedS: round(storedS - serfS),
    ...(created === undefined ? {} : { createdAtS: round((created - t0) / 1000) }),
  }
}

async function upstreamTrial(consul: ConsulStack, openstack: OpenStack, up: UpstreamMonitor, host: string): Promise<Trial> {
  await sleep(500)
  const t0 = Date.now()
  consul.freeze(host, 'storage')
  const serfMs = await consul.waitForSerf(host, 'storage', 'critical', 60_000)
  const stored = await waitUntil(`upstream's STOPPED for ${host}`, () => up.answered(host, 'STOPPED', t0), 150_000, 100)
  const created = await createdAt(openstack, host, 'STOPPED', t0)
  const t1 = Date.now()
  consul.thaw(host, 'storage')
  await waitUntil(`upstream's STARTED for ${host}`, () => up.answered(host, 'STARTED', t1), 150_000, 100)
  return trial(host, t0, serfMs, stored, undefined, created)
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

export async function detectionLatency(opts: {
  openstack: OpenStack
  dir: string
  trials: number
  octet: number
  upstream: boolean
  log: (m: string) => void
}): Promise<LatencyMode[]> {
  const { openstack, log } = opts
  const segment = await openstack.createSegment('bench-latency')
  for (const c of computes) await openstack.addHost(segment, c)
  const modes: LatencyMode[] = []
  const victims = (n: number) => Array.from({ length: n }, (_, i) => computes[i % 5]!)

  // --- default gossip: ours, then upstream at 1 s and at 60 s
  let consul = await startConsulStack({ dir: join(opts.dir, 'consul-default'), computes, octet: opts.octet, log: () => {} })
  try {
    const ours = oursConfig(join(opts.dir, 'ours-default'), openstack)
    await enableOurs(consul, ours, log)
    const trials: Trial[] = []
    for (const host of victims(opts.trials)) {
      trials.push(await oursTrial(consul, openstack, ours, host))
      log(`latency: ours, default gossip, ${host}: ${JSON.stringify(trials.at(-1))}`)
    }
    modes.push(mode('masakari-consul, Consul default gossip', 'ours', 'default', 'watch-driven; guards off', trials))
    await disableOurs(consul, ours)

    if (opts.upstream) {
      if (!existsSync('/usr/bin/masakari-hostmonitor')) throw new Error('masakari-host-monitor is not installed (bench/setup-upstream.sh)')
      const upDir = join(opts.dir, 'upstream')
      mkdirSync(upDir, { recursive: true })
      {
        const up = await startUpstream(upstreamConfig(upDir, consul, openstack, 1), join(upDir, 'hostmonitor-interval-1.log'))
        try {
          const t: Trial[] = []
          for (const host of victims(opts.trials)) {
            t.push(await upstreamTrial(consul, openstack, up, host))
            log(`latency: upstream, interval 1 s, ${host}: ${JSON.stringify(t.at(-1))}`)
          }
          modes.push(
            mode(
              'upstream masakari-hostmonitor 14.0.0, monitoring_interval = 1',
              'upstream',
              'default',
              'polls agent.members() every 1 s',
              t,
            ),
          )
        } finally {
          await up.stop()
        }
      }
      {
        const up = await startUpstream(upstreamConfig(upDir, consul, openstack, undefined), join(upDir, 'hostmonitor-default.log'))
        try {
          const t = await upstreamSpreadTrials(consul, openstack, up, victims(Math.min(opts.trials, 5)), 60, log)
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
          await up.stop()
        }
      }
    }
  } finally {
    await consul.stop()
  }

  // --- fast-detection gossip profile on every agent: ours
  const fast = JSON.parse(readFileSync(GOSSIP_FAST, 'utf8')) as object
  consul = await startConsulStack({ dir: join(opts.dir, 'consul-fast'), computes, octet: opts.octet + 3, extraConfig: fast, log: () => {} })
  try {
    const ours = oursConfig(join(opts.dir, 'ours-fast'), openstack)
    await enableOurs(consul, ours, log)
    const trials: Trial[] = []
    for (const host of victims(opts.trials)) {
      trials.push(await oursTrial(consul, openstack, ours, host))
      log(`latency: ours, fast gossip, ${host}: ${JSON.stringify(trials.at(-1))}`)
    }
    modes.push(
      mode('masakari-consul, gossip-fast.json', 'ours', 'fast', 'consul-config/gossip-fast.json on every agent; guards off', trials),
    )
    await disableOurs(consul, ours)
  } finally {
    await consul.stop()
  }
  return modes
}
