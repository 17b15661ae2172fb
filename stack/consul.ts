/**
 * A real Consul stack on loopback, for integration tests, benchmarks and the demo.
 *
 * Layout (the product's): three independent Consul clusters, one per network
 * (management, tenant, storage). The controller runs the three servers, every compute
 * runs three clients. Node names are equal across the clusters. Every agent binds its
 * own loopback address, so the default ports are used everywhere:
 *
 *   management 127.<octet>.0.<i>, tenant 127.<octet+1>.0.<i>, storage 127.<octet+2>.0.<i>
 *   controller i = 1, computes i = 2, 3, ...
 *
 * Parallel test files must use different octets.
 *
 * Fault injection:
 *   freeze/thaw   SIGSTOP/SIGCONT of the agent's process group: the host's link on that
 *                 network is "down" (memberlist probes time out → failed → serfHealth critical).
 *   kill          SIGKILL: a crash. No graceful leave happens (leave_on_terminate, true by
 *                 default on clients, only acts on SIGTERM), so the node turns critical,
 *                 it does not disappear.
 *   leave         `consul leave`: graceful; the leader deregisters the node (its checks vanish).
 *   maintenance   `consul maint -enable`: a critical `_node_maintenance` check appears.
 *   restart       start the agent again (same data dir, same node id) after kill/leave.
 *
 * Cleanup: stop() SIGKILLs every agent it started (by process group of each pid it spawned).
 * Callers register it with t.teardown. While any agent is alive this module also
 *   - SIGKILLs them synchronously on process 'exit' (uncaught exception, process.exit),
 *   - does the same on SIGINT/SIGTERM/SIGHUP, then re-raises the signal,
 *   - runs one tiny `sh` watchdog per stack, holding a pipe from this process: when this
 *     process dies in any way (even SIGKILL) the pipe closes and the watchdog kills the
 *     agents listed in `${dir}/agent-pids`.
 *
 * Only node builtins are used. Never sends traffic anywhere but 127.0.0.0/8.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'

export type Network = 'management' | 'tenant' | 'storage'
export const NETWORKS: readonly Network[] = Object.freeze(['management', 'tenant', 'storage'] as const)

export interface ConsulStackOptions {
  /** data dirs, config dirs, logs (`${dir}/logs/<node>-<network>.log`) */
  dir: string
  /** compute node names, e.g. ['cmp1','cmp2'] */
  computes: string[]
  /** default 'controller' */
  controller?: string
  /** management 127.<octet>.0.<i>, tenant 127.<octet+1>.0.<i>, storage 127.<octet+2>.0.<i> */
  octet: number
  /** extra JSON config objects written into the controller agent's config dir BEFORE start */
  controllerConfig?: Partial<Record<Network, object[]>>
  /** gossip_lan { probe_interval 400ms, probe_timeout 200ms, suspicion_mult 2 } on every agent */
  fastGossip?: boolean
  log?: (msg: string) => void
  /** consul binary; default $CONSUL_BIN or 'consul' (on PATH) */
  consulBin?: string
  /** how long startConsulStack waits for leaders and passing serfHealth; default 60000 */
  startTimeoutMs?: number
  /** extra JSON merged into every agent's base config (shallow) */
  extraConfig?: object
}

export interface HealthCheck {
  Node: string
  CheckID: string
  Status: string
  Name?: string
  Output?: string
  ServiceID?: string
  ServiceName?: string
  CreateIndex?: number
  ModifyIndex?: number
  [key: string]: unknown
}

export type SerfWant = 'passing' | 'critical' | 'absent'

export interface ConsulStack {
  controller: string
  computes: string[]
  logDir: string
  /** the stack's directory (opts.dir) */
  dir: string
  /** ms from startConsulStack() call until it resolved */
  startMs: number
  address(node: string, network: Network): string
  httpAddr(node: string, network: Network): string
  logPath(node: string, network: Network): string
  configDir(node: string, network: Network): string
  pid(node: string, network: Network): number | undefined
  pids(): number[]
  freeze(node: string, network: Network): void
  thaw(node: string, network: Network): void
  kill(node: string, network: Network): Promise<void>
  restart(node: string, network: Network): Promise<void>
  leave(node: string, network: Network): Promise<void>
  maintenance(node: string, network: Network, enable: boolean): Promise<void>
  health(network: Network): Promise<HealthCheck[]>
  /** GET /v1/agent/members on the controller agent of that network */
  members(network: Network): Promise<Array<{ Name: string; Addr: string; Status: number; [k: string]: unknown }>>
  waitForSerf(node: string, network: Network, want: SerfWant, timeoutMs?: number): Promise<number>
  /** like waitForSerf for any check id (e.g. `_node_maintenance`) */
  waitForCheck(node: string, network: Network, checkId: string, want: SerfWant, timeoutMs?: number): Promise<number>
  reloadController(network: Network): Promise<void>
  writeControllerConfig(network: Network, name: string, config: object): void
  stop(): Promise<void>
}

// ---------------------------------------------------------------------------------------------
// Process-wide safety net: whatever happens to this process, agents do not outlive it for long.

const livePids = new Set<number>() // pids (= pgids: spawned detached) of running agents
const pidFiles = new Set<string>()
let exitHookInstalled = false
let signalHooksInstalled = false
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']

function killAllSync(): void {
  for (const pid of livePids) {
    try {
      process.kill(-pid, 'SIGKILL')
    } catch {
      /* gone */
    }
  }
  livePids.clear()
  // the watchdogs must not kill (possibly reused) pids afterwards
  for (const f of pidFiles) {
    try {
      fs.writeFileSync(f, '')
    } catch {
      /* ignore */
    }
  }
}

function onSignal(sig: NodeJS.Signals): void {
  killAllSync()
  uninstallSignalHooks()
  // Re-raise: with no other listener the default action ends the process; a remaining
  // listener (e.g. tap's signal-exit) does its own re-raise.
  process.kill(process.pid, sig)
}

function installHooks(): void {
  if (!exitHookInstalled) {
    process.on('exit', killAllSync)
    exitHookInstalled = true
  }
  if (!signalHooksInstalled) {
    for (const s of SIGNALS) process.on(s, onSignal)
    signalHooksInstalled = true
  }
}

function uninstallSignalHooks(): void {
  if (!signalHooksInstalled) return
  for (const s of SIGNALS) process.removeListener(s, onSignal)
  signalHooksInstalled = false
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^CONSUL_/i.test(k) || /^(https?|all|no)_proxy$/i.test(k)) continue
    env[k] = v
  }
  return env
}

interface HttpResult {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

function httpRequest(hostport: string, urlPath: string, method: string, timeoutMs: number): Promise<HttpResult> {
  const [host, portStr] = hostport.split(':')
  if (!host?.startsWith('127.')) return Promise.reject(new Error(`refusing non-loopback address ${hostport}`))
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(portStr), path: urlPath, method, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        clearTimeout(timer)
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') })
      })
      res.on('error', (e) => {
        clearTimeout(timer)
        reject(e)
      })
    })
    const timer = setTimeout(
      () => req.destroy(new Error(`timeout after ${Math.round(timeoutMs)} ms: ${method} http://${hostport}${urlPath}`)),
      timeoutMs,
    )
    req.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    req.end()
  })
}

/** resolves with an error message when addr:port cannot be bound (another stack there?) */
function portBusy(addr: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer()
    srv.once('error', (e: NodeJS.ErrnoException) => resolve(`${addr}:${port} ${e.code ?? e.message}`))
    srv.listen({ host: addr, port, exclusive: true }, () => srv.close(() => resolve(undefined)))
  })
}

function tail(file: string, lines = 15): string {
  try {
    const text = fs.readFileSync(file, 'utf8').trimEnd().split('\n')
    return text.slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

// ---------------------------------------------------------------------------------------------

interface Agent {
  node: string
  network: Network
  server: boolean
  addr: string
  dataDir: string
  configDir: string
  logPath: string
  child?: ChildProcess
  exited?: Promise<void>
  frozen: boolean
}

/** Where every agent lives: controller i = 1, computes i = 2, 3, ...; one octet per network. */
interface AddressPlan {
  octet: number
  controller: string
  computes: string[]
  allNodes: string[]
  addressOf(node: string, network: Network): string
}

type DeathListener = (a: Agent, code: number | null, sig: NodeJS.Signals | null) => void

/** What the phases of a stack's life share. */
interface Stack {
  plan: AddressPlan
  opts: ConsulStackOptions
  dir: string
  logDir: string
  pidFile: string
  bin: string
  env: NodeJS.ProcessEnv
  log: (msg: string) => void
  agents: Map<string, Agent>
  /** "an agent died" listeners, used to fail fast during start/restart */
  deathListeners: Set<DeathListener>
  /** set when stop() begins: agents exiting from then on are expected, and the stack refuses faults */
  stopped: boolean
  stopPromise?: Promise<void>
  watchdog?: ChildProcess
}

const WATCHDOG_SCRIPT = [
  'cat >/dev/null', // returns when our parent's end of the pipe closes (it died or stop())
  'if [ -f "$1" ]; then',
  '  for p in $(cat "$1"); do kill -s CONT -- "-$p" 2>/dev/null; kill -s KILL -- "-$p" 2>/dev/null; done',
  '  rm -f "$1"',
  'fi',
].join('\n')

const NET_OFFSET: Record<Network, number> = { management: 0, tenant: 1, storage: 2 }

export async function startConsulStack(opts: ConsulStackOptions): Promise<ConsulStack> {
  const t0 = performance.now()
  const plan = addressPlan(opts)
  await assertAddressesFree(plan)
  const s = prepareAgents(plan, opts)
  startWatchdog(s)
  await startAllAgents(s, opts.startTimeoutMs ?? 60_000)
  const startMs = Math.round(performance.now() - t0)
  s.log(`consul stack up in ${startMs} ms: ${plan.allNodes.length} nodes × ${NETWORKS.length} networks`)
  return stackApi(s, startMs)
}

// ---------------------------------------------------------------------------------------------
// Start-up phases, in the order startConsulStack runs them

/** Validates the node names and the octet, and maps every agent to its address. */
function addressPlan(opts: ConsulStackOptions): AddressPlan {
  const controller = opts.controller ?? 'controller'
  const computes = [...opts.computes]
  const octet = opts.octet
  if (!Number.isInteger(octet) || octet < 1 || octet > 253) throw new Error(`octet must be an integer in 1..253, got ${octet}`)
  const allNodes = [controller, ...computes]
  if (new Set(allNodes).size !== allNodes.length) throw new Error(`node names must be unique: ${allNodes.join(', ')}`)
  if (allNodes.length > 254) throw new Error('too many nodes for the address plan')
  for (const n of allNodes) if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(n)) throw new Error(`bad node name ${JSON.stringify(n)}`)
  const addressOf = (node: string, network: Network): string => {
    const i = allNodes.indexOf(node)
    if (i < 0) throw new Error(`unknown node ${node}`)
    if (!NETWORKS.includes(network)) throw new Error(`unknown network ${network}`)
    return `127.${octet + NET_OFFSET[network]}.0.${i + 1}`
  }
  return { octet, controller, computes, allNodes, addressOf }
}

/** Before touching anything: another stack on the same octet, or leftover agents, would collide. */
async function assertAddressesFree(plan: AddressPlan): Promise<void> {
  const probes = NETWORKS.flatMap((network) =>
    plan.allNodes.flatMap((node) =>
      [8500, 8301, ...(node === plan.controller ? [8300] : [])].map((p) => portBusy(plan.addressOf(node, network), p)),
    ),
  )
  const busy = (await Promise.all(probes)).filter((x): x is string => x !== undefined)
  if (busy.length === 0) return
  throw new Error(
    `cannot start the consul stack on octet ${plan.octet}: address(es) in use: ${busy.join(', ')} ` +
      '(another stack on the same octet, or leftover agents?)',
  )
}

/** Fresh data and config dirs for every agent (these subdirectories are ours), config files written. */
function prepareAgents(plan: AddressPlan, opts: ConsulStackOptions): Stack {
  const dir = path.resolve(opts.dir)
  const s: Stack = {
    plan,
    opts,
    dir,
    logDir: path.join(dir, 'logs'),
    pidFile: path.join(dir, 'agent-pids'),
    bin: opts.consulBin ?? process.env.CONSUL_BIN ?? 'consul',
    env: cleanEnv(),
    log: opts.log ?? ((): void => {}),
    agents: new Map(),
    deathListeners: new Set(),
    stopped: false,
  }
  const dataRoot = path.join(dir, 'data')
  const configRoot = path.join(dir, 'config')
  fs.rmSync(dataRoot, { recursive: true, force: true })
  fs.rmSync(configRoot, { recursive: true, force: true })
  fs.mkdirSync(s.logDir, { recursive: true })
  for (const network of NETWORKS) {
    for (const node of plan.allNodes) {
      const name = `${node}-${network}`
      const a: Agent = {
        node,
        network,
        server: node === plan.controller,
        addr: plan.addressOf(node, network),
        dataDir: path.join(dataRoot, name),
        configDir: path.join(configRoot, name),
        logPath: path.join(s.logDir, `${name}.log`),
        frozen: false,
      }
      writeAgentFiles(a, opts)
      s.agents.set(key(node, network), a)
    }
  }
  return s
}

function writeAgentFiles(a: Agent, opts: ConsulStackOptions): void {
  fs.mkdirSync(a.dataDir, { recursive: true })
  fs.mkdirSync(a.configDir, { recursive: true })
  fs.writeFileSync(path.join(a.configDir, '00-base.json'), JSON.stringify(baseConfig(a.server, a.network, opts), null, 2))
  if (a.server) {
    const extra = opts.controllerConfig?.[a.network] ?? []
    extra.forEach((cfg, i) => {
      fs.writeFileSync(path.join(a.configDir, `50-extra-${i}.json`), JSON.stringify(cfg, null, 2))
    })
  }
  fs.writeFileSync(a.logPath, '') // truncate
}

function baseConfig(server: boolean, network: Network, opts: ConsulStackOptions): Record<string, unknown> {
  return {
    datacenter: network,
    log_level: 'INFO',
    disable_update_check: true, // no traffic to checkpoint.hashicorp.com
    disable_host_node_id: true, // all agents share this host: random node ids
    ports: { dns: -1, grpc: -1, https: -1, serf_wan: -1 },
    ...(server
      ? // leave_drain_time: a server dwells 5 s by default during a graceful leave so clients
        // can retry against other servers; there are none here.
        { performance: { raft_multiplier: 1, leave_drain_time: '200ms' } }
      : { retry_interval: '500ms' }),
    ...(opts.fastGossip ? { gossip_lan: { probe_interval: '400ms', probe_timeout: '200ms', suspicion_mult: 2 } } : {}),
    ...(opts.extraConfig ?? {}),
  }
}

/** The watchdog covers a SIGKILL of this process: it kills the agents in the pid file when our pipe closes. */
function startWatchdog(s: Stack): void {
  fs.writeFileSync(s.pidFile, '')
  pidFiles.add(s.pidFile)
  const watchdog = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, 'consul-stack-watchdog', s.pidFile], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  })
  watchdog.on('error', () => {}) // /bin/sh missing: the other safety nets remain
  watchdog.stdin?.on('error', () => {})
  ;(watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.()
  watchdog.unref()
  s.watchdog = watchdog
}

/** Every agent at once; resolved when each shows serfHealth passing; on any failure, the stack is stopped. */
async function startAllAgents(s: Stack, timeoutMs: number): Promise<void> {
  const all = [...s.agents.values()]
  const death = failOnDeath(s, all)
  try {
    for (const a of all) spawnAgent(s, a)
    await Promise.race([death.promise, Promise.all(all.map((a) => waitForCheck(s, a.node, a.network, 'serfHealth', 'passing', timeoutMs)))])
    const dead = all.filter((a) => !a.exited)
    if (dead.length > 0) throw new Error(`consul agents exited while starting: ${dead.map((a) => a.logPath).join(', ')}`)
  } catch (e) {
    await stopStack(s)
    throw e
  } finally {
    death.cancel()
  }
}

/** The running stack's interface: each method a thin call into the functions below. */
function stackApi(s: Stack, startMs: number): ConsulStack {
  const { controller, computes, addressOf } = s.plan
  return {
    controller,
    computes,
    logDir: s.logDir,
    dir: s.dir,
    startMs,
    address: addressOf,
    httpAddr: (node, network) => httpAddr(s, node, network),
    logPath: (node, network) => agentOf(s, node, network).logPath,
    configDir: (node, network) => agentOf(s, node, network).configDir,
    pid: (node, network) => {
      const a = agentOf(s, node, network)
      return a.exited ? a.child?.pid : undefined
    },
    pids: () => runningAgents(s).map((a) => a.child!.pid!),
    freeze: (node, network) => freeze(s, node, network),
    thaw: (node, network) => thaw(s, node, network),
    kill: (node, network) => kill(s, node, network),
    leave: (node, network) => leave(s, node, network),
    restart: (node, network) => restart(s, node, network),
    maintenance: (node, network, enable) => maintenance(s, node, network, enable),
    health: (network) => health(s, network),
    members: (network) => members(s, network),
    waitForSerf: (node, network, want, timeoutMs) => waitForCheck(s, node, network, 'serfHealth', want, timeoutMs),
    waitForCheck: (node, network, checkId, want, timeoutMs) => waitForCheck(s, node, network, checkId, want, timeoutMs),
    reloadController: (network) => reloadController(s, network),
    writeControllerConfig: (network, name, config) => writeControllerConfig(s, network, name, config),
    stop: () => stopStack(s),
  }
}

// ---------------------------------------------------------------------------------------------
// Agents: lookup, spawn, exit

const key = (node: string, network: Network): string => `${node}/${network}`

function agentOf(s: Stack, node: string, network: Network): Agent {
  const a = s.agents.get(key(node, network))
  if (!a) throw new Error(`no agent ${node} on ${network}`)
  return a
}

const runningAgents = (s: Stack): Agent[] => [...s.agents.values()].filter((a) => a.exited && a.child?.pid !== undefined)

const httpAddr = (s: Stack, node: string, network: Network): string => `${s.plan.addressOf(node, network)}:8500`

function argsOf(s: Stack, a: Agent): string[] {
  const args = ['agent', `-node=${a.node}`, `-bind=${a.addr}`, `-client=${a.addr}`, `-data-dir=${a.dataDir}`, `-config-dir=${a.configDir}`]
  if (a.server) args.push('-server', '-bootstrap-expect=1')
  else args.push(`-retry-join=${s.plan.addressOf(s.plan.controller, a.network)}`)
  return args
}

/** The watchdog's list: the pids of the agents running now. */
function writePidFile(s: Stack): void {
  const ps = runningAgents(s).map((a) => a.child!.pid!)
  try {
    fs.writeFileSync(s.pidFile, `${ps.join('\n')}\n`)
  } catch {
    /* dir removed by the caller? */
  }
}

function spawnAgent(s: Stack, a: Agent): void {
  const out = fs.openSync(a.logPath, 'a')
  let child: ChildProcess
  try {
    child = spawn(s.bin, argsOf(s, a), { detached: true, stdio: ['ignore', out, out], env: s.env, cwd: a.dataDir })
  } finally {
    fs.closeSync(out)
  }
  a.child = child
  a.frozen = false
  const pid = child.pid
  a.exited = new Promise<void>((resolve) => {
    let done = false
    const finish = (code: number | null, sig: NodeJS.Signals | null): void => {
      if (done) return
      done = true
      if (pid !== undefined) livePids.delete(pid)
      a.exited = undefined
      writePidFile(s)
      if (!s.stopped) s.log(`consul ${a.node}/${a.network} (pid ${pid}) exited code=${code} signal=${sig}`)
      for (const l of s.deathListeners) l(a, code, sig)
      resolve()
    }
    child.on('exit', finish)
    child.on('error', (e) => {
      fs.appendFileSync(a.logPath, `\n[stack] spawn error: ${e.message}\n`)
      finish(null, null)
    })
  })
  child.unref()
  if (pid !== undefined) {
    livePids.add(pid)
    installHooks()
  }
  writePidFile(s)
  s.log(`started consul ${a.node}/${a.network} at ${a.addr} pid ${pid}`)
}

/** Awaits an agent's exit while keeping the event loop alive. */
async function awaitExit(a: Agent, timeoutMs: number, what: string): Promise<void> {
  const exited = a.exited
  if (!exited || !a.child) return
  a.child.ref()
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      exited,
      new Promise<never>((_, rej) => {
        timer = setTimeout(
          () => rej(new Error(`${what}: consul ${a.node}/${a.network} did not exit within ${timeoutMs} ms (log: ${a.logPath})`)),
          timeoutMs,
        )
      }),
    ])
  } finally {
    clearTimeout(timer)
    a.child?.unref()
  }
}

/** Rejects as soon as one of the given agents dies (used while waiting for start/restart). */
function failOnDeath(s: Stack, which: Agent[]): { promise: Promise<never>; cancel: () => void } {
  let cancel = (): void => {}
  const promise = new Promise<never>((_, reject) => {
    const l: DeathListener = (a, code, sig) => {
      if (!which.includes(a)) return
      reject(
        new Error(
          `consul ${a.node}/${a.network} exited (code ${code}, signal ${sig}) while starting; log ${a.logPath}:\n${tail(a.logPath)}`,
        ),
      )
    }
    s.deathListeners.add(l)
    cancel = (): void => {
      s.deathListeners.delete(l)
    }
  })
  promise.catch(() => {})
  return { promise, cancel }
}

function signalGroup(a: Agent, sig: NodeJS.Signals): void {
  const pid = a.child?.pid
  if (pid === undefined || !a.exited) throw new Error(`consul ${a.node}/${a.network} is not running`)
  try {
    process.kill(-pid, sig)
  } catch (e) {
    // fall back to the pid alone
    process.kill(pid, sig)
    void e
  }
}

function runCli(s: Stack, args: string[], timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(s.bin, args, { env: s.env, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`consul ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`.trim()))
      else resolve(stdout + stderr)
    })
  })
}

function ensureUsable(s: Stack): void {
  if (s.stopped) throw new Error('the consul stack is stopped')
}

// ---------------------------------------------------------------------------------------------
// Fault injection

function freeze(s: Stack, node: string, network: Network): void {
  ensureUsable(s)
  const a = agentOf(s, node, network)
  signalGroup(a, 'SIGSTOP')
  a.frozen = true
  s.log(`froze ${node}/${network}`)
}

function thaw(s: Stack, node: string, network: Network): void {
  ensureUsable(s)
  const a = agentOf(s, node, network)
  signalGroup(a, 'SIGCONT')
  a.frozen = false
  s.log(`thawed ${node}/${network}`)
}

async function kill(s: Stack, node: string, network: Network): Promise<void> {
  ensureUsable(s)
  const a = agentOf(s, node, network)
  signalGroup(a, 'SIGKILL') // a crash: no leave, whatever leave_on_terminate says
  await awaitExit(a, 10_000, 'kill')
  s.log(`killed ${node}/${network}`)
}

async function leave(s: Stack, node: string, network: Network): Promise<void> {
  ensureUsable(s)
  const a = agentOf(s, node, network)
  if (!a.exited) throw new Error(`consul ${node}/${network} is not running`)
  if (a.frozen) throw new Error(`consul ${node}/${network} is frozen: thaw it before leave`)
  await runCli(s, ['leave', `-http-addr=${httpAddr(s, node, network)}`])
  await awaitExit(a, 20_000, 'leave')
  s.log(`${node}/${network} left`)
}

/** Starts a killed or departed agent again (same data dir, same node id) and waits until it is back in its cluster. */
async function restart(s: Stack, node: string, network: Network): Promise<void> {
  ensureUsable(s)
  const a = agentOf(s, node, network)
  if (a.exited) throw new Error(`consul ${node}/${network} is still running (pid ${a.child?.pid}): kill or leave it first`)
  const d = failOnDeath(s, [a])
  try {
    spawnAgent(s, a)
    await Promise.race([d.promise, rejoin(s, a)])
  } finally {
    d.cancel()
  }
  s.log(`restarted ${node}/${network}`)
}

async function rejoin(s: Stack, a: Agent): Promise<void> {
  await waitJoined(a, 30_000)
  // the others on this network that can answer now
  const others = () => [...s.agents.values()].filter((o) => o !== a && o.network === a.network && o.exited && !o.frozen)
  if (a.server) {
    // A server that left does not rejoin by itself (its serf snapshot says "left"), and clients
    // do not retry-join after their first join: join them from here.
    for (const other of others()) {
      await httpRequest(`${a.addr}:8500`, `/v1/agent/join/${other.addr}`, 'PUT', 5_000).catch(() => undefined)
    }
  }
  await waitForCheck(s, a.node, a.network, 'serfHealth', 'passing', 30_000)
  if (!a.server) return
  // the controller is back only when it sees its running clients again
  await Promise.all(others().map((o) => waitForCheck(s, o.node, a.network, 'serfHealth', 'passing', 30_000)))
}

/** The agent answers HTTP and knows a leader (it has joined its cluster). */
async function waitJoined(a: Agent, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  let lastErr = ''
  while (performance.now() < deadline) {
    try {
      const r = await httpRequest(`${a.addr}:8500`, '/v1/status/leader', 'GET', 2_000)
      if (r.status === 200 && r.body.trim() !== '""' && r.body.trim() !== '') return
      lastErr = `${r.status} ${r.body.trim()}`
    } catch (e) {
      lastErr = (e as Error).message
    }
    await sleep(100)
  }
  throw new Error(`consul ${a.node}/${a.network} did not join its cluster within ${timeoutMs} ms (${lastErr}); log ${a.logPath}`)
}

async function maintenance(s: Stack, node: string, network: Network, enable: boolean): Promise<void> {
  ensureUsable(s)
  agentOf(s, node, network)
  const args = ['maint', enable ? '-enable' : '-disable', `-http-addr=${httpAddr(s, node, network)}`]
  if (enable) args.push('-reason=consul-stack fault injection')
  await runCli(s, args)
  s.log(`maintenance ${enable ? 'on' : 'off'} for ${node}/${network}`)
}

// ---------------------------------------------------------------------------------------------
// Observation and the controller's config

async function health(s: Stack, network: Network): Promise<HealthCheck[]> {
  const r = await httpRequest(httpAddr(s, s.plan.controller, network), '/v1/health/state/any', 'GET', 10_000)
  if (r.status !== 200) throw new Error(`GET /v1/health/state/any on ${network}: ${r.status} ${r.body.trim()}`)
  return JSON.parse(r.body) as HealthCheck[]
}

async function members(s: Stack, network: Network): Promise<Array<{ Name: string; Addr: string; Status: number }>> {
  const r = await httpRequest(httpAddr(s, s.plan.controller, network), '/v1/agent/members', 'GET', 10_000)
  if (r.status !== 200) throw new Error(`GET /v1/agent/members on ${network}: ${r.status} ${r.body.trim()}`)
  return JSON.parse(r.body) as Array<{ Name: string; Addr: string; Status: number }>
}

/**
 * Waits until the check is in the wanted state, as the controller's agent sees it; resolves
 * with the ms it took. Blocking queries return as soon as any check changes, so the time
 * measured is precise.
 */
async function waitForCheck(
  s: Stack,
  node: string,
  network: Network,
  checkId: string,
  want: SerfWant,
  timeoutMs = 30_000,
): Promise<number> {
  const a = agentOf(s, node, network) // validates names
  const ctl = agentOf(s, s.plan.controller, network)
  const start = performance.now()
  const deadline = start + timeoutMs
  let index = 0
  let last: HealthCheck[] | undefined
  let lastErr = ''
  for (;;) {
    const remaining = deadline - performance.now()
    if (remaining <= 0) break
    const wait = Math.max(1, Math.min(Math.floor(remaining), 10_000))
    try {
      const q = index > 0 ? `?index=${index}&wait=${wait}ms` : ''
      const r = await httpRequest(`${ctl.addr}:8500`, `/v1/health/state/any${q}`, 'GET', Math.min(remaining, wait + 2_000) + 50)
      if (r.status !== 200) {
        lastErr = `${r.status} ${r.body.trim()}`
        await sleep(Math.min(100, Math.max(0, deadline - performance.now())))
        continue
      }
      const checks = JSON.parse(r.body) as HealthCheck[]
      last = checks
      lastErr = ''
      const c = checks.find((x) => x.Node === node && x.CheckID === checkId)
      const ok = want === 'absent' ? c === undefined : c?.Status === want
      if (ok) return Math.round(performance.now() - start)
      const newIndex = Number(r.headers['x-consul-index'] ?? 0)
      index = Number.isFinite(newIndex) && newIndex > 0 && newIndex >= index ? newIndex : 0
    } catch (e) {
      // a blocking query cut at our deadline is not an error worth reporting
      if (performance.now() < deadline - 10) lastErr = (e as Error).message
      await sleep(Math.min(100, Math.max(0, deadline - performance.now())))
    }
  }
  throw new Error(
    `waiting for ${checkId} of ${node} on ${network} to be ${want}: timed out after ${timeoutMs} ms; ` +
      `last seen: ${describeCheck(last, node, checkId)}${lastErr ? `; last error: ${lastErr}` : ''}; ` +
      `logs: ${a.logPath}${a === ctl ? '' : `, ${ctl.logPath}`}`,
  )
}

function describeCheck(checks: HealthCheck[] | undefined, node: string, checkId: string): string {
  if (!checks) return 'unknown (no answer from the controller agent)'
  const c = checks.find((x) => x.Node === node && x.CheckID === checkId)
  return c ? `${c.Status} (${c.Output ?? ''})` : 'absent'
}

async function reloadController(s: Stack, network: Network): Promise<void> {
  ensureUsable(s)
  await runCli(s, ['reload', `-http-addr=${httpAddr(s, s.plan.controller, network)}`])
  s.log(`reloaded ${s.plan.controller}/${network}`)
}

function writeControllerConfig(s: Stack, network: Network, name: string, config: object): void {
  const a = agentOf(s, s.plan.controller, network)
  const file = /\.(json|hcl)$/.test(name) ? name : `${name}.json`
  if (file.includes('/') || file.startsWith('.')) throw new Error(`bad config file name ${name}`)
  fs.writeFileSync(path.join(a.configDir, file), JSON.stringify(config, null, 2))
}

// ---------------------------------------------------------------------------------------------
// Stop

/** SIGKILLs every running agent (thawed first), then releases the watchdog. Idempotent. */
function stopStack(s: Stack): Promise<void> {
  s.stopPromise ??= (async (): Promise<void> => {
    s.stopped = true
    const running = runningAgents(s)
    for (const a of running) killGroup(a)
    await Promise.all(running.map((a) => awaitExit(a, 10_000, 'stop')))
    // the watchdog: empty pid list, close its pipe, it exits by itself
    try {
      fs.writeFileSync(s.pidFile, '')
    } catch {
      /* ignore */
    }
    pidFiles.delete(s.pidFile)
    s.watchdog?.stdin?.end()
    if (livePids.size === 0) uninstallSignalHooks()
    s.log(`stack stopped (${running.length} agents killed)`)
  })()
  return s.stopPromise
}

function killGroup(a: Agent): void {
  const pid = a.child!.pid!
  try {
    process.kill(-pid, 'SIGCONT')
  } catch {
    /* gone */
  }
  a.frozen = false
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      /* gone */
    }
  }
}
