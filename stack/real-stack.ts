/**
 * The real stack for end-to-end tests and the bench: three Consul clusters on loopback whose
 * controller agents run the monitor as deployed (consul-config/watches/*.json, paths made
 * local), a real Keystone and masakari-api, and the monitor's config and state directory (one
 * monitor per controller when there are several). Assertions read what Masakari stored.
 * test/e2e/harness.ts binds it to tap.
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { randomUUID } from 'node:crypto'
import { basename, dirname, join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { stringify } from 'yaml'
import { consulAddress, startConsulStack, NETWORKS, type ConsulStack, type ConsulStackOptions, type Network } from './consul.js'
import { freePort, isAlive, startOpenStack, type Notification, type OpenStack, type OpenStackOptions } from './openstack.js'

/** The checkout: stack/.. here, bench/out/../.. when bundled into the bench. */
export const ROOT = basename(import.meta.dirname) === 'out' ? join(import.meta.dirname, '..', '..') : join(import.meta.dirname, '..')
export const HANDLER = join(ROOT, 'dist', 'checks-handler.js')
export const EVALUATE = join(ROOT, 'dist', 'evaluate.js')
export const PULSE = join(ROOT, 'consul-config', 'pulse.sh')
/** The watches and the pulse check as an operator installs them (README, "Install on three controllers"). */
export const DEPLOYED_WATCHES = join(ROOT, 'consul-config', 'watches')

export interface RealStackOptions {
  /** Compute node names (the same in the three clusters). */
  computes: string[]
  /** Computes Masakari knows (default: all). */
  masakariHosts?: string[]
  /** Second octet of the address plan; distinct per test file. */
  octet: number
  /**
   * Controller node names (default: one, 'controller'). Each runs a Consul server per network,
   * the watches of `watched` and a monitor of its own (config, state dir, hostname = its name).
   */
  controllers?: string[]
  /** Strategy file contents; default: the built-in default. */
  strategy?: string
  /** Networks whose controller agents get the watch (default: all three). */
  watched?: Network[]
  /** Extra monitor config keys (shallow: a `consul` here replaces the harness's). */
  monitor?: Record<string, unknown>
  /** masakari.delivery keys over the harness's (backoff 0.5–2 s, expiry 120 s). */
  delivery?: { expiry?: number }
  fastGossip?: boolean
  /** Consul `node_meta` per node and network (stack/consul.ts). */
  nodeMeta?: ConsulStackOptions['nodeMeta']
  /**
   * Consul ACLs on (default deny). The monitors' watches and configs (`consul.token`) get one
   * token, the same SecretID in the three clusters, with MONITOR_ACL_RULES.
   */
  acl?: boolean
  /**
   * The pulse check (consul-config/pulse.sh) on each controller's management agent, as
   * consul-config/watches/pulse.json installs it, every `pulse` (e.g. '3s'; 'deployed': the
   * file's interval).
   */
  pulse?: string
  /** Keystone/masakari-api settings besides the harness's own (ports, scratch dir, duplicate window 0). */
  openstack?: Pick<OpenStackOptions, 'tokenCacheTime'>
  /** A Keystone and masakari-api already running (the bench's): used, not started nor stopped. */
  sharedOpenStack?: OpenStack
  log?: (msg: string) => void
  /**
   * Called once, before anything starts, with the stack's stop and where its logs are: a test
   * registers it with t.teardown, the bench calls it in a finally.
   */
  teardown?: (stop: () => Promise<number[]>, logsHint: () => string) => void
}

/**
 * What a monitor needs in an ACL'd cluster (shared/notes/real-stack.md, "Consul ACLs on 1.8.7"):
 * the shipped policy, so that the end-to-end tests run the one operators install.
 */
export const MONITOR_ACL_RULES = readFileSync(join(ROOT, 'consul-config', 'acl', 'masakari-consul.hcl'), 'utf8')

/** A host's state in a snapshot, or absent from it. */
type SnapshotWant = 'up' | 'down' | 'maintenance' | 'absent'

/** One controller's monitor: its config, state directory and processes. */
export interface Monitor {
  /** the controller it runs on; its `hostname` */
  controller: string
  stateDir: string
  configPath: string
  /** Resolves when the host's snapshot on that network shows `want`, or any of several (the handler ran). */
  waitForSnapshot(host: string, network: Network, want: SnapshotWant | SnapshotWant[], timeoutMs?: number): Promise<void>
  /**
   * Resolves when the network's handler has evaluated a snapshot from Consul index `minIndex` or
   * later: its snapshot carries such an index and its `evaluated` line was logged after the
   * snapshot was taken. The positive signal that a watch run happened, before asserting that it
   * sent nothing. Returns the snapshot's Consul index.
   */
  waitForEvaluation(network: Network, minIndex?: number, timeoutMs?: number): Promise<number>
  /** Resolves when the outbox is empty and no worker (or handler) of this monitor is running. */
  waitForDelivery(timeoutMs?: number): Promise<void>
  /** The monitor's record: the one the controllers share in Consul KV, else its state.json. */
  state(): Promise<RecordView>
  /** The decision log, parsed. */
  logLines(): Array<Record<string, unknown>>
  /** This monitor's processes (handlers, workers) still running: those whose command line holds its config path. */
  monitorPids(): number[]
}

/** The stack; the Monitor methods and paths at its top level are the first controller's monitor's. */
export interface RealStack extends Omit<Monitor, 'controller'> {
  dir: string
  consul: ConsulStack
  openstack: OpenStack
  controllers: string[]
  /** one per controller, in the order of `controllers` */
  monitors: Monitor[]
  monitor(controller: string): Monitor
  /** with `acl`: the monitors' Consul token (same SecretID in the three clusters) */
  token?: string
  /**
   * The controller holding the sender lock (`masakari-consul/sender`), as the first of `among`
   * (default: every controller) whose management agent answers says.
   */
  holder(among?: string[]): Promise<string>
  /** Notifications Masakari stored for these hosts (oldest first). */
  notifications(host?: string): Promise<Notification[]>
  /** The ModifyIndex of a node's check as a (live) controller's agent of that network has it now. */
  checkIndex(node: string, network: Network, checkId?: string): Promise<number>
  /** Resolves when Masakari holds `count` notifications for the host. */
  waitForNotifications(host: string, count: number, timeoutMs?: number): Promise<Notification[]>
  /** A controller crashes: SIGKILL its three agents, then every process of its monitor. */
  killController(name: string): Promise<void>
  /** SIGSTOP a controller's three agents and its monitor's processes (a hung machine). */
  freezeController(name: string): void
  /** SIGCONT what freezeController stopped (and any process of its monitor). */
  thawController(name: string): void
  /** Stops everything; returns pids that survived (should be none). */
  stop(): Promise<number[]>
}

/** The parts of the state document the tests read. */
export interface RecordView {
  ledger: Record<string, Record<string, unknown> & { unsent?: Record<string, unknown>; notified?: Record<string, unknown> }>
  outbox: Array<{ host: string; notification: { payload: { event: string } } }>
}

/** The shared record in the management agent's KV (masakari-consul/state, gzip), else state.json. */
export async function readRecord(managementAgent: string, stateDir: string, token?: string): Promise<RecordView> {
  const headers = token ? { 'X-Consul-Token': token } : undefined
  const res = await fetch(`http://${managementAgent}/v1/kv/masakari-consul/state`, { headers }).catch(() => undefined)
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

/** A watch run's work on a network's change: done by its handler, or by the resident ahead of it (lib/run/resident.ts). */
function ranOn(component: unknown, network: Network): boolean {
  return component === `checks-handler/${network}` || component === `resident/${network}`
}

/** The resident (`--resident`), which the pulse keeps running. */
function isResident(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--resident')
  } catch {
    return false
  }
}

/** Live pids whose command line holds `needle` (the monitor's processes carry their config path). */
function pidsWithArg(needle: string): number[] {
  const found: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(needle)) found.push(Number(name))
    } catch {}
  }
  return found.filter(isAlive)
}

function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig)
    } catch {}
  }
}

export async function startRealStack(opts: RealStackOptions): Promise<RealStack> {
  // The watches run dist/: make sure it is built from the sources under test.
  execFileSync(process.execPath, [join(ROOT, 'build.mjs')], { cwd: ROOT, stdio: 'ignore' })
  const dir = await mkdtemp(join(tmpdir(), 'masakari-consul-e2e-'))
  const log = opts.log ?? (() => {})
  const controllers = opts.controllers ?? ['controller']
  const token = opts.acl ? randomUUID() : undefined
  const plan = { octet: opts.octet, computes: opts.computes, controllers }
  const monitors = controllers.map((c) =>
    monitorOf(dir, c, controllers.length === 1, `${consulAddress(plan, c, 'management')}:8500`, token),
  )
  const logsHint = () =>
    `logs: Consul ${join(dir, 'consul', 'logs')}, Keystone/Masakari ${join(dir, 'openstack', 'logs')}, ` +
    `monitor ${monitors.map((m) => join(m.stateDir, 'decisions.log')).join(', ')}`
  for (const m of monitors) m.hint = logsHint

  let openstack: OpenStack | undefined
  let consul: ConsulStack | undefined
  const allMonitorPids = () => monitors.flatMap((m) => m.monitorPids())
  const stop = async (): Promise<number[]> => {
    const own = opts.sharedOpenStack ? undefined : openstack
    const pids = [...(consul?.pids() ?? []), ...(own?.pids ?? [])]
    await consul?.stop()
    await own?.stop()
    for (const m of monitors) signal(m.frozen.splice(0), 'SIGCONT')
    signal(allMonitorPids(), 'SIGKILL')
    // SIGKILL is not instant: poll until they are gone, and report what is still alive after 5 s
    const alive = () => [...pids, ...allMonitorPids()].filter(isAlive)
    await waitUntil("the stack's processes to exit", async () => (alive().length === 0 ? true : undefined), 5_000).catch(() => {})
    return alive()
  }
  opts.teardown?.(stop, logsHint)

  openstack =
    opts.sharedOpenStack ??
    (await startOpenStack({
      dir: join(dir, 'openstack'),
      keystonePort: await freePort(),
      masakariPort: await freePort(),
      duplicateInterval: 0,
      ...opts.openstack,
      log,
    }))
  const segment = await openstack.createSegment(`e2e-${opts.octet}`)
  for (const host of opts.masakariHosts ?? opts.computes) await openstack.addHost(segment, host)

  for (const m of monitors) await writeMonitorConfig(m, opts, openstack, token, (n) => `${consulAddress(plan, m.controller, n)}:8500`)

  const watched = opts.watched ?? [...NETWORKS]
  const watch = (m: Monitor, network: Network) => deployedWatch(m, network, token)
  const watchesOf = (m: Monitor) => Object.fromEntries(watched.map((n) => [n, [watch(m, n)]]))
  const startConfigOf = (m: Monitor): Partial<Record<Network, object[]>> => {
    const configs: Partial<Record<Network, object[]>> = token ? {} : watchesOf(m)
    // The pulse check needs enable_local_script_checks at the agent's start: it goes in with it.
    if (opts.pulse) configs.management = [...(configs.management ?? []), deployedPulse(m, opts.pulse)]
    return configs
  }
  consul = await startConsulStack({
    dir: join(dir, 'consul'),
    computes: opts.computes,
    controllers,
    octet: opts.octet,
    fastGossip: opts.fastGossip,
    nodeMeta: opts.nodeMeta,
    // with ACLs the token must exist before a watch runs: the watches come after it, by reload
    controllerConfigs: Object.fromEntries(monitors.map((m) => [m.controller, startConfigOf(m)])),
    acl: token ? { masterToken: randomUUID() } : undefined,
    log,
  })
  if (token) await addWatchesWithToken(consul, monitors, watched, token, (m, n) => watch(m, n))

  const first = monitors[0]!
  const stack: RealStack = {
    dir,
    consul,
    openstack,
    controllers,
    monitors,
    token,
    stateDir: first.stateDir,
    configPath: first.configPath,
    monitor(controller) {
      const m = monitors.find((x) => x.controller === controller)
      if (!m) throw new Error(`no monitor on ${controller} (controllers: ${controllers.join(', ')})`)
      return m
    },
    waitForSnapshot: (...a) => first.waitForSnapshot(...a),
    waitForEvaluation: (...a) => first.waitForEvaluation(...a),
    waitForDelivery: (...a) => first.waitForDelivery(...a),
    state: () => first.state(),
    logLines: () => first.logLines(),
    monitorPids: () => first.monitorPids(),
    async holder(among = controllers) {
      for (const c of among) {
        const res = await fetch(`http://${consul!.httpAddr(c, 'management')}/v1/kv/masakari-consul/sender?consistent`, {
          headers: token ? { 'X-Consul-Token': token } : {},
          signal: AbortSignal.timeout(5_000),
        }).catch(() => undefined)
        if (res?.status !== 200) continue
        const [entry] = (await res.json()) as Array<{ Session?: string; Value: string }>
        if (entry?.Session) return (JSON.parse(Buffer.from(entry.Value, 'base64').toString('utf8')) as { host: string }).host
      }
      throw new Error(`nobody holds the sender lock (asked ${among.join(', ')})`)
    },
    async notifications(host) {
      const all = (await openstack!.listNotifications()).filter((n) => host === undefined || n.hostname === host)
      return all.sort((a, b) => a.created_at.localeCompare(b.created_at))
    },
    async checkIndex(node, network, checkId = 'serfHealth') {
      const check = (await consul!.health(network)).find((c) => c.Node === node && c.CheckID === checkId)
      if (check?.ModifyIndex === undefined) throw new Error(`no ${checkId} check of ${node} on ${network}`)
      return check.ModifyIndex
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
    async killController(name) {
      const m = stack.monitor(name) as MonitorImpl
      await consul!.killNode(name) // its agents first: no new handler starts
      m.frozen.splice(0)
      signal(m.monitorPids(), 'SIGKILL')
      await waitUntil(`the monitor processes of ${name} to exit`, async () => (m.monitorPids().length === 0 ? true : undefined), 5_000)
    },
    freezeController(name) {
      const m = stack.monitor(name) as MonitorImpl
      consul!.freezeNode(name) // its agents first: no new handler starts
      const pids = m.monitorPids()
      signal(pids, 'SIGSTOP')
      m.frozen.push(...pids)
    },
    thawController(name) {
      const m = stack.monitor(name) as MonitorImpl
      signal([...m.frozen.splice(0), ...m.monitorPids()], 'SIGCONT')
      consul!.thawNode(name)
    },
    stop,
  }
  // The watch fires once at agent start: wait until every monitor has, on every watched network, a snapshot with every node.
  for (const m of monitors) {
    for (const network of watched) {
      for (const host of [...opts.computes, ...controllers]) await m.waitForSnapshot(host, network, 'up', 60_000)
    }
  }
  return stack
}

/**
 * A file of consul-config/watches/ with its installed paths made this checkout's and this
 * monitor's: /usr/bin/node, /opt/masakari-consul, /etc/masakari-consul, /var/lib/masakari-consul.
 */
function deployedFile(m: Monitor, file: string): Record<string, unknown> {
  const local: Array<[string, string]> = [
    ['/etc/masakari-consul/config.yaml', m.configPath],
    ['/etc/masakari-consul', dirname(m.configPath)],
    ['/var/lib/masakari-consul', m.stateDir],
    ['/opt/masakari-consul', ROOT],
    ['/usr/bin/node', process.execPath],
  ]
  return JSON.parse(readFileSync(join(DEPLOYED_WATCHES, file), 'utf8'), (_key, v: unknown) =>
    typeof v === 'string' ? local.reduce((s, [from, to]) => s.replaceAll(from, to), v) : v,
  )
}

/** The network's watch as deployed; with ACLs, with the monitors' token. */
export function deployedWatch(m: Monitor, network: Network, token?: string): Record<string, unknown> {
  const config = deployedFile(m, `${network}.json`) as { watches: Array<Record<string, unknown>> }
  return { ...config, watches: config.watches.map((w) => ({ ...w, ...(token ? { token } : {}) })) }
}

/** The pulse check as deployed (pulse.json), every `interval` ('deployed': the file's). */
export function deployedPulse(m: Monitor, interval: string): Record<string, unknown> {
  const config = deployedFile(m, 'pulse.json') as { check: Record<string, unknown> }
  return interval === 'deployed' ? config : { ...config, check: { ...config.check, interval } }
}

export interface MonitorImpl extends Monitor {
  /** pids freezeController stopped */
  frozen: number[]
  hint: () => string
}

/**
 * The monitor of one controller. One controller (the default layout): <dir>/monitor/config.yaml,
 * state <dir>/state; several: <dir>/monitors/<name>/config.yaml, state <dir>/monitors/<name>/state.
 */
function monitorOf(dir: string, controller: string, single: boolean, managementAgent: string, token: string | undefined): MonitorImpl {
  const home = single ? join(dir, 'monitor') : join(dir, 'monitors', controller)
  const stateDir = single ? join(dir, 'state') : join(home, 'state')
  return monitorAt(controller, { configPath: join(home, 'config.yaml'), stateDir }, managementAgent, token)
}

/** A monitor whose config and state directory are where an installation put them (the operator journey's). */
export function monitorAt(
  controller: string,
  paths: { configPath: string; stateDir: string },
  managementAgent: string,
  token: string | undefined,
): MonitorImpl {
  const { configPath, stateDir } = paths
  const snapshot = async (network: Network) => JSON.parse(await readFile(join(stateDir, 'snapshots', `${network}.json`), 'utf8'))
  const m: MonitorImpl = {
    controller,
    stateDir,
    configPath,
    frozen: [],
    hint: () => '',
    async waitForSnapshot(host, network, want, timeoutMs = 30_000) {
      const wants: SnapshotWant[] = typeof want === 'string' ? [want] : want
      await waitUntil(
        `${host} ${wants.join(' or ')} in the ${network} snapshot of ${controller}'s monitor`,
        async () => wants.includes((await snapshot(network)).nodes[host] ?? 'absent') || undefined,
        timeoutMs,
        m.hint(),
      )
    },
    async waitForEvaluation(network, minIndex = 0, timeoutMs = 30_000) {
      return waitUntil(
        `the ${network} handler's evaluation of Consul index ${minIndex} or later on ${controller}`,
        async () => {
          const snap = await snapshot(network)
          const index = Number(snap.consulIndex)
          if (!(index >= minIndex)) return undefined
          const evaluated = m
            .logLines()
            .some((l) => l.msg === 'evaluated' && ranOn(l.component, network) && String(l.time) >= snap.receivedAt)
          return evaluated ? index : undefined
        },
        timeoutMs,
        m.hint(),
      )
    },
    async waitForDelivery(timeoutMs = 30_000) {
      await waitUntil(
        `the outbox of ${controller}'s monitor to empty`,
        async () => {
          const state = await m.state()
          // The resident stays: only work under way counts (a watch run, a worker, a resync).
          return state.outbox.length === 0 && m.monitorPids().filter((p) => !isResident(p)).length === 0 ? true : undefined
        },
        timeoutMs,
        m.hint(),
      )
    },
    state: () => readRecord(managementAgent, stateDir, token),
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
    monitorPids: () => pidsWithArg(configPath),
  }
  return m
}

async function writeMonitorConfig(
  m: Monitor,
  opts: RealStackOptions,
  openstack: OpenStack,
  token: string | undefined,
  agentAddr: (network: Network) => string,
): Promise<void> {
  const home = dirname(m.configPath)
  await mkdir(home, { recursive: true })
  if (opts.strategy) await writeFile(join(home, 'strategy.yaml'), opts.strategy)
  await writeFile(
    m.configPath,
    stringify({
      stateDir: m.stateDir,
      hostname: m.controller,
      ...(opts.strategy ? { strategy: 'strategy.yaml' } : {}),
      consul: {
        // this controller's own agents (stack/consul.ts address plan), asked before a recovery
        agents: Object.fromEntries(NETWORKS.map((n) => [n, agentAddr(n)])),
        // what an operator who ships gossip-fast.json to the agents tells the monitor
        ...(opts.fastGossip ? { gossip: { probeInterval: 0.4, suspicionMult: 2 } } : {}),
        ...(token ? { token } : {}),
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
        delivery: { initialBackoff: 0.5, maxBackoff: 2, expiry: 120, ...opts.delivery },
      },
      ...opts.monitor,
    }),
  )
  await writeFile(join(home, 'password'), openstack.monitor.password, { mode: 0o600 })
}

/** ACLs: the monitors' token in every cluster (one SecretID), then each controller's watches, by reload. */
async function addWatchesWithToken(
  consul: ConsulStack,
  monitors: Monitor[],
  watched: Network[],
  token: string,
  watch: (m: Monitor, network: Network) => object,
): Promise<void> {
  for (const network of NETWORKS) await consul.createToken(network, 'masakari-consul-monitor', MONITOR_ACL_RULES, token)
  for (const m of monitors) {
    for (const network of watched) {
      consul.writeControllerConfig(network, 'watch-masakari-consul', watch(m, network), m.controller)
      await consul.reloadController(network, m.controller)
    }
  }
}
