/**
 * Real BMCs on loopback, for the fencing tests (issue #21): one `ipmi_sim` (openipmi) per host,
 * an IPMI-over-LAN BMC that fence_ipmilan and ipmitool speak to as to a server's. Its power is a
 * state file beside it, and its chassis control runs the caller's shell commands: "off" (e.g.
 * kill the host's process group) and "on" (start it again).
 *
 * Layout: host i (1-based, in the order given) at `${block}.${i}`, UDP port basePort + i; the
 * default block 127.79.0 is used by no other test (the Consul stacks take 127.50-230.x.x by tens).
 * Everything lives under `${dir}/${host}/`:
 *   lan.conf, cmds.emu   ipmi_sim's configuration (what real-stack.md verified)
 *   chassis.sh           ipmi_sim's chassis_control program: `chassis.sh DEVICE get power` prints
 *                        `power:1|0`; `chassis.sh DEVICE set power 0|1` logs, runs off.sh/on.sh
 *                        when the power changes, then records the new state
 *   power                1 or 0: the host's power as its BMC reports it (starts at 1)
 *   power.log            one line per power command received, `ISO-time off|on`: what tests count
 *   commands.log         what off.sh / on.sh printed
 *   ipmi_sim.log         ipmi_sim's own output
 * A command that starts something lasting must detach it (setsid, output redirected): else it
 * is in ipmi_sim's process group and dies with the BMC.
 *
 * ipmi_sim does not answer "Get Channel Cipher Suites": ipmitool without `-C` waits 10 s for it
 * before falling back, so every client here (and a test's fence_ipmilan, option `cipher: 3`)
 * names cipher suite 3.
 *
 * Cleanup: stop() kills every ipmi_sim it started (idempotent); also on this process's exit, and
 * by a watchdog shell holding a pipe from this process when it dies by SIGKILL, so that no BMC
 * outlives a test run and holds its address for the next one. Only node builtins are used.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

export interface BmcHost {
  name: string
  /** Shell command run by `set power 0` when the power is on (e.g. `kill -KILL -- -PGID`). */
  off: string
  /** Shell command run by `set power 1` when the power is off. */
  on: string
}

export interface BmcStackOptions {
  /** a scratch dir of the caller's: every BMC's files */
  dir: string
  hosts: BmcHost[]
  /** the first three octets of the BMCs' addresses; default 127.79.0 */
  block?: string
  /** host i listens on basePort + i; default 6230 */
  basePort?: number
  /** the BMCs' one admin user; default admin / secret */
  username?: string
  password?: string
  /** how long start waits for a BMC to answer; default 30000 */
  readyTimeoutMs?: number
}

export interface Bmc {
  host: string
  ip: string
  port: number
  dir: string
  /** the power.log file */
  powerLog: string
}

export interface PowerCommand {
  at: Date
  power: 'on' | 'off'
}

export interface BmcStack {
  bmcs: Bmc[]
  bmc(host: string): Bmc
  /** fencing.hosts of a monitor config: host → { ip, ipport } */
  fenceHosts(): Record<string, { ip: string; ipport: number }>
  /** the host's power as its BMC reports it (also while the BMC is stopped) */
  power(host: string): 'on' | 'off'
  /** every power command the host's BMC received, in order */
  powerLog(host: string): PowerCommand[]
  /** ipmitool against the host's BMC (the password through the environment, -E); its stdout */
  ipmitool(host: string, ...args: string[]): Promise<string>
  /** kills that host's ipmi_sim: the BMC no longer answers (its power state stays) */
  kill(host: string): Promise<void>
  /** starts that host's ipmi_sim again, with another password if given; resolves when it answers */
  restart(host: string, opts?: { password?: string }): Promise<void>
  /** kills every ipmi_sim; idempotent */
  stop(): Promise<void>
}

const IPMI_SIM = '/usr/bin/ipmi_sim'
const IPMITOOL = '/usr/bin/ipmitool'
const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' }
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

// ---------------------------------------------------------------------------------------------
// The safety net: ipmi_sims do not outlive this process.

const live = new Set<number>() // pids (= pgids: spawned detached) of running ipmi_sims
let exitHook = false

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // already gone
  }
}

function killAllSync(): void {
  for (const pid of live) killGroup(pid)
  live.clear()
}

const WATCHDOG = [
  'cat >/dev/null', // returns when our end of the pipe closes: we died, or stop() closed it
  'for p in $(cat "$1" 2>/dev/null); do kill -s KILL -- "-$p" 2>/dev/null; done',
].join('\n')

/** A shell that kills the pids listed in pidFile when this process goes, even by SIGKILL. */
function startWatchdog(pidFile: string): ChildProcess {
  const dog = spawn('/bin/sh', ['-c', WATCHDOG, 'bmc-watchdog', pidFile], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] })
  dog.on('error', () => {}) // the exit hook remains
  dog.stdin?.on('error', () => {})
  ;(dog.stdin as unknown as { unref?: () => void } | null)?.unref?.()
  dog.unref()
  return dog
}

// ---------------------------------------------------------------------------------------------
// One BMC's files

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

function lanConf(host: string, ip: string, port: number, dir: string, user: string, password: string, i: number): string {
  const guid = `a1${i.toString(16).padStart(30, '0')}`
  return [
    `name "${host}"`,
    'set_working_mc 0x20',
    '  startlan 1',
    `    addr ${ip} ${port}`,
    '    priv_limit admin',
    '    allowed_auths_admin none md2 md5 straight',
    `    guid ${guid}`,
    '  endlan',
    `  chassis_control "${path.join(dir, 'chassis.sh')} 0x20"`,
    `  user 2 true "${user}" "${password}" admin 10 none md2 md5 straight`,
    '',
  ].join('\n')
}

const EMU = [
  'mc_setbmc 0x20',
  'mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr',
  'sel_enable 0x20 1000 0x0a',
  'mc_enable 0x20',
  '',
].join('\n')

/** The chassis control program: the power state in a file, the caller's commands on a change. */
function chassisScript(dir: string): string {
  const at = (f: string) => quote(path.join(dir, f))
  return `#!/bin/sh
# ipmi_sim's chassis_control: $1 is the device, then "get power" or "set power 0|1".
case "$2 $3" in
  'get power') echo "power:$(cat ${at('power')})" ;;
  'set power')
    case $4 in 0) want=off ;; 1) want=on ;; *) exit 1 ;; esac
    echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) $want" >>${at('power.log')}
    # A chassis already in that state does nothing, as a real one: no second kill, no second start.
    [ "$(cat ${at('power')})" = "$4" ] && exit 0
    # Its output goes to a file: whatever the command leaves running must not hold ipmi_sim's pipe.
    # A command that failed leaves the power as it was: a broken test set-up shows as a failed
    # fence (fence_ipmilan: "Timed out waiting to power OFF"), never as a host off that still runs.
    /bin/sh ${quote(dir)}/"$want.sh" </dev/null >>${at('commands.log')} 2>&1 || exit 1
    echo "$4" >${at('power')}
    ;;
  *) exit 1 ;;
esac
`
}

function writeBmcFiles(b: Bmc, host: BmcHost, user: string, password: string, i: number): void {
  fs.mkdirSync(path.join(b.dir, 'state'), { recursive: true })
  fs.writeFileSync(path.join(b.dir, 'lan.conf'), lanConf(b.host, b.ip, b.port, b.dir, user, password, i))
  fs.writeFileSync(path.join(b.dir, 'cmds.emu'), EMU)
  fs.writeFileSync(path.join(b.dir, 'chassis.sh'), chassisScript(b.dir), { mode: 0o755 })
  fs.writeFileSync(path.join(b.dir, 'off.sh'), `${host.off}\n`)
  fs.writeFileSync(path.join(b.dir, 'on.sh'), `${host.on}\n`)
  if (!fs.existsSync(path.join(b.dir, 'power'))) fs.writeFileSync(path.join(b.dir, 'power'), '1\n')
}

// ---------------------------------------------------------------------------------------------

interface Running {
  child: ChildProcess
  exited: Promise<void>
}

function tail(file: string, n = 10): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n')
  } catch {
    return '(no log)'
  }
}

export async function startBmcs(opts: BmcStackOptions): Promise<BmcStack> {
  const block = opts.block ?? '127.79.0'
  const basePort = opts.basePort ?? 6230
  const user = opts.username ?? 'admin'
  const passwords = new Map<string, string>(opts.hosts.map((h) => [h.name, opts.password ?? 'secret']))
  const readyMs = opts.readyTimeoutMs ?? 30_000
  const bmcs: Bmc[] = opts.hosts.map((h, i) => {
    const dir = path.join(opts.dir, h.name)
    return { host: h.name, ip: `${block}.${i + 1}`, port: basePort + i + 1, dir, powerLog: path.join(dir, 'power.log') }
  })
  const running = new Map<string, Running>()
  const pidFile = path.join(opts.dir, 'bmc-pids')
  fs.mkdirSync(opts.dir, { recursive: true })
  fs.writeFileSync(pidFile, '')
  const watchdog = startWatchdog(pidFile)
  if (!exitHook) {
    process.on('exit', killAllSync)
    exitHook = true
  }
  const bmc = (host: string) => {
    const b = bmcs.find((x) => x.host === host)
    if (!b) throw new Error(`no BMC for ${host}`)
    return b
  }
  const writePids = () => fs.writeFileSync(pidFile, [...running.values()].map((r) => `${r.child.pid}\n`).join(''))

  const ipmitool = (host: string, ...args: string[]) => {
    const b = bmc(host)
    const argv = ['-I', 'lanplus', '-C', '3', '-H', b.ip, '-p', String(b.port), '-U', user, '-E', ...args]
    return new Promise<string>((resolve, reject) => {
      execFile(IPMITOOL, argv, { env: { ...ENV, IPMI_PASSWORD: passwords.get(host)! }, timeout: 15_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`ipmitool ${args.join(' ')} on ${host}'s BMC: ${stderr.trim() || err.message}`))
        else resolve(stdout)
      })
    })
  }

  /** Polls a status until the BMC answers; fails early with ipmi_sim's log when it exits. */
  const waitAnswers = async (host: string, r: Running) => {
    let gone = false
    void r.exited.then(() => {
      gone = true
    })
    const deadline = Date.now() + readyMs
    for (;;) {
      if (gone) throw new Error(`ipmi_sim of ${host} exited while starting:\n${tail(path.join(bmc(host).dir, 'ipmi_sim.log'))}`)
      const answer = await ipmitool(host, '-N', '1', '-R', '1', 'chassis', 'power', 'status').catch((e: Error) => e)
      if (typeof answer === 'string' && /Chassis Power is (on|off)/.test(answer)) return
      if (Date.now() > deadline) throw new Error(`${host}'s BMC did not answer within ${readyMs} ms: ${String(answer).trim()}`)
      await sleep(200)
    }
  }

  const startOne = async (host: string) => {
    const b = bmc(host)
    const i = bmcs.indexOf(b)
    writeBmcFiles(b, opts.hosts[i]!, user, passwords.get(host)!, i + 1)
    const log = fs.openSync(path.join(b.dir, 'ipmi_sim.log'), 'a')
    const args = ['-c', path.join(b.dir, 'lan.conf'), '-f', path.join(b.dir, 'cmds.emu'), '-s', path.join(b.dir, 'state'), '-n']
    // Its own process group: kill() takes a chassis.sh it is running with it.
    const child = spawn(IPMI_SIM, args, { detached: true, stdio: ['ignore', log, log], env: ENV, cwd: b.dir })
    fs.closeSync(log)
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve())
      child.once('error', () => resolve())
    })
    const r = { child, exited }
    running.set(host, r)
    if (child.pid !== undefined) live.add(child.pid)
    writePids()
    await waitAnswers(host, r)
  }

  const kill = async (host: string) => {
    const r = running.get(host)
    if (!r) return
    running.delete(host)
    writePids()
    if (r.child.pid !== undefined) {
      killGroup(r.child.pid)
      live.delete(r.child.pid)
    }
    await r.exited
  }

  let stopped = false
  const stop = async () => {
    await Promise.all([...running.keys()].map(kill))
    if (stopped) return
    stopped = true
    watchdog.stdin?.end() // its kill list is empty by now
  }

  try {
    await Promise.all(bmcs.map((b) => startOne(b.host)))
  } catch (e) {
    await stop()
    throw e
  }

  return {
    bmcs,
    bmc,
    fenceHosts: () => Object.fromEntries(bmcs.map((b) => [b.host, { ip: b.ip, ipport: b.port }])),
    power: (host) => (fs.readFileSync(path.join(bmc(host).dir, 'power'), 'utf8').trim() === '0' ? 'off' : 'on'),
    powerLog: (host) => {
      const text = fs.existsSync(bmc(host).powerLog) ? fs.readFileSync(bmc(host).powerLog, 'utf8') : ''
      return text
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const [at, power] = l.split(' ')
          return { at: new Date(at!), power: power === 'off' ? 'off' : 'on' }
        })
    },
    ipmitool,
    kill,
    restart: async (host, o = {}) => {
      if (stopped) throw new Error('the BMCs were stopped')
      await kill(host)
      if (o.password !== undefined) passwords.set(host, o.password)
      await startOne(host)
    },
    stop,
  }
}
