/**
 * Section `fencing` (issue #21): what fencing adds to a lone failure. One controller, three
 * computes, a real BMC per compute (ipmi_sim, stack/bmc.ts, 127.79.2.x) whose power-off kills
 * that compute's three Consul agents, Debian's fence_ipmilan. Trials alternate fencing off and
 * on (the config rewritten between them: the next run reads it) on the same clusters, each a
 * compute's storage agent frozen: from the fault to its serfHealth critical (Consul's own
 * detection, as the controller's agent shows it) and to the STOPPED listed by Masakari's API
 * (polled every 200 ms), and, fenced, the fence itself as the sender logged it (power off, then
 * status until off). Between trials the compute comes back: thawed, or powered on by ipmitool
 * and its agents restarted; its STARTED waited for.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import { type BmcStack, startBmcs } from '../stack/bmc.js'
import type { OpenStack } from '../stack/openstack.js'
import { type RealStack, startRealStack } from '../stack/real-stack.js'
import { readLog } from './common.js'
import { round, summarize, type Summary } from './stats.js'

export interface FenceTrial {
  host: string
  fencing: boolean
  /** s from the freeze to serfHealth critical on the controller's storage agent */
  serfS: number
  /** s from the freeze until Masakari's API listed the STOPPED */
  storedS: number
  /** storedS − serfS */
  addedS: number
  /** fenced: the sender's own figure for the fence (power off, then status until off; its log gives ms), s */
  fenceS?: number
  /** the STOPPED's host_status as Masakari stored it */
  hostStatus: string
  /** power-offs the host's BMC received in this trial */
  powerOffs: number
}

export interface FencingResult {
  computes: string[]
  agent: string
  note: string
  trials: FenceTrial[]
  off: { storedS: Summary; addedS: Summary }
  on: { storedS: Summary; addedS: Summary; fenceS: Summary }
  /** per pair (off trial i, on trial i): on − off, fault → stored */
  costS: Summary
  /** every fenced trial: one power-off and NORMAL; every other: none */
  exact: boolean
}

const computes = ['fen1', 'fen2', 'fen3']
const PASSWORD = 'bmc-bench-5e1d'
const s = (ms: number) => round(ms / 1000, 2)

export async function fencingCost(opts: {
  openstack: OpenStack
  dir: string
  pairs: number
  octet: number
  log: (m: string) => void
}): Promise<FencingResult> {
  const { log } = opts
  const pidFile = (host: string) => join(opts.dir, `${host}.agents`)
  let stop: (() => Promise<number[]>) | undefined
  let bmcs: BmcStack | undefined
  try {
    bmcs = await startBmcs({
      dir: join(opts.dir, 'bmc'),
      block: '127.79.2',
      password: PASSWORD,
      hosts: computes.map((name) => ({ name, off: `kill -s KILL $(cat ${pidFile(name)})`, on: 'true' })),
    })
    writeFileSync(join(opts.dir, 'fence-password'), `${PASSWORD}\n`, { mode: 0o600 })
    const fencing = {
      enabled: false,
      agent: 'fence_ipmilan',
      options: { lanplus: '1', username: 'admin', cipher: '3' },
      hosts: bmcs.fenceHosts(),
      passwordFile: join(opts.dir, 'fence-password'),
    }
    const stack = await startRealStack({
      computes,
      octet: opts.octet,
      sharedOpenStack: opts.openstack,
      monitor: { guards: { rateLimit: { maxRecoveries: 0 } }, fencing },
      teardown: (f) => {
        stop = f
      },
    })
    for (const c of computes) writeFileSync(pidFile(c), stack.consul.nodePids(c).join(' '))
    log(`fencing: 1 controller + ${computes.length} computes with BMCs up`)
    const trials: FenceTrial[] = []
    for (let i = 0; i < 2 * opts.pairs; i++) {
      const on = i % 2 === 1
      setFencing(stack.configPath, on)
      trials.push(await trial(stack, bmcs, computes[i % computes.length]!, on, pidFile))
      log(`fencing: ${JSON.stringify(trials.at(-1))}`)
    }
    const off = trials.filter((t) => !t.fencing)
    const fenced = trials.filter((t) => t.fencing)
    return {
      computes,
      agent: 'fence_ipmilan (Debian fence-agents) → ipmi_sim on loopback',
      note: 'monitor config of test/e2e (stack/real-stack.ts): default guards (hold 5 s), rate limit lifted, own agents asked; Consul default gossip; trials alternate fencing off / on',
      trials,
      off: { storedS: summarize(off.map((t) => t.storedS)), addedS: summarize(off.map((t) => t.addedS)) },
      on: {
        storedS: summarize(fenced.map((t) => t.storedS)),
        addedS: summarize(fenced.map((t) => t.addedS)),
        fenceS: summarize(fenced.map((t) => t.fenceS ?? Number.NaN)),
      },
      costS: summarize(fenced.map((t, i) => round(t.storedS - off[i]!.storedS, 2))),
      exact: trials.every((t) => (t.fencing ? t.powerOffs === 1 && t.hostStatus === 'NORMAL' : t.powerOffs === 0)),
    }
  } finally {
    await bmcs?.stop()
    const left = await stop?.()
    if (left?.length) log(`fencing: processes left after stop: ${left.join(', ')}`)
  }
}

function setFencing(configPath: string, enabled: boolean): void {
  const config = parse(readFileSync(configPath, 'utf8')) as { fencing: { enabled: boolean } }
  config.fencing.enabled = enabled
  writeFileSync(configPath, stringify(config))
}

async function trial(
  stack: RealStack,
  bmcs: BmcStack,
  host: string,
  fencing: boolean,
  pidFile: (h: string) => string,
): Promise<FenceTrial> {
  const before = (await stack.notifications(host)).length
  const offsBefore = bmcs.powerLog(host).filter((c) => c.power === 'off').length
  const t0 = Date.now()
  stack.consul.freeze(host, 'storage')
  await stack.consul.waitForSerf(host, 'storage', 'critical', 60_000)
  const serfS = s(Date.now() - t0)
  const [n] = (await stack.waitForNotifications(host, before + 1, 150_000)).slice(before)
  const storedS = s(Date.now() - t0)
  await stack.waitForDelivery(120_000)
  const line = readLog(join(stack.stateDir, 'decisions.log')).find(
    (l) => l.msg === 'host fenced: power off confirmed, STOPPED sent NORMAL' && l.host === host && Date.parse(l.time) >= t0,
  )
  const powerOffs = bmcs.powerLog(host).filter((c) => c.power === 'off').length - offsBefore
  if (powerOffs > 0) {
    // powered off: on again by its BMC, then its agents (the power-on command runs nothing here)
    await bmcs.ipmitool(host, 'chassis', 'power', 'on')
    await stack.consul.restartNode(host)
    writeFileSync(pidFile(host), stack.consul.nodePids(host).join(' '))
  } else stack.consul.thaw(host, 'storage')
  await stack.waitForNotifications(host, before + 2, 150_000)
  await stack.waitForDelivery(120_000)
  return {
    host,
    fencing,
    serfS,
    storedS,
    addedS: round(storedS - serfS, 2),
    ...(line?.elapsed !== undefined ? { fenceS: round(Number(line.elapsed) / 1000, 2) } : {}),
    hostStatus: String(n?.payload.host_status),
    powerOffs,
  }
}
