/**
 * The upstream Python host monitor (Debian's masakari-host-monitor 14.0.0, consul driver) on
 * the same Consul clusters and Masakari: its config, its process, and the times it logs.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ConsulStack } from '../stack/consul.js'
import { isAlive, type OpenStack } from '../stack/openstack.js'
import { waitUntil } from './common.js'

/**
 * Where the upstream monitor is installed: / (bench/setup-upstream.sh), or the tree its Debian
 * packages were unpacked into with `dpkg -x` (MASAKARI_UPSTREAM_ROOT: its dependencies not in
 * the system, python3-masakari-monitors, python3-consul, python3-oslo.privsep, go on its path),
 * on a machine where the bench may not install packages.
 */
const UPSTREAM_ROOT = process.env.MASAKARI_UPSTREAM_ROOT ?? '/'
export const UPSTREAM_BIN = join(UPSTREAM_ROOT, 'usr', 'bin', 'masakari-hostmonitor')

/** Upstream's own default matrix (masakarimonitors/hostmonitor/consul_check/matrix_helper.py), the same as our default strategy. */
const MATRIX = `sequence: [manage, tenant, storage]
matrix:
  - {health: [up, up, up], action: []}
  - {health: [up, up, down], action: [recovery]}
  - {health: [up, down, up], action: []}
  - {health: [up, down, down], action: [recovery]}
  - {health: [down, up, up], action: []}
  - {health: [down, up, down], action: [recovery]}
  - {health: [down, down, up], action: []}
  - {health: [down, down, down], action: [recovery]}
`

export function upstreamConfig(dir: string, consul: ConsulStack, openstack: OpenStack, monitoringInterval: number | undefined): string {
  const matrix = join(dir, 'matrix.yaml')
  writeFileSync(matrix, MATRIX)
  const conf = join(dir, `masakarimonitors-${monitoringInterval ?? 'default'}.conf`)
  const m = openstack.monitor
  writeFileSync(
    conf,
    `[DEFAULT]
debug = true
use_stderr = true

[host]
monitoring_driver = consul
${monitoringInterval === undefined ? '# monitoring_interval: the default (60 s)' : `monitoring_interval = ${monitoringInterval}`}

[consul]
agent_manage = ${consul.httpAddr(consul.controller, 'management')}
agent_tenant = ${consul.httpAddr(consul.controller, 'tenant')}
agent_storage = ${consul.httpAddr(consul.controller, 'storage')}
matrix_config_file = ${matrix}

[api]
region = ${openstack.region}
api_interface = public
auth_type = password
auth_url = ${openstack.authUrl}
username = ${m.username}
password = ${m.password}
project_name = ${m.projectName}
user_domain_name = ${m.userDomainName}
project_domain_name = ${m.projectDomainName}
`,
  )
  return conf
}

export interface UpstreamMonitor {
  log: string
  /** Its Python process (also its process group). */
  pid: number
  /** Epoch ms of each poll of the Consul agents (its "Current cluster state" debug line). */
  polls(): number[]
  /** When it got Masakari's answer to the notification for host/event, sent after `after` (epoch ms). */
  answered(host: string, event: 'STOPPED' | 'STARTED', after: number): number | undefined
  /**
   * SIGSTOP to its process group, returned once its process is stopped (state T): while another
   * monitor runs a trial it takes no poll and sends nothing.
   */
  pause(): Promise<void>
  /**
   * SIGCONT; throws if a poll was logged while it was stopped, and returns at its first poll
   * after (the sleep it was stopped in is over: at once).
   */
  resume(): Promise<void>
  stop(): Promise<void>
}

/** A process's state letter from /proc/PID/stat (T: stopped); undefined when it is gone. */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  } catch {
    return undefined
  }
}

/** oslo.log's "2026-11-25 20:30:07.123 1234 INFO …" (local time) → epoch ms. */
function lineTime(line: string): number | undefined {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3}) /.exec(line)
  return m ? new Date(`${m[1]}T${m[2]}`).getTime() : undefined
}

/** UpstreamMonitor's pause and resume, for its process group and the polls its log shows. */
function pausing(pgid: number, log: string, polls: () => number[]): Pick<UpstreamMonitor, 'pause' | 'resume'> {
  let stoppedAt: number | undefined
  return {
    async pause() {
      process.kill(-pgid, 'SIGSTOP')
      // The time is taken once the process is seen stopped: no poll can be logged after it.
      stoppedAt = await waitUntil(
        'the upstream host monitor to stop (SIGSTOP)',
        () => (processState(pgid) === 'T' ? Date.now() : undefined),
        5_000,
        10,
      )
    },
    async resume() {
      const resumedAt = Date.now()
      process.kill(-pgid, 'SIGCONT')
      const from = stoppedAt ?? resumedAt
      stoppedAt = undefined
      const during = polls().filter((t) => t > from && t < resumedAt)
      if (during.length > 0) throw new Error(`the upstream host monitor polled ${during.length} time(s) while stopped (log ${log})`)
      await waitUntil(
        'the upstream host monitor to poll again after SIGCONT',
        () => (polls().some((t) => t >= resumedAt) ? true : undefined),
        10_000,
        50,
      )
    },
  }
}

export async function startUpstream(conf: string, log: string): Promise<UpstreamMonitor> {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!/^(PYTHON|PYENV|VIRTUAL_ENV|OS_)/.test(k)) env[k] = v
  env.PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  if (UPSTREAM_ROOT !== '/') env.PYTHONPATH = join(UPSTREAM_ROOT, 'usr', 'lib', 'python3', 'dist-packages')
  const fd = openSync(log, 'w')
  const child: ChildProcess = spawn('/usr/bin/python3', [UPSTREAM_BIN, '--config-file', conf], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env,
  })
  closeSync(fd)
  child.unref()
  const pgid = child.pid!
  const kill = () => {
    try {
      process.kill(-pgid, 'SIGKILL')
    } catch {}
  }
  process.once('exit', kill)
  const lines = () => readFileSync(log, 'utf8').split('\n')
  const monitor: UpstreamMonitor = {
    log,
    pid: pgid,
    polls: () =>
      lines()
        .filter((l) => l.includes('Current cluster state'))
        .map(lineTime)
        .filter((t): t is number => t !== undefined),
    answered(host, event, after) {
      const all = lines()
      for (let i = 0; i < all.length; i++) {
        const l = all[i]!
        const t = lineTime(l)
        if (t === undefined || t < after) continue
        if (!l.includes('Send a notification.') || !l.includes(`'hostname': '${host}'`) || !l.includes(`'event': '${event}'`)) continue
        // It sends one at a time: its next "Response:" line is this notification's answer.
        for (let j = i + 1; j < all.length; j++) {
          if (all[j]!.includes('Response:') || all[j]!.includes('Stop retrying')) return lineTime(all[j]!)
        }
        return undefined
      }
      return undefined
    },
    ...pausing(pgid, log, () => monitor.polls()),
    async stop() {
      kill()
      process.removeListener('exit', kill)
      await waitUntil('the upstream host monitor to exit', () => (isAlive(pgid) ? undefined : true), 10_000)
    },
  }
  try {
    await waitUntil(
      `the upstream host monitor's first poll (log ${log})`,
      () => (monitor.polls().length > 0 ? true : undefined),
      60_000,
      100,
    )
  } catch (err) {
    kill()
    throw new Error(`${(err as Error).message}\n${lines().slice(-20).join('\n')}`)
  }
  return monitor
}
