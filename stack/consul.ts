/**
 * A real Consul stack on loopback, for integration tests, benchmarks and the demo.
 *
 * Layout (the product's): three independent Consul clusters, one per network
 * (management, tenant, storage). Each controller runs the three servers (one per network),
 * every compute runs three clients. Node names are equal across the clusters. Every agent
 * binds its own loopback address, so the default ports are used everywhere:
 *
 *   management 127.<octet>.0.<i>, tenant 127.<octet+1>.0.<i>, storage 127.<octet+2>.0.<i>
 *   controllers i = 1..C, computes i = C+1, C+2, ...
 *
 * One controller (the default): `bootstrap_expect = 1`. Several (`controllers`, e.g. three):
 * `bootstrap_expect = C`, every server retry-joins the others, every client all servers.
 * Parallel test files must use different octets.
 *
 * ACLs (`acl`): every agent gets `acl { enabled, default_policy deny, enable_token_persistence,
 * tokens { agent } }`, the servers also `tokens.master` (1.8's name). The stack itself speaks
 * with the master token (HTTP header, `-token` on the command line; never in the agents'
 * environment, which watch handlers inherit). start-up waits out 1.8's "legacy mode";
 * createToken() makes a policy and a token per cluster.
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
 *   *Node         the same for all of a node's agents at once (a whole controller or compute).
 * All of them work on controllers (servers) as on computes.
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
  /** default 'controller'; with `controllers`, must be absent or equal to its first name */
  controller?: string
  /**
   * controller node names, each running a server per network; default [controller]. With
   * several, `bootstrap_expect` is their number and they retry-join each other.
   */
  controllers?: string[]
  /** management 127.<octet>.0.<i>, tenant 127.<octet+1>.0.<i>, storage 127.<octet+2>.0.<i> */
  octet: number
  /** extra JSON config objects written into every controller agent's config dir BEFORE start */
  controllerConfig?: Partial<Record<Network, object[]>>
  /** the same per controller (added to controllerConfig), e.g. a watch per controller */
  controllerConfigs?: Record<string, Partial<Record<Network, object[]>>>
  /** ACLs on, default deny; the stack speaks with masterToken; agents' agent token default: masterToken */
  acl?: AclOptions
  /** gossip_lan { probe_interval 400ms, probe_timeout 200ms, suspicion_mult 2 } on every agent */
  fastGossip?: boolean
  log?: (msg: string) => void
  /** consul binary; default $CONSUL_BIN or 'consul' (on PATH) */
  consulBin?: string
  /** how long startConsulStack waits for leaders and passing serfHealth; default 60000 */
  startTimeoutMs?: number
  /** extra JSON merged into every agent's base config (shallow) */
  extraConfig?: object
  /**
   * The user the agents run as (Debian's package runs them as `consul`), so that their watches
   * and script checks do too: data dirs are chowned to it, the stack's dirs made traversable.
   * Default: this process's user.
   */
  user?: { uid: number; gid: number }
  /** `node_meta` per node and network (what an operator puts in an agent's config, e.g. its BMC's address). */
  nodeMeta?: Record<string, Partial<Record<Network, Record<string, string>>>>
}

export interface AclOptions {
  /** a UUID: `acl.tokens.master` of the servers, and what the stack itself sends */
  masterToken: string
  /** `acl.tokens.agent` of every agent (node registration, anti-entropy); default masterToken */
  agentToken?: string
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
  /** the first controller */
  controller: string
  controllers: string[]
  computes: string[]
  /** the ACL options the stack was started with */
  acl?: AclOptions
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
  /** the running agents' pids of one node */
  nodePids(node: string): number[]
  freeze(node: string, network: Network): void
  thaw(node: string, network: Network): void
  kill(node: string, network: Network): Promise<void>
  restart(node: string, network: Network): Promise<void>
  /** all of the node's running agents at once */
  freezeNode(node: string): void
  /** all of the node's frozen agents at once */
  thawNode(node: string): void
  /** all of the node's running agents at once (SIGKILL) */
  killNode(node: string): Promise<void>
  /** all of the node's stopped agents at once; resolves when they are back in their clusters */
  restartNode(node: string): Promise<void>
  leave(node: string, network: Network): Promise<void>
  maintenance(node: string, network: Network, enable: boolean): Promise<void>
  /**
   * GET /v1/health/state/any through a controller agent: `via`, else the first controller whose
   * agent on that network runs and is not frozen. With ACLs, with the master token.
   */
  health(network: Network, via?: string): Promise<HealthCheck[]>
  /** GET /v1/agent/members on a controller agent of that network (`via` as for health) */
  members(network: Network, via?: string): Promise<Array<{ Name: string; Addr: string; Status: number; [k: string]: unknown }>>
  /** `want`: one state, or any of several (a killed server is critical, then autopilot may remove it at once) */
  waitForSerf(node: string, network: Network, want: SerfWant | SerfWant[], timeoutMs?: number, via?: string): Promise<number>
  /** like waitForSerf for any check id (e.g. `_node_maintenance`) */
  waitForCheck(
    node: string,
    network: Network,
    checkId: string,
    want: SerfWant | SerfWant[],
    timeoutMs?: number,
    via?: string,
  ): Promise<number>
  /**
   * The controller that is the cluster's leader, as every running, unfrozen server of that
   * network says (`/v1/status/leader`); undefined when there is none or they disagree.
   */
  leader(network: Network): Promise<string | undefined>
  /** Waits for leader() to name a controller other than `except`; resolves with it and the ms it took. */
  waitForLeader(network: Network, opts?: { except?: string; timeoutMs?: number }): Promise<{ leader: string; ms: number }>
  /** reloads a controller's agent (default: the first controller) */
  reloadController(network: Network, controller?: string): Promise<void>
  /** writes a config file into a controller agent's config dir (default: the first controller); reload to apply */
  writeControllerConfig(network: Network, name: string, config: object, controller?: string): void
  /**
   * With ACLs: creates policy `name` with these rules and a token holding it in that network's
   * cluster (with the master token); resolves with the token's SecretID. `secretId` fixes the
   * SecretID (e.g. the same token in the three clusters).
   */
  createToken(network: Network, name: string, rules: string, secretId?: string): Promise<string>
  /** PUT /v1/agent/token/<kind> on one agent (kind `default`: what a request or watch without a token uses) */
  setAgentToken(node: string, network: Network, kind: 'default' | 'agent', token: string): Promise<void>
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

/**
 * What this shell has and an agent started by systemd (consul-config/systemd) has not, unset for
 * what the agents run, and for what a bench runs in their stead: node's extra CA bundle, which
 * node 20 parses at every start, ~85 ms of each watch run on this machine (issue #22).
 */
export const NOT_IN_AGENTS_ENV: Record<string, undefined> = { NODE_EXTRA_CA_CERTS: undefined }

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^CONSUL_/i.test(k) || /^(https?|all|no)_proxy$/i.test(k)) continue
    if (k in NOT_IN_AGENTS_ENV) continue
    env[k] = v
  }
  return env
}

interface HttpResult {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

function httpRequest(
  hostport: string,
  urlPath: string,
  method: string,
  timeoutMs: number,
  extra: { headers?: Record<string, string>; body?: string } = {},
): Promise<HttpResult> {
  const [host, portStr] = hostport.split(':')
  if (!host?.startsWith('127.')) return Promise.reject(new Error(`refusing non-loopback address ${hostport}`))
  return new Promise((resolve, reject) => {
    const opts = { host, port: Number(portStr), path: urlPath, method, agent: false, headers: extra.headers }
    const req = http.request(opts, (res) => {
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
    req.end(extra.body)
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

/** Where every agent lives: controllers i = 1..C, computes i = C+1, ...; one octet per network. */
interface AddressPlan {
  octet: number
  /** the first controller */
  controller: string
  controllers: string[]
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
  /** X-Consul-Token with the master token when ACLs are on, else none */
  headers: Record<string, string>
  /** `-token=<master>` for the consul CLI when ACLs are on, else none */
  cliToken: string[]
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
  const controllers = plan.controllers.length === 1 ? '' : `${plan.controllers.length} controllers, `
  s.log(
    `consul stack up in ${startMs} ms: ${controllers}${plan.allNodes.length} nodes × ${NETWORKS.length} networks${opts.acl ? ', ACLs on' : ''}`,
  )
  return stackApi(s, startMs)
}

/** The address an agent of a stack started with these options has (no stack needed). */
export function consulAddress(opts: PlanOptions, node: string, network: Network): string {
  return addressPlan(opts).addressOf(node, network)
}

// ---------------------------------------------------------------------------------------------
// Start-up phases, in the order startConsulStack runs them

type PlanOptions = Pick<ConsulStackOptions, 'octet' | 'computes' | 'controller' | 'controllers'>

/** Validates the node names and the octet, and maps every agent to its address. */
function addressPlan(opts: PlanOptions): AddressPlan {
  const controllers = controllerNames(opts)
  const computes = [...opts.computes]
  const octet = opts.octet
  if (!Number.isInteger(octet) || octet < 1 || octet > 253) throw new Error(`octet must be an integer in 1..253, got ${octet}`)
  const allNodes = [...controllers, ...computes]
  if (new Set(allNodes).size !== allNodes.length) throw new Error(`node names must be unique: ${allNodes.join(', ')}`)
  if (allNodes.length > 254) throw new Error('too many nodes for the address plan')
  for (const n of allNodes) if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(n)) throw new Error(`bad node name ${JSON.stringify(n)}`)
  const addressOf = (node: string, network: Network): string => {
    const i = allNodes.indexOf(node)
    if (i < 0) throw new Error(`unknown node ${node}`)
    if (!NETWORKS.includes(network)) throw new Error(`unknown network ${network}`)
    return `127.${octet + NET_OFFSET[network]}.0.${i + 1}`
  }
  return { octet, controller: controllers[0]!, controllers, computes, allNodes, addressOf }
}

function controllerNames(opts: PlanOptions): string[] {
  if (opts.controllers === undefined) return [opts.controller ?? 'controller']
  if (opts.controllers.length === 0) throw new Error('controllers must name at least one controller')
  if (opts.controller !== undefined && opts.controller !== opts.controllers[0]) {
    throw new Error(`controller ${opts.controller} differs from controllers[0] ${opts.controllers[0]}`)
  }
  return [...opts.controllers]
}

/** Before touching anything: another stack on the same octet, or leftover agents, would collide. */
async function assertAddressesFree(plan: AddressPlan): Promise<void> {
  const probes = NETWORKS.flatMap((network) =>
    plan.allNodes.flatMap((node) =>
      [8500, 8301, ...(plan.controllers.includes(node) ? [8300] : [])].map((p) => portBusy(plan.addressOf(node, network), p)),
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
  if (opts.acl && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(opts.acl.masterToken)) {
    throw new Error('acl.masterToken must be a UUID')
  }
  const strangers = Object.keys(opts.controllerConfigs ?? {}).filter((n) => !plan.controllers.includes(n))
  if (strangers.length > 0) throw new Error(`controllerConfigs for non-controllers: ${strangers.join(', ')}`)
  const s: Stack = {
    plan,
    opts,
    dir,
    logDir: path.join(dir, 'logs'),
    pidFile: path.join(dir, 'agent-pids'),
    bin: opts.consulBin ?? process.env.CONSUL_BIN ?? 'consul',
    env: cleanEnv(),
    log: opts.log ?? ((): void => {}),
    headers: opts.acl ? { 'X-Consul-Token': opts.acl.masterToken } : {},
    cliToken: opts.acl ? [`-token=${opts.acl.masterToken}`] : [],
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
        server: plan.controllers.includes(node),
        addr: plan.addressOf(node, network),
        dataDir: path.join(dataRoot, name),
        configDir: path.join(configRoot, name),
        logPath: path.join(s.logDir, `${name}.log`),
        frozen: false,
      }
      writeAgentFiles(s, a)
      s.agents.set(key(node, network), a)
    }
  }
  return s
}

function writeAgentFiles(s: Stack, a: Agent): void {
  const opts = s.opts
  fs.mkdirSync(a.dataDir, { recursive: true })
  fs.mkdirSync(a.configDir, { recursive: true })
  if (opts.user) {
    // the agent writes its data dir; it reads its config dir (root's, 0755, files 0644)
    fs.chownSync(a.dataDir, opts.user.uid, opts.user.gid)
    for (const d of [s.dir, path.dirname(a.dataDir), path.dirname(a.configDir)]) fs.chmodSync(d, 0o755)
  }
  const base = baseConfig(a.server, a.network, opts, s.plan.controllers.length)
  // data_dir in the files too (the -data-dir flag wins anyway): `consul validate DIR`, which
  // install-watches runs on the directory, refuses a directory without it, as an agent would.
  fs.writeFileSync(path.join(a.configDir, '00-base.json'), JSON.stringify({ ...base, data_dir: a.dataDir }, null, 2))
  if (a.server) {
    const extra = [...(opts.controllerConfig?.[a.network] ?? []), ...(opts.controllerConfigs?.[a.node]?.[a.network] ?? [])]
    extra.forEach((cfg, i) => {
      fs.writeFileSync(path.join(a.configDir, `50-extra-${i}.json`), JSON.stringify(cfg, null, 2))
    })
  }
  const meta = opts.nodeMeta?.[a.node]?.[a.network]
  if (meta) fs.writeFileSync(path.join(a.configDir, '40-node-meta.json'), JSON.stringify({ node_meta: meta }, null, 2))
  fs.writeFileSync(a.logPath, '') // truncate
}

function baseConfig(server: boolean, network: Network, opts: ConsulStackOptions, servers: number): Record<string, unknown> {
  return {
    datacenter: network,
    log_level: 'INFO',
    disable_update_check: true, // no traffic to checkpoint.hashicorp.com
    disable_host_node_id: true, // all agents share this host: random node ids
    ports: { dns: -1, grpc: -1, https: -1, serf_wan: -1 },
    ...(server
      ? // leave_drain_time: a server dwells 5 s by default during a graceful leave so clients
        // can retry against other servers; one is alone, several are on one machine.
        // retry_interval (default 30 s): servers start together, the first join attempts fail.
        { performance: { raft_multiplier: 1, leave_drain_time: '200ms' }, ...(servers > 1 ? { retry_interval: '500ms' } : {}) }
      : { retry_interval: '500ms' }),
    ...(opts.fastGossip ? { gossip_lan: { probe_interval: '400ms', probe_timeout: '200ms', suspicion_mult: 2 } } : {}),
    ...(opts.acl ? aclConfig(server, network, opts.acl) : {}),
    ...(opts.extraConfig ?? {}),
  }
}

/** Consul 1.8's names: `tokens.master` (1.11+: initial_management), only read by servers. */
function aclConfig(server: boolean, network: Network, acl: AclOptions): Record<string, unknown> {
  return {
    primary_datacenter: network, // each cluster is its own ACL domain
    acl: {
      enabled: true,
      default_policy: 'deny',
      enable_token_persistence: true,
      tokens: { ...(server ? { master: acl.masterToken } : {}), agent: acl.agentToken ?? acl.masterToken },
    },
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

/**
 * Every agent at once; resolved when each cluster has a leader all its servers agree on, every
 * serfHealth passes and (with ACLs) the ACL system has left legacy mode; on any failure, the
 * stack is stopped.
 */
async function startAllAgents(s: Stack, timeoutMs: number): Promise<void> {
  const all = [...s.agents.values()]
  const death = failOnDeath(s, all)
  try {
    for (const a of all) spawnAgent(s, a)
    await Promise.race([death.promise, waitUntilUp(s, all, timeoutMs)])
    const dead = all.filter((a) => !a.exited)
    if (dead.length > 0) throw new Error(`consul agents exited while starting: ${dead.map((a) => a.logPath).join(', ')}`)
  } catch (e) {
    await stopStack(s)
    throw e
  } finally {
    death.cancel()
  }
}

async function waitUntilUp(s: Stack, all: Agent[], timeoutMs: number): Promise<void> {
  await Promise.all(NETWORKS.map((network) => waitForAgreedLeader(s, network, timeoutMs)))
  await Promise.all(all.map((a) => waitForCheck(s, a.node, a.network, 'serfHealth', 'passing', timeoutMs)))
  if (s.opts.acl) await Promise.all(NETWORKS.map((network) => waitForAclSystem(s, network, timeoutMs)))
}

/**
 * Waits until the ACL system of that network's cluster works with the master token on every
 * agent: 1.8 starts in legacy mode and answers 500 "…legacy mode" for ~10–15 s after the first
 * leader election (servers and clients each switch on their own).
 */
async function waitForAclSystem(s: Stack, network: Network, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (const a of s.agents.values()) if (a.network === network) await waitForAclAgent(s, a, deadline - performance.now())
}

/** The agent accepts the master token (`GET /v1/acl/token/self` → 200): its ACL system is out of legacy mode. */
async function waitForAclAgent(s: Stack, a: Agent, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const r = await httpRequest(`${a.addr}:8500`, '/v1/acl/token/self', 'GET', 2_000, { headers: s.headers }).catch((e: Error) => ({
      status: 0,
      body: e.message,
    }))
    if (r.status === 200) return
    if (performance.now() > deadline) {
      throw new Error(
        `ACLs of ${a.node}/${a.network} not ready within ${Math.round(timeoutMs)} ms: ${r.status} ${r.body.trim()}; log ${a.logPath}`,
      )
    }
    await sleep(250)
  }
}

/** The running stack's interface: each method a thin call into the functions below. */
function stackApi(s: Stack, startMs: number): ConsulStack {
  const { controller, controllers, computes, addressOf } = s.plan
  return {
    controller,
    controllers,
    computes,
    acl: s.opts.acl,
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
    nodePids: (node) =>
      runningAgents(s)
        .filter((a) => a.node === node)
        .map((a) => a.child!.pid!),
    freeze: (node, network) => freeze(s, node, network),
    thaw: (node, network) => thaw(s, node, network),
    kill: (node, network) => kill(s, node, network),
    leave: (node, network) => leave(s, node, network),
    restart: (node, network) => restart(s, node, network),
    freezeNode: (node) => freezeNode(s, node),
    thawNode: (node) => thawNode(s, node),
    killNode: (node) => killNode(s, node),
    restartNode: (node) => restartNode(s, node),
    maintenance: (node, network, enable) => maintenance(s, node, network, enable),
    health: (network, via) => health(s, network, via),
    members: (network, via) => members(s, network, via),
    waitForSerf: (node, network, want, timeoutMs, via) => waitForCheck(s, node, network, 'serfHealth', want, timeoutMs, via),
    waitForCheck: (node, network, checkId, want, timeoutMs, via) => waitForCheck(s, node, network, checkId, want, timeoutMs, via),
    leader: (network) => liveLeader(s, network),
    waitForLeader: (network, opts) => waitForLeader(s, network, opts?.except, opts?.timeoutMs),
    reloadController: (network, ctl) => reloadController(s, network, ctl),
    writeControllerConfig: (network, name, config, ctl) => writeControllerConfig(s, network, name, config, ctl),
    createToken: (network, name, rules, secretId) => createToken(s, network, name, rules, secretId),
    setAgentToken: (node, network, kind, token) => setAgentToken(s, node, network, kind, token),
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
  const servers = s.plan.controllers
  if (a.server) args.push('-server', `-bootstrap-expect=${servers.length}`)
  for (const c of servers) if (c !== a.node) args.push(`-retry-join=${s.plan.addressOf(c, a.network)}`)
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
    const user = s.opts.user ? { uid: s.opts.user.uid, gid: s.opts.user.gid } : {}
    // Under tap, spawn adds its process-info hook to NODE_OPTIONS; a watch handler run as another
    // user could not write tap's files and would crash at exit. env(1) takes it out, then execs consul.
    const [file, args] = s.opts.user ? ['/usr/bin/env', ['-u', 'NODE_OPTIONS', s.bin, ...argsOf(s, a)]] : [s.bin, argsOf(s, a)]
    child = spawn(file, args, { detached: true, stdio: ['ignore', out, out], env: s.env, cwd: a.dataDir, ...user })
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
    execFile(s.bin, [...args, ...s.cliToken], { env: s.env, timeout: timeoutMs }, (err, stdout, stderr) => {
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
  // a restarted agent is in legacy ACL mode again until it sees its servers out of it
  if (s.opts.acl) await waitForAclAgent(s, a, 30_000)
  // the others on this network that can answer now
  const others = () => [...s.agents.values()].filter((o) => o !== a && o.network === a.network && o.exited && !o.frozen)
  if (a.server) {
    // A server that left does not rejoin by itself (its serf snapshot says "left"), and clients
    // do not retry-join after their first join: join them from here.
    for (const other of others()) {
      await httpRequest(`${a.addr}:8500`, `/v1/agent/join/${other.addr}`, 'PUT', 5_000, { headers: s.headers }).catch(() => undefined)
    }
  }
  await waitForCheck(s, a.node, a.network, 'serfHealth', 'passing', 30_000)
  if (!a.server) return
  // a controller is back only when the running servers agree on a leader and it sees the running agents again
  await waitForAgreedLeader(s, a.network, 30_000, liveServers(s, a.network))
  await Promise.all(others().map((o) => waitForCheck(s, o.node, a.network, 'serfHealth', 'passing', 30_000, a.node)))
}

/** The node's agents on every network. */
const agentsOfNode = (s: Stack, node: string): Agent[] => NETWORKS.map((network) => agentOf(s, node, network))

function freezeNode(s: Stack, node: string): void {
  const running = agentsOfNode(s, node).filter((a) => a.exited && !a.frozen)
  if (running.length === 0) throw new Error(`${node} has no running, unfrozen agent`)
  for (const a of running) freeze(s, node, a.network)
}

function thawNode(s: Stack, node: string): void {
  const frozen = agentsOfNode(s, node).filter((a) => a.exited && a.frozen)
  if (frozen.length === 0) throw new Error(`${node} has no frozen agent`)
  for (const a of frozen) thaw(s, node, a.network)
}

async function killNode(s: Stack, node: string): Promise<void> {
  const running = agentsOfNode(s, node).filter((a) => a.exited)
  if (running.length === 0) throw new Error(`${node} has no running agent`)
  await Promise.all(running.map((a) => kill(s, node, a.network)))
}

async function restartNode(s: Stack, node: string): Promise<void> {
  const stopped = agentsOfNode(s, node).filter((a) => !a.exited)
  if (stopped.length === 0) throw new Error(`${node} has no stopped agent`)
  await Promise.all(stopped.map((a) => restart(s, node, a.network)))
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
// Observation and the controllers' config

/** The agent a read goes through: `via`, else the first controller whose agent runs unfrozen, else the first. */
function viaAgent(s: Stack, network: Network, via?: string): Agent {
  if (via !== undefined) return agentOf(s, via, network)
  const live = s.plan.controllers.map((c) => agentOf(s, c, network)).find((a) => a.exited && !a.frozen)
  return live ?? agentOf(s, s.plan.controller, network)
}

async function health(s: Stack, network: Network, via?: string): Promise<HealthCheck[]> {
  const a = viaAgent(s, network, via)
  const r = await httpRequest(`${a.addr}:8500`, '/v1/health/state/any', 'GET', 10_000, { headers: s.headers })
  if (r.status !== 200) throw new Error(`GET /v1/health/state/any on ${network} via ${a.node}: ${r.status} ${r.body.trim()}`)
  return JSON.parse(r.body) as HealthCheck[]
}

async function members(s: Stack, network: Network, via?: string): Promise<Array<{ Name: string; Addr: string; Status: number }>> {
  const a = viaAgent(s, network, via)
  const r = await httpRequest(`${a.addr}:8500`, '/v1/agent/members', 'GET', 10_000, { headers: s.headers })
  if (r.status !== 200) throw new Error(`GET /v1/agent/members on ${network} via ${a.node}: ${r.status} ${r.body.trim()}`)
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
  want: SerfWant | SerfWant[],
  timeoutMs = 30_000,
  via?: string,
): Promise<number> {
  const a = agentOf(s, node, network) // validates names
  const ctl = viaAgent(s, network, via)
  const wants = typeof want === 'string' ? [want] : want
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
      const r = await httpRequest(`${ctl.addr}:8500`, `/v1/health/state/any${q}`, 'GET', Math.min(remaining, wait + 2_000) + 50, {
        headers: s.headers,
      })
      if (r.status !== 200) {
        lastErr = `${r.status} ${r.body.trim()}`
        await sleep(Math.min(100, Math.max(0, deadline - performance.now())))
        continue
      }
      const checks = JSON.parse(r.body) as HealthCheck[]
      last = checks
      lastErr = ''
      const c = checks.find((x) => x.Node === node && x.CheckID === checkId)
      const ok = wants.includes(c === undefined ? 'absent' : (c.Status as SerfWant))
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
    `waiting for ${checkId} of ${node} on ${network} to be ${wants.join(' or ')} (via ${ctl.node}): timed out after ${timeoutMs} ms; ` +
      `last seen: ${describeCheck(last, node, checkId)}${lastErr ? `; last error: ${lastErr}` : ''}; ` +
      `logs: ${a.logPath}${a === ctl ? '' : `, ${ctl.logPath}`}`,
  )
}

function describeCheck(checks: HealthCheck[] | undefined, node: string, checkId: string): string {
  if (!checks) return 'unknown (no answer from the agent)'
  const c = checks.find((x) => x.Node === node && x.CheckID === checkId)
  return c ? `${c.Status} (${c.Output ?? ''})` : 'absent'
}

async function reloadController(s: Stack, network: Network, controller = s.plan.controller): Promise<void> {
  ensureUsable(s)
  const a = controllerAgent(s, controller, network)
  await runCli(s, ['reload', `-http-addr=${a.addr}:8500`])
  s.log(`reloaded ${controller}/${network}`)
}

function writeControllerConfig(s: Stack, network: Network, name: string, config: object, controller = s.plan.controller): void {
  const a = controllerAgent(s, controller, network)
  const file = /\.(json|hcl)$/.test(name) ? name : `${name}.json`
  if (file.includes('/') || file.startsWith('.')) throw new Error(`bad config file name ${name}`)
  fs.writeFileSync(path.join(a.configDir, file), JSON.stringify(config, null, 2))
}

function controllerAgent(s: Stack, controller: string, network: Network): Agent {
  if (!s.plan.controllers.includes(controller)) throw new Error(`${controller} is not a controller (${s.plan.controllers.join(', ')})`)
  return agentOf(s, controller, network)
}

// ---------------------------------------------------------------------------------------------
// Raft leaders

/** The network's servers that run and are not frozen. */
const liveServers = (s: Stack, network: Network): Agent[] =>
  s.plan.controllers.map((c) => agentOf(s, c, network)).filter((a) => a.exited && !a.frozen)

/** The controller every given server names as leader (`/v1/status/leader`), or undefined. */
async function agreedLeader(s: Stack, servers: Agent[]): Promise<string | undefined> {
  if (servers.length === 0) return undefined
  const answers = await Promise.all(
    servers.map((a) =>
      httpRequest(`${a.addr}:8500`, '/v1/status/leader', 'GET', 2_000).then(
        (r) => (r.status === 200 ? (JSON.parse(r.body) as string) : ''),
        () => '',
      ),
    ),
  )
  const first = answers[0]
  if (!first || answers.some((x) => x !== first)) return undefined
  const ip = first.split(':')[0]
  return s.plan.controllers.find((c) => agentOf(s, c, servers[0]!.network).addr === ip)
}

const liveLeader = (s: Stack, network: Network): Promise<string | undefined> => agreedLeader(s, liveServers(s, network))

/** Waits until the given servers (default: all) agree on a leader; resolves with it. */
async function waitForAgreedLeader(s: Stack, network: Network, timeoutMs: number, servers?: Agent[]): Promise<string> {
  const which = servers ?? s.plan.controllers.map((c) => agentOf(s, c, network))
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const leader = await agreedLeader(s, which)
    if (leader !== undefined) return leader
    if (performance.now() > deadline) {
      throw new Error(`no agreed leader on ${network} within ${timeoutMs} ms; logs: ${which.map((a) => a.logPath).join(', ')}`)
    }
    await sleep(100)
  }
}

async function waitForLeader(s: Stack, network: Network, except?: string, timeoutMs = 30_000): Promise<{ leader: string; ms: number }> {
  const start = performance.now()
  let last: string | undefined
  while (performance.now() - start < timeoutMs) {
    last = await liveLeader(s, network)
    if (last !== undefined && last !== except) return { leader: last, ms: Math.round(performance.now() - start) }
    await sleep(100)
  }
  throw new Error(`no leader on ${network}${except ? ` other than ${except}` : ''} within ${timeoutMs} ms (last: ${last ?? 'none agreed'})`)
}

// ---------------------------------------------------------------------------------------------
// ACLs

const LEGACY_MODE = /legacy mode/i

/** PUT with the master token through a live controller; retries while 1.8 is still in legacy mode. */
async function aclPut(s: Stack, network: Network, urlPath: string, body: object, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  if (!s.opts.acl) throw new Error('ACLs are off in this stack (start it with `acl`)')
  ensureUsable(s)
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const a = viaAgent(s, network)
    const r = await httpRequest(`${a.addr}:8500`, urlPath, 'PUT', 10_000, { headers: s.headers, body: JSON.stringify(body) })
    if (r.status === 200) return JSON.parse(r.body) as Record<string, unknown>
    if (!(r.status === 500 && LEGACY_MODE.test(r.body)) || performance.now() > deadline) {
      throw new Error(`PUT ${urlPath} on ${network} via ${a.node}: ${r.status} ${r.body.trim()}`)
    }
    await sleep(500)
  }
}

async function createToken(s: Stack, network: Network, name: string, rules: string, secretId?: string): Promise<string> {
  await aclPut(s, network, '/v1/acl/policy', { Name: name, Description: 'consul-stack', Rules: rules })
  const token = await aclPut(s, network, '/v1/acl/token', {
    Description: name,
    Policies: [{ Name: name }],
    ...(secretId !== undefined ? { SecretID: secretId } : {}),
  })
  if (typeof token.SecretID !== 'string') throw new Error(`token create on ${network}: no SecretID in ${JSON.stringify(token)}`)
  s.log(`created ACL policy and token ${name} on ${network}`)
  return token.SecretID
}

async function setAgentToken(s: Stack, node: string, network: Network, kind: 'default' | 'agent', token: string): Promise<void> {
  ensureUsable(s)
  const a = agentOf(s, node, network)
  const r = await httpRequest(`${a.addr}:8500`, `/v1/agent/token/${kind}`, 'PUT', 10_000, {
    headers: s.headers,
    body: JSON.stringify({ Token: token }),
  })
  if (r.status !== 200) throw new Error(`PUT /v1/agent/token/${kind} on ${node}/${network}: ${r.status} ${r.body.trim()}`)
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
