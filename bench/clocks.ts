/**
 * The operator's clocks for the latency section (#13): when Consul's detection became visible
 * to other tooling on the controller, and when Masakari had the notification stored.
 *
 * - The probe watch: a second `checks` watch on the controller's storage agent, beside ours,
 *   whose handler is a shell one-liner that stamps the time it started and keeps the payload.
 *   Its first run whose payload shows the host's serfHealth critical is Consul's detection as
 *   an operator's other tooling sees it; our handler starts at the same moment.
 * - The store clock: a poller reading masakari-api's SQLite database every 5 ms, stamping each
 *   notification row the moment it appears (Masakari's own `created_at` has whole seconds).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ConsulStack } from '../stack/consul.js'
import type { OpenStack } from '../stack/openstack.js'

export interface Probe {
  /** ms epoch of the first probe run at or after `after` whose payload shows `host` critical. */
  firstCritical(host: string, after: number): number | undefined
}

export async function startProbe(consul: ConsulStack, dir: string): Promise<Probe> {
  mkdirSync(dir, { recursive: true })
  // $0 is the directory; the stamp is taken before the payload is read.
  consul.writeControllerConfig('storage', 'watch-bench-probe.json', {
    watches: [{ type: 'checks', args: ['/bin/sh', '-c', 't=$(date +%s%N); cat > "$0/$t.json"', dir] }],
  })
  await consul.reloadController('storage')
  return {
    firstCritical(host, after) {
      const runs = readdirSync(dir)
        .filter((f) => /^\d+\.json$/.test(f))
        .map((f) => ({ f, ms: Number(BigInt(f.slice(0, -5)) / 1_000_000n) }))
        .filter((r) => r.ms >= after)
        .sort((a, b) => a.ms - b.ms)
      for (const r of runs) {
        let checks: Array<{ Node: string; CheckID: string; Status: string }>
        try {
          checks = JSON.parse(readFileSync(join(dir, r.f), 'utf8'))
        } catch {
          continue // still being written
        }
        if (checks.some((c) => c.Node === host && c.CheckID === 'serfHealth' && c.Status === 'critical')) return r.ms
      }
      return undefined
    },
  }
}

export interface StoreClock {
  /** ms epoch when Masakari's database first held a notification for host and event after `after`. */
  storedAt(host: string, event: string, after: number): Promise<number | undefined>
  stop(): void
}

const POLLER = `
import sqlite3, sys, time
db = sys.argv[1]
seen = set()
first = True
while True:
    try:
        con = sqlite3.connect('file:' + db + '?mode=ro', uri=True, timeout=0.05)
        rows = con.execute('select notification_uuid from notifications').fetchall()
        con.close()
    except sqlite3.Error:
        rows = []
    now = int(time.time() * 1000)
    for (u,) in rows:
        if u not in seen:
            seen.add(u)
            print(now, u, flush=True)
    if first:
        print('ready', flush=True)
        first = False
    time.sleep(0.005)
`

export function startStoreClock(openstack: OpenStack): StoreClock {
  const seen = new Map<string, number>()
  const child: ChildProcess = spawn('python3', ['-c', POLLER, openstack.masakariDb], { stdio: ['ignore', 'pipe', 'inherit'] })
  let buffer = ''
  let ready = false
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    const lines = buffer.split('\n')
    buffer = lines.pop()!
    for (const line of lines) {
      if (line === 'ready') ready = true
      const [ms, uuid] = line.split(' ')
      // The rows there before its first look are not new: stamped 0.
      if (uuid) seen.set(uuid, ready ? Number(ms) : 0)
    }
  })
  return {
    async storedAt(host, event, after) {
      const list = await openstack.listNotifications()
      const times = list
        .filter((n) => n.hostname === host && n.payload?.event === event)
        .map((n) => seen.get(n.notification_uuid))
        .filter((ms): ms is number => ms !== undefined && ms >= after)
      return times.length > 0 ? Math.min(...times) : undefined
    },
    stop: () => child.kill(),
  }
}

/** Both clocks, as the latency trials use them. */
export interface Clocks {
  probe: Probe
  store: StoreClock
}
