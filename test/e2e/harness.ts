/**
 * The real stack for end-to-end tests: three Consul clusters on loopback whose controller
 * agents run our bundled handler as a checks watch, a real Keystone and masakari-api, and the
 * monitor's config and state directory. Assertions read what Masakari stored.
 */
import type { Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { stringify } from 'yaml'
import { startConsulStack, NETWORKS, type ConsulStack, type Network } from '../../stack/consul.js'
import { freePort, isAlive, startOpenStack, type Notification, type OpenStack, type OpenStackOptions } from '../../stack/openstack.js'

export const ROOT = join(import.meta.dirname, '..', '..')
export const HANDLER = join(ROOT, 'dist', 'checks-handler.js')
export const EVALUATE = join(ROOT, 'dist', 'evaluate.js')

export interface RealStackOptions {
  /** Compute node names (the same in the three clusters). */
  computes: string[]
  /** Computes Masakari knows (default: all). */
  masakariHosts?: string[]
  /** Second octet of the address plan; distinct per test file. */
  octet: number
  /** Strategy file contents; default: the built-in default. */
  strategy?: string
  /** Networks whose controller agent gets the watch (default: all three). */
  watched?: Network[]
  /** Extra monitor config keys. */
  monitor?: Record<string, unknown>
  fastGossip?: boolean
  /** Keystone/masakari-api settings besides the harness's own (ports, scratch dir, duplicate window 0). */
  openstack?: Pick<OpenStackOptions, 'tokenCacheTime'>
  log?: (msg: string) => void
}

export interface RealStack {
  dir: string
  consul: ConsulStack
  openstack: OpenStack
  stateDir: string
  configPath: string
  /** Notifications Masakari stored for these hosts (oldest first). */
  notifications(host?: string): Promise<Notification[]>
  /** Resolves when the host's snapshot on that network shows `want` (the handler ran). */
  waitForSnapshot(host: string, network: Network, want: 'up' | 'down' | 'maintenance' | 'absent', timeoutMs?: number): Promise<void>
  /**
   * Resolves when the network's handler has evaluated a snapshot from Consul index `minIndex` or
   * later: its snapshot carries such an index and its `evaluated` line was logged after the
   * snapshot was taken. The positive signal that a watch run happened, before asserting that it
   * sent nothing. Returns the snapshot's Consul index.
   */
  waitForEvaluation(network: Network, minIndex?: number, timeoutMs?: number): Promise<number>
  /** The ModifyIndex of a node's check as the controller's agent of that network has it now. */
  checkIndex(node: string, network: Network, checkId?: string): Promise<number>
  /** The monitor's record: the one the controllers share in Consul KV, else state.json (empty if neither exists yet). */
  state(): Promise<RecordView>
  /** Resolves when the outbox is empty and no worker (or handler) of this stack is running. */
  waitForDelivery(timeoutMs?: number): Promise<void>
  /** Resolves when Masakari holds `count` notifications for the host. */
  waitForNotifications(host: string, count: number, timeoutMs?: number): Promise<Notification[]>
  /** The decision log, parsed. */
  logLines(): Array<Record<string, unknown>>
  /** Monitor processes (handlers, workers) still running for this stack. */
  monitorPids(): number[]
  /** Stops everything; returns pids that survived (should be none). */
  stop(): Promise<number[]>
}

/** The parts of the state document the tests read. */
export interface RecordView {
  ledger: Record<string, Record<string, unknown> & { unsent?: Record<string, unknown>; notified?: Record<string, unknown> }>
  outbox: Array<{ host: string; notification: { payload: { event: string } } }>
}

/** The shared record in the management agent's KV (masakari-consul/state, gzip), else state.json. */
export async function readRecord(managementAgent: string, stateDir: string): Promise<RecordView> {
  const res = await fetch(`http://${managementAgent}/v1/kv/masakari-consul/state`).catch(() => undefined)
  if (res?.status === 200) {
    const [entry] = (await res.json()) as Array<{ Value: string }>
    return JSON.parse(gunzipSync(Buffer.from(entry!.Value, 'base64')).toString('utf8'))
  }
  return JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8').catch(() => '{"ledger":{},"outbox":[]}'))
}

export async function waitUntil<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, hint = ''): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${hint ? `; ${hint}` : ''}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

export async function startRealStack(t: Test, opts: RealStackOptions): Promise<RealStack> {
  // The watches run dist/: make sure it is built from the sources under test.
  execFileSync(process.execPath, [join(ROOT, 'build.mjs')], { cwd: ROOT, stdio: 'ignore' })
  const dir = await mkdtemp(join(tmpdir(), 'masakari-consul-e2e-'))
  const log = opts.log ?? ((m: string) => t.comment(m))
  const stateDir = join(dir, 'state')
  const configPath = join(dir, 'monitor', 'config.yaml')
  const logsHint = () =>
    `logs: Consul ${join(dir, 'consul', 'logs')}, Keystone/Masakari ${join(dir, 'openstack', 'logs')}, monitor ${join(stateDir, 'decisions.log')}`

  let openstack: OpenStack | undefined
  let consul: ConsulStack | undefined
  const stop = async (): Promise<number[]> => {
    const pids = [...(consul?.pids() ?? []), ...(openstack?.pids ?? [])]
    await consul?.stop()
    await openstack?.stop()
    for (const pid of monitorPids()) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {}
    }
    // SIGKILL is not instant: poll until they are gone, and report what is still alive after 5 s
    const alive = () => [...pids, ...monitorPids()].filter(isAlive)
    await waitUntil("the stack's processes to exit", async () => (alive().length === 0 ? true : undefined), 5_000).catch(() => {})
    return alive()
  }
  // The monitor's processes (handlers and detached workers) carry the config path on their command line.
  const monitorPids = () => {
    const found: number[] = []
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue
      try {
        if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(configPath)) found.push(Number(name))
      } catch {}
    }
    return found.filter(isAlive)
  }
  t.teardown(async () => {
    await stop()
    if (!t.passing()) log(`a test failed; ${logsHint()}`)
  })

  openstack = await startOpenStack({
    dir: join(dir, 'openstack'),
    keystonePort: await freePort(),
    masakariPort: await freePort(),
    duplicateInterval: 0,
    ...opts.openstack,
    log,
  })
  const segment = await openstack.createSegment(`e2e-${opts.octet}`)
  for (const host of opts.masakariHosts ?? opts.computes) await openstack.addHost(segment, host)

  await mkdir(join(dir, 'monitor'), { recursive: true })
  if (opts.strategy) await writeFile(join(dir, 'monitor', 'strategy.yaml'), opts.strategy)
  await writeFile(
    configPath,
    stringify({
      stateDir,
      hostname: 'controller',
      ...(opts.strategy ? { strategy: 'strategy.yaml' } : {}),
      // the controller's own agents (stack/consul.ts address plan), asked before a recovery
      consul: {
        agents: Object.fromEntries(NETWORKS.map((n, i) => [n, `127.${opts.octet + i}.0.1:8500`])),
        // what an operator who ships gossip-fast.json to the agents tells the monitor
        ...(opts.fastGossip ? { gossip: { probeInterval: 0.4, suspicionMult: 2 } } : {}),
      },
      masakari: {
        authUrl: openstack.authUrl,
        auth: {
          username: openstack.monitor.username,
          userDomainName: openstack.monitor.userDomainName,
          passwordFile: 'password',
          projectName: openstack.monitor.projectName,
          projectDomainName: openstack.monitor.projectDomainName,
        },
        region: openstack.region,
        delivery: { initialBackoff: 0.5, maxBackoff: 2, expiry: 120 },
      },
      ...opts.monitor,
    }),
  )
  await writeFile(join(dir, 'monitor', 'password'), openstack.monitor.password, { mode: 0o600 })

  const watched = opts.watched ?? [...NETWORKS]
  const watch = (network: Network) => ({
    watches: [{ type: 'checks', args: [process.execPath, HANDLER, '--network', network, '--config', configPath] }],
  })
  consul = await startConsulStack({
    dir: join(dir, 'consul'),
    computes: opts.computes,
    octet: opts.octet,
    fastGossip: opts.fastGossip,
    controllerConfig: Object.fromEntries(watched.map((n) => [n, [watch(n)]])),
    log,
  })
  const stack: RealStack = {
    dir,
    consul,
    openstack,
    stateDir,
    configPath,
    async notifications(host) {
      const all = (await openstack!.listNotifications()).filter((n) => host === undefined || n.hostname === host)
      return all.sort((a, b) => a.created_at.localeCompare(b.created_at))
    },
    async waitForSnapshot(host, network, want, timeoutMs = 30_000) {
      await waitUntil(
        `${host} ${want} in the ${network} snapshot`,
        async () => {
          const snap = JSON.parse(await readFile(join(stateDir, 'snapshots', `${network}.json`), 'utf8'))
          const state = snap.nodes[host] ?? 'absent'
          return state === want ? true : undefined
        },
        timeoutMs,
        logsHint(),
      )
    },
    async waitForEvaluation(network, minIndex = 0, timeoutMs = 30_000) {
      return waitUntil(
        `the ${network} handler's evaluation of Consul index ${minIndex} or later`,
        async () => {
          const snap = JSON.parse(await readFile(join(stateDir, 'snapshots', `${network}.json`), 'utf8'))
          const index = Number(snap.consulIndex)
          if (!(index >= minIndex)) return undefined
          const evaluated = stack
            .logLines()
            .some((l) => l.msg === 'evaluated' && l.component === `checks-handler/${network}` && String(l.time) >= snap.receivedAt)
          return evaluated ? index : undefined
        },
        timeoutMs,
        logsHint(),
      )
    },
    async checkIndex(node, network, checkId = 'serfHealth') {
      const check = (await consul!.health(network)).find((c) => c.Node === node && c.CheckID === checkId)
      if (check?.ModifyIndex === undefined) throw new Error(`no ${checkId} check of ${node} on ${network}`)
      return check.ModifyIndex
    },
    async state() {
      return readRecord(`127.${opts.octet}.0.1:8500`, stateDir)
    },
    async waitForDelivery(timeoutMs = 30_000) {
      await waitUntil(
        'the outbox to empty',
        async () => {
          const state = await stack.state()
          return state.outbox.length === 0 && monitorPids().length === 0 ? true : undefined
        },
        timeoutMs,
        logsHint(),
      )
    },
    async waitForNotifications(host, count, timeoutMs = 30_000) {
      return waitUntil(
        `${count} notification(s) for ${host} in Masakari`,
        async () => {
          const got = await stack.notifications(host)
          return got.length >= count ? got : undefined
        },
        timeoutMs,
        logsHint(),
      )
    },
    logLines() {
      try {
        return readFileSync(join(stateDir, 'decisions.log'), 'utf8')
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l))
      } catch {
        return []
      }
    },
    monitorPids,
    stop,
  }
  // The watch fires once at agent start: wait until every watched network has a snapshot with every node.
  for (const network of watched) {
    for (const host of [...opts.computes, 'controller']) await stack.waitForSnapshot(host, network, 'up', 60_000)
  }
  return stack
}
