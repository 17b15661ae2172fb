/**
 * Section 4, mass failure: 100 hosts known to Masakari turn to a recovery row in one storage
 * payload. The real handler decides, the real detached worker delivers to the real masakari-api
 * through a counting loopback proxy. Then all of them come back (100 STARTED). Same with
 * delivery.concurrency 1 on another 100 hosts as the baseline.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { OpenStack } from '../stack/openstack.js'
import { GUARDS_OFF, HANDLER, readLog, waitIdle, writeMonitorConfig } from './common.js'
import { checksPayload } from './payloads.js'
import { startCountingProxy } from './proxy.js'
import { runOk } from './proc.js'
import { round, summarize, type Summary } from './stats.js'

export interface MassRun {
  concurrency: number
  event: 'STOPPED' | 'STARTED'
  hosts: number
  /** Handler wall time for the payload that turned every host. */
  handlerMs: number
  /** From the handler's start until Masakari's last 202 went back. */
  allAcceptedS: number
  notificationPosts: number
  accepted: number
  /** Most notification POSTs in flight towards Masakari at once (counted by the proxy). */
  peakInFlight: number
  /** Accepted notifications per second, over allAcceptedS. */
  perSecond: number
  keystoneAuths: number
  /** How long masakari-api took per notification POST, as the proxy saw it (ms). */
  postMs: Summary
}

export interface MassResult {
  runs: MassRun[]
  /** Hosts whose count of stored notifications for the event is not exactly 1. */
  duplicates: number
  missing: number
  storedPerHost: Record<string, number>
}

export async function massFailure(opts: {
  openstack: OpenStack
  dir: string
  hosts: number
  log: (m: string) => void
}): Promise<MassResult> {
  const { openstack, log } = opts
  const proxy = await startCountingProxy(Number(new URL(openstack.masakariUrl).port))
  const runs: MassRun[] = []
  const groups: Array<{ concurrency: number; names: string[] }> = []
  try {
    for (const concurrency of [4, 1]) {
      const names = Array.from({ length: opts.hosts }, (_, i) => `mass-c${concurrency}-${String(i + 1).padStart(3, '0')}`)
      groups.push({ concurrency, names })
      const segment = await openstack.createSegment(`bench-mass-c${concurrency}`)
      log(`mass failure: adding ${names.length} hosts to Masakari (segment bench-mass-c${concurrency})`)
      for (const name of names) await openstack.addHost(segment, name)

      const dir = join(opts.dir, `c${concurrency}`)
      mkdirSync(dir, { recursive: true })
      const stateDir = join(dir, 'state')
      const endpoint = openstack.masakariUrl.replace(/:\d+\//, `:${proxy.port}/`)
      const config = writeMonitorConfig(join(dir, 'monitor'), {
        stateDir,
        // A mass failure is what the self-isolation guard and the rate limit exist for: they
        // are off here, to measure what the delivery path itself can do.
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
          endpoint,
          delivery: { concurrency, initialBackoff: 0.5, maxBackoff: 2, expiry: 300 },
        },
      })
      const up = join(dir, 'up.json')
      const down = join(dir, 'down.json')
      writeFileSync(up, checksPayload({ hosts: names.length, servicesPerHost: 10, names }))
      writeFileSync(down, checksPayload({ hosts: names.length, servicesPerHost: 10, names, down: new Set(names) }))
      for (const network of ['management', 'tenant', 'storage']) {
        await runOk(process.execPath, [HANDLER, '--network', network, '--config', config], { pipeFile: up })
      }
      for (const [event, payload] of [
        ['STOPPED', down],
        ['STARTED', up],
      ] as const) {
        proxy.reset()
        const t0 = Date.now()
        const h = await runOk(process.execPath, [HANDLER, '--network', 'storage', '--config', config], { pipeFile: payload })
        await waitIdle(stateDir, config, 300_000)
        const posts = proxy.events.filter((e) => e.method === 'POST' && e.path.endsWith('/notifications'))
        const accepted = posts.filter((e) => e.status === 202)
        const last = Math.max(...accepted.map((e) => e.endedAt))
        const logAccepted = readLog(join(stateDir, 'decisions.log')).filter(
          (l) => l.msg === 'notification accepted by Masakari' && l.event === event,
        )
        const run: MassRun = {
          concurrency,
          event,
          hosts: names.length,
          handlerMs: round(h.ms, 1),
          allAcceptedS: round((last - t0) / 1000, 2),
          notificationPosts: posts.length,
          accepted: accepted.length,
          peakInFlight: peakOf(posts),
          perSecond: round(accepted.length / ((last - t0) / 1000), 1),
          postMs: summarize(
            posts.map((e) => e.endedAt - e.startedAt),
            1,
          ),
          keystoneAuths: readLog(join(stateDir, 'decisions.log')).filter(
            (l) => l.msg === 'authenticated with Keystone' && Date.parse(l.time) >= t0,
          ).length,
        }
        if (logAccepted.length !== names.length)
          log(`mass failure: WARNING ${logAccepted.length} accepted lines in the log for ${names.length} hosts`)
        runs.push(run)
        log(
          `mass failure: concurrency ${concurrency}, ${names.length} ${event}: all accepted after ${run.allAcceptedS} s, peak in flight ${run.peakInFlight}`,
        )
      }
    }
  } finally {
    await proxy.close()
  }
  // Exactly one STOPPED and one STARTED stored per host.
  const stored = await openstack.listNotifications()
  const storedPerHost: Record<string, number> = {}
  let duplicates = 0
  let missing = 0
  for (const { names } of groups) {
    for (const name of names) {
      for (const event of ['STOPPED', 'STARTED']) {
        const n = stored.filter((s) => s.hostname === name && s.payload?.event === event).length
        storedPerHost[`${name} ${event}`] = n
        if (n > 1) duplicates++
        if (n === 0) missing++
      }
    }
  }
  return { runs, duplicates, missing, storedPerHost: summarizeCounts(storedPerHost) }
}

/** The most requests whose [start, end] intervals overlap at one instant. */
function peakOf(events: Array<{ startedAt: number; endedAt: number }>): number {
  const points = events
    .flatMap(
      (e) =>
        [
          [e.startedAt, 1],
          [e.endedAt, -1],
        ] as const,
    )
    .sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let cur = 0
  let peak = 0
  for (const [, d] of points) {
    cur += d
    peak = Math.max(peak, cur)
  }
  return peak
}

/** {"1": 400} style: how many host×event pairs have each count. */
function summarizeCounts(perHost: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const n of Object.values(perHost)) out[String(n)] = (out[String(n)] ?? 0) + 1
  return out
}
