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

const WATCHDOG_SCRIPT = [
  'cat >/dev/null', // returns when our parent's end of the pipe closes (it died or stop())
  'if [ -f "$1" ]; then',
  '  for p in $(cat "$1"); do kill -s CONT -- "-$p" 2>/dev/null; kill -s KILL -- "-$p" 2>/dev/null; done',
  '  rm -f "$1"',
  'fi',
].join('\n')

export async function startConsulStack(opts: ConsulStackOptions): Promise<ConsulStack> {
  const t0 = performance.now()
  const log = opts.log ?? ((): void => {})
  const controller = opts.controller ?? 'controller'
  const computes = [...opts.computes]
  const bin = opts.consulBin ?? process.env.CONSUL_BIN ?? 'consul'
  const startTimeoutMs = opts.startTimeoutMs ?? 60_000
  const octet = opts.octet
  if (!Number.isInteger(octet) || octet < 1 || octet > 253) throw new Error(`octet must be an integer in 1..253, got ${octet}`)
  const allNodes = [controller, ...computes]
  if (new Set(allNodes).size !== allNodes.length) throw new Error(`node names must be unique: ${allNodes.join(', ')}`)
  if (allNodes.length > 254) throw new Error('too many nodes for the address plan')
  for (const n of allNodes) if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(n)) throw new Error(`bad node name ${JSON.stringify(n)}`)

  const dir = path.resolve(opts.dir)
  const logDir = path.join(dir, 'logs')
  const dataRoot = path.join(dir, 'data')
  const configRoot = path.join(dir, 'config')
  const pidFile = path.join(dir, 'agent-pids')
  const env = cleanEnv()

  const netOffset: Record<Network, number> = { management: 0, tenant: 1, storage: 2 }
  const addressOf = (node: string, network: Network): string => {
    const i = allNodes.indexOf(node)
    if (i < 0) throw new Error(`unknown node ${node}`)
    if (!NETWORKS.includes(network)) throw new Error(`unknown network ${network}`)
    return `127.${octet + netOffset[network]}.0.${i + 1}`
  }

  // before touching anything: is the address plan free?
  const probes = NETWORKS.flatMap((network) =>
    allNodes.flatMap((node) => [8500, 8301, ...(node === controller ? [8300] : [])].map((p) => portBusy(addressOf(node, network), p))),
  )
  const busy = (await Promise.all(probes)).filter((x): x is string => x !== undefined)
  if (busy.length > 0) {
    throw new Error(
      `cannot start the consul stack on octet ${octet}: address(es) in use: ${busy.join(', ')} ` +
        '(another stack on the same octet, or leftover agents?)',
    )
  }
  // fresh state every time: these subdirectories are ours
  fs.rmSync(dataRoot, { recursive: true, force: true })
  fs.rmSync(configRoot, { recursive: true, force: true })
  fs.mkdirSync(logDir, { recursive: true })

  const agents = new Map<string, Agent>()
  const key = (node: string, network: Network): string => `${node}/${network}`
  const agentOf = (node: string, network: Network): Agent => {
    const a = agents.get(key(node, network))
    if (!a) throw new Error(`no agent ${node} on ${network}`)
    return a
  }

  const baseConfig = (server: boolean, network: Network): Record<string, unknown> => ({
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
  })

  for (const network of NETWORKS) {
    for (const node of allNodes) {
      const server = node === controller
      const name = `${node}-${network}`
      const a: Agent = {
        node,
        network,
        server,
        addr: addressOf(node, network),
        dataDir: path.join(dataRoot, name),
        configDir: path.join(configRoot, name),
        logPath: path.join(logDir, `${name}.log`),
        frozen: false,
      }
      fs.mkdirSync(a.dataDir, { recursive: true })
      fs.mkdirSync(a.configDir, { recursive: true })
      fs.writeFileSync(path.join(a.configDir, '00-base.json'), JSON.stringify(baseConfig(server, network), null, 2))
      if (server) {
        const extra = opts.controllerConfig?.[network] ?? []
        extra.forEach((cfg, i) => {
          fs.writeFileSync(path.join(a.configDir, `50-extra-${i}.json`), JSON.stringify(cfg, null, 2))
        })
      }
      fs.writeFileSync(a.logPath, '') // truncate
      agents.set(key(node, network), a)
    }
  }

  const argsOf = (a: Agent): string[] => {
    const args = [
      'agent',
      `-node=${a.node}`,
      `-bind=${a.addr}`,
      `-client=${a.addr}`,
      `-data-dir=${a.dataDir}`,
      `-config-dir=${a.configDir}`,
    ]
    if (a.server) args.push('-server', '-bootstrap-expect=1')
    else args.push(`-retry-join=${addressOf(controller, a.network)}`)
    return args
  }

  const writePidFile = (): void => {
    const ps: number[] = []
    for (const a of agents.values()) if (a.child?.pid !== undefined && a.exited) ps.push(a.child.pid)
    try {
      fs.writeFileSync(pidFile, `${ps.join('\n')}\n`)
    } catch {
      /* dir removed by the caller? */
    }
  }

  // listeners for "an agent died" (used to fail fast during start/restart)
  const deathListeners = new Set<(a: Agent, code: number | null, sig: NodeJS.Signals | null) => void>()
  let stopping = false

  const spawnAgent = (a: Agent): void => {
    const out = fs.openSync(a.logPath, 'a')
    let child: ChildProcess
    try {
      child = spawn(bin, argsOf(a), { detached: true, stdio: ['ignore', out, out], env, cwd: a.dataDir })
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
        writePidFile()
        if (!stopping) log(`consul ${a.node}/${a.network} (pid ${pid}) exited code=${code} signal=${sig}`)
        for (const l of deathListeners) l(a, code, sig)
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
    writePidFile()
    log(`started consul ${a.node}/${a.network} at ${a.addr} pid ${pid}`)
  }

  /** awaits an agent's exit while keeping the event loop alive */
  const awaitExit = async (a: Agent, timeoutMs: number, what: string): Promise<void> => {
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

  const signalGroup = (a: Agent, sig: NodeJS.Signals): void => {
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

  const runCli = (args: string[], timeoutMs = 20_000): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile(bin, args, { env, timeout: timeoutMs }, (err, stdout, stderr) => {
        if (err) reject(new Error(`consul ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`.trim()))
        else resolve(stdout + stderr)
      })
    })

  const httpAddr = (node: string, network: Network): string => `${addressOf(node, network)}:8500`
  const controllerHttp = (network: Network): string => httpAddr(controller, network)

  const health = async (network: Network): Promise<HealthCheck[]> => {
    const r = await httpRequest(controllerHttp(network), '/v1/health/state/any', 'GET', 10_000)
    if (r.status !== 200) throw new Error(`GET /v1/health/state/any on ${network}: ${r.status} ${r.body.trim()}`)
    return JSON.parse(r.body) as HealthCheck[]
  }

  const describe = (checks: HealthCheck[] | undefined, node: string, checkId: string): string => {
    if (!checks) return 'unknown (no answer from the controller agent)'
    const c = checks.find((x) => x.Node === node && x.CheckID === checkId)
    return c ? `${c.Status} (${c.Output ?? ''})` : 'absent'
  }

  const waitForCheck = async (node: string, network: Network, checkId: string, want: SerfWant, timeoutMs = 30_000): Promise<number> => {
    const a = agentOf(node, network) // validates names
    const ctl = agentOf(controller, network)
    const start = performance.now()
    const deadline = start + timeoutMs
    let index = 0
    let last: HealthCheck[] | undefined
    let lastErr = ''
    for (;;) {
      const remaining = deadline - performance.now()
      if (remaining <= 0) break
      // blocking query: returns as soon as any check changes, so the time measured is precise
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
        `last seen: ${describe(last, node, checkId)}${lastErr ? `; last error: ${lastErr}` : ''}; ` +
        `logs: ${a.logPath}${a === ctl ? '' : `, ${ctl.logPath}`}`,
    )
  }

  const waitForSerf = (node: string, network: Network, want: SerfWant, timeoutMs?: number): Promise<number> =>
    waitForCheck(node, network, 'serfHealth', want, timeoutMs)

  /** rejects as soon as one of the given agents dies (used while waiting for start/restart) */
  const failOnDeath = (which: Agent[]): { promise: Promise<never>; cancel: () => void } => {
    let cancel = (): void => {}
    const promise = new Promise<never>((_, reject) => {
      const l = (a: Agent, code: number | null, sig: NodeJS.Signals | null): void => {
        if (!which.includes(a)) return
        reject(
          new Error(
            `consul ${a.node}/${a.network} exited (code ${code}, signal ${sig}) while starting; log ${a.logPath}:\n${tail(a.logPath)}`,
          ),
        )
      }
      deathListeners.add(l)
      cancel = (): void => {
        deathListeners.delete(l)
      }
    })
    promise.catch(() => {})
    return { promise, cancel }
  }

  /** the agent answers HTTP and knows a leader (it has joined its cluster) */
  const waitJoined = async (a: Agent, timeoutMs: number): Promise<void> => {
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

  // ---- watchdog (covers SIGKILL of this process) ----
  let watchdog: ChildProcess | undefined
  const startWatchdog = (): void => {
    fs.writeFileSync(pidFile, '')
    pidFiles.add(pidFile)
    watchdog = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, 'consul-stack-watchdog', pidFile], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    })
    watchdog.on('error', () => {}) // /bin/sh missing: the other safety nets remain
    watchdog.stdin?.on('error', () => {})
    ;(watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.()
    watchdog.unref()
  }

  let stopped = false
  let stopPromise: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopPromise ??= (async (): Promise<void> => {
      stopped = true
      stopping = true
      const running = [...agents.values()].filter((a) => a.exited && a.child?.pid !== undefined)
      for (const a of running) {
        try {
          process.kill(-a.child!.pid!, 'SIGCONT')
        } catch {
          /* gone */
        }
        a.frozen = false
        try {
          process.kill(-a.child!.pid!, 'SIGKILL')
        } catch {
          try {
            process.kill(a.child!.pid!, 'SIGKILL')
          } catch {
            /* gone */
          }
        }
      }
      await Promise.all(running.map((a) => awaitExit(a, 10_000, 'stop')))
      // the watchdog: empty pid list, close its pipe, it exits by itself
      try {
        fs.writeFileSync(pidFile, '')
      } catch {
        /* ignore */
      }
      pidFiles.delete(pidFile)
      watchdog?.stdin?.end()
      if (livePids.size === 0) uninstallSignalHooks()
      log(`stack stopped (${running.length} agents killed)`)
    })()
    return stopPromise
  }

  const ensureUsable = (): void => {
    if (stopped) throw new Error('the consul stack is stopped')
  }

  // ---- start everything in parallel ----
  const all = [...agents.values()]
  startWatchdog()
  const death = failOnDeath(all)
  try {
    for (const a of all) spawnAgent(a)
    await Promise.race([death.promise, Promise.all(all.map((a) => waitForSerf(a.node, a.network, 'passing', startTimeoutMs)))])
    const dead = all.filter((a) => !a.exited)
    if (dead.length > 0) throw new Error(`consul agents exited while starting: ${dead.map((a) => a.logPath).join(', ')}`)
  } catch (e) {
    await stop()
    throw e
  } finally {
    death.cancel()
  }
  const startMs = Math.round(performance.now() - t0)
  log(`consul stack up in ${startMs} ms: ${allNodes.length} nodes × ${NETWORKS.length} networks`)

  const stack: ConsulStack = {
    controller,
    computes,
    logDir,
    dir,
    startMs,
    address: addressOf,
    httpAddr,
    logPath: (node, network) => agentOf(node, network).logPath,
    configDir: (node, network) => agentOf(node, network).configDir,
    pid: (node, network) => {
      const a = agentOf(node, network)
      return a.exited ? a.child?.pid : undefined
    },
    pids: () => [...agents.values()].filter((a) => a.exited && a.child?.pid !== undefined).map((a) => a.child!.pid!),
    freeze: (node, network) => {
      ensureUsable()
      const a = agentOf(node, network)
      signalGroup(a, 'SIGSTOP')
      a.frozen = true
      log(`froze ${node}/${network}`)
    },
    thaw: (node, network) => {
      ensureUsable()
      const a = agentOf(node, network)
      signalGroup(a, 'SIGCONT')
      a.frozen = false
      log(`thawed ${node}/${network}`)
    },
    kill: async (node, network) => {
      ensureUsable()
      const a = agentOf(node, network)
      signalGroup(a, 'SIGKILL') // a crash: no leave, whatever leave_on_terminate says
      await awaitExit(a, 10_000, 'kill')
      log(`killed ${node}/${network}`)
    },
    leave: async (node, network) => {
      ensureUsable()
      const a = agentOf(node, network)
      if (!a.exited) throw new Error(`consul ${node}/${network} is not running`)
      if (a.frozen) throw new Error(`consul ${node}/${network} is frozen: thaw it before leave`)
      await runCli(['leave', `-http-addr=${httpAddr(node, network)}`])
      await awaitExit(a, 20_000, 'leave')
      log(`${node}/${network} left`)
    },
    restart: async (node, network) => {
      ensureUsable()
      const a = agentOf(node, network)
      if (a.exited) throw new Error(`consul ${node}/${network} is still running (pid ${a.child?.pid}): kill or leave it first`)
      const d = failOnDeath([a])
      try {
        spawnAgent(a)
        await Promise.race([
          d.promise,
          (async (): Promise<void> => {
            await waitJoined(a, 30_000)
            if (a.server) {
              // A server that left does not rejoin by itself (its serf snapshot says "left"),
              // and clients do not retry-join after their first join: join them from here.
              for (const other of agents.values()) {
                if (other === a || other.network !== network || !other.exited || other.frozen) continue
                await httpRequest(`${a.addr}:8500`, `/v1/agent/join/${other.addr}`, 'PUT', 5_000).catch(() => undefined)
              }
            }
            await waitForSerf(node, network, 'passing', 30_000)
            if (a.server) {
              // the controller is back only when it sees its running clients again
              await Promise.all(
                [...agents.values()]
                  .filter((o) => o !== a && o.network === network && o.exited && !o.frozen)
                  .map((o) => waitForSerf(o.node, network, 'passing', 30_000)),
              )
            }
          })(),
        ])
      } finally {
        d.cancel()
      }
      log(`restarted ${node}/${network}`)
    },
    maintenance: async (node, network, enable) => {
      ensureUsable()
      agentOf(node, network)
      const args = ['maint', enable ? '-enable' : '-disable', `-http-addr=${httpAddr(node, network)}`]
      if (enable) args.push('-reason=consul-stack fault injection')
      await runCli(args)
      log(`maintenance ${enable ? 'on' : 'off'} for ${node}/${network}`)
    },
    health,
    members: async (network) => {
      const r = await httpRequest(controllerHttp(network), '/v1/agent/members', 'GET', 10_000)
      if (r.status !== 200) throw new Error(`GET /v1/agent/members on ${network}: ${r.status} ${r.body.trim()}`)
      return JSON.parse(r.body) as Array<{ Name: string; Addr: string; Status: number }>
    },
    waitForSerf,
    waitForCheck,
    reloadController: async (network) => {
      ensureUsable()
      await runCli(['reload', `-http-addr=${controllerHttp(network)}`])
      log(`reloaded ${controller}/${network}`)
    },
    writeControllerConfig: (network, name, config) => {
      const a = agentOf(controller, network)
      const file = /\.(json|hcl)$/.test(name) ? name : `${name}.json`
      if (file.includes('/') || file.startsWith('.')) throw new Error(`bad config file name ${name}`)
      fs.writeFileSync(path.join(a.configDir, file), JSON.stringify(config, null, 2))
    },
    stop,
  }
  return stack
}
