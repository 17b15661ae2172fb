// End-to-end test of the loopback Consul stack (stack/consul.ts) against the real
// consul binary: three clusters (management, tenant, storage), one controller + 2 computes.
// Addresses 127.60-62.0.x (override the first octet with E2E_CONSUL_OCTET).
// Gossip: fast (gossip_lan 400ms/200ms/×2) unless E2E_CONSUL_GOSSIP=default.
import t from 'tap'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { startConsulStack, NETWORKS, type ConsulStack, type HealthCheck } from '../../stack/consul.js'

const octet = Number(process.env.E2E_CONSUL_OCTET ?? 60)
const fastGossip = process.env.E2E_CONSUL_GOSSIP !== 'default'
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-consul-'))
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

// watch handler: appends "$CONSUL_INDEX <stdin length>" to $1 and keeps the last stdin in $2
const handler = path.join(dir, 'handler.sh')
fs.writeFileSync(handler, '#!/bin/sh\nn=$(tee "$2.tmp" | wc -c)\nmv -f "$2.tmp" "$2"\necho "$CONSUL_INDEX $n" >> "$1"\n', { mode: 0o755 })
const watchLog = path.join(dir, 'watch-management.log')
const watchLast = path.join(dir, 'watch-management.json')

async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

const watchLines = (file: string): Array<{ index: number; len: number }> => {
  try {
    return fs
      .readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [i, n] = l.trim().split(/\s+/)
        return { index: Number(i), len: Number(n) }
      })
  } catch {
    return []
  }
}
const lastPayload = (file: string): HealthCheck[] | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as HealthCheck[]
  } catch {
    return undefined
  }
}
const serf = (checks: HealthCheck[], node: string): string | undefined =>
  checks.find((c) => c.Node === node && c.CheckID === 'serfHealth')?.Status

let stack: ConsulStack
let allPids: number[] = []

t.before(async () => {
  stack = await startConsulStack({
    dir,
    computes: ['cmp1', 'cmp2'],
    octet,
    fastGossip,
    controllerConfig: {
      management: [{ watches: [{ type: 'checks', args: ['/bin/sh', handler, watchLog, watchLast] }] }],
    },
  })
  t.comment(`stack of 1 controller + 2 computes × 3 networks up in ${stack.startMs} ms (logs: ${stack.logDir})`)
})

t.teardown(async () => {
  await stack?.stop()
  if (t.passing()) fs.rmSync(dir, { recursive: true, force: true })
  else t.comment(`kept ${dir} for inspection`)
})

t.test('every serfHealth passing on all three networks', async (t) => {
  t.equal(stack.pids().length, 9, 'nine agents running')
  allPids = stack.pids()
  for (const net of NETWORKS) {
    const checks = await stack.health(net)
    for (const node of ['controller', 'cmp1', 'cmp2']) t.equal(serf(checks, node), 'passing', `${node} on ${net}`)
    t.equal(checks.filter((c) => c.CheckID === 'serfHealth').length, 3, `three nodes on ${net}`)
  }
  t.equal(stack.address('cmp1', 'tenant'), `127.${octet + 1}.0.2`)
  t.equal(stack.httpAddr('controller', 'storage'), `127.${octet + 2}.0.1:8500`)
})

t.test('freeze cmp1 storage → critical there only; thaw → passing', async (t) => {
  stack.freeze('cmp1', 'storage')
  let thawed = false
  t.teardown(() => {
    if (!thawed) stack.thaw('cmp1', 'storage')
  })
  const ms = await stack.waitForSerf('cmp1', 'storage', 'critical')
  t.comment(`freeze → critical in ${ms} ms (${fastGossip ? 'fast' : 'default'} gossip)`)
  for (const net of ['management', 'tenant'] as const) {
    t.equal(serf(await stack.health(net), 'cmp1'), 'passing', `cmp1 still passing on ${net}`)
  }
  const storage = await stack.health('storage')
  t.match(
    storage.find((c) => c.Node === 'cmp1' && c.CheckID === 'serfHealth'),
    { Status: 'critical', Output: /not live or unreachable/ },
  )
  stack.thaw('cmp1', 'storage')
  thawed = true
  const back = await stack.waitForSerf('cmp1', 'storage', 'passing')
  t.comment(`thaw → passing in ${back} ms`)
})

t.test('leave cmp2 tenant → absent; restart → passing', async (t) => {
  const pid = stack.pid('cmp2', 'tenant')
  t.type(pid, 'number')
  await stack.leave('cmp2', 'tenant')
  t.equal(stack.pid('cmp2', 'tenant'), undefined, 'agent exited')
  await stack.waitForSerf('cmp2', 'tenant', 'absent')
  const tenant = await stack.health('tenant')
  t.notOk(
    tenant.some((c) => c.Node === 'cmp2'),
    'all checks of cmp2 gone from tenant',
  )
  t.equal(serf(await stack.health('management'), 'cmp2'), 'passing', 'cmp2 still passing on management')
  await stack.restart('cmp2', 'tenant')
  t.equal(serf(await stack.health('tenant'), 'cmp2'), 'passing', 'back after restart')
})

t.test('kill cmp2 storage (crash, no leave) → critical; restart → passing', async (t) => {
  await stack.kill('cmp2', 'storage')
  const ms = await stack.waitForSerf('cmp2', 'storage', 'critical')
  t.comment(`kill → critical in ${ms} ms`)
  await stack.restart('cmp2', 'storage')
  t.equal(serf(await stack.health('storage'), 'cmp2'), 'passing')
})

t.test('maintenance on cmp1 management → _node_maintenance critical', async (t) => {
  await stack.maintenance('cmp1', 'management', true)
  await stack.waitForCheck('cmp1', 'management', '_node_maintenance', 'critical')
  const c = (await stack.health('management')).find((x) => x.Node === 'cmp1' && x.CheckID === '_node_maintenance')
  t.match(c, { Status: 'critical', Name: /maintenance/i })
  // the watch on the controller's management agent sees it too
  await until('the watch handler to receive _node_maintenance', () =>
    lastPayload(watchLast)?.some((x) => x.Node === 'cmp1' && x.CheckID === '_node_maintenance' && x.Status === 'critical'),
  )
  await stack.maintenance('cmp1', 'management', false)
  await stack.waitForCheck('cmp1', 'management', '_node_maintenance', 'absent')
})

t.test('the checks watch given in controllerConfig fired', async (t) => {
  const lines = await until('watch lines', () => {
    const l = watchLines(watchLog)
    return l.length > 0 ? l : undefined
  })
  t.ok(lines.length >= 2, `fired ${lines.length} times`)
  for (const l of lines) {
    t.ok(l.index > 0, `CONSUL_INDEX ${l.index} > 0`)
    t.ok(l.len > 2, `stdin ${l.len} bytes`)
  }
  const payload = lastPayload(watchLast)
  t.ok(Array.isArray(payload), 'stdin is a JSON array')
  t.equal(payload?.filter((c) => c.CheckID === 'serfHealth').length, 3, 'with the serfHealth of every node')
  t.match(
    payload?.find((c) => c.Node === 'cmp1' && c.CheckID === 'serfHealth'),
    {
      Node: 'cmp1',
      CheckID: 'serfHealth',
      Status: 'passing',
      ServiceID: '',
      ModifyIndex: Number,
    },
  )
})

t.test('writeControllerConfig + reloadController: a new watch fires once on reload', async (t) => {
  const log = path.join(dir, 'watch-storage.log')
  stack.writeControllerConfig('storage', 'storage-watch', {
    watches: [{ type: 'checks', args: ['/bin/sh', handler, log, path.join(dir, 'watch-storage.json')] }],
  })
  await stack.reloadController('storage')
  const lines = await until(
    'storage watch',
    () => {
      const l = watchLines(log)
      return l.length > 0 ? l : undefined
    },
    20_000,
  )
  t.ok(lines[0]!.index > 0)
})

t.test('stop() kills every agent, idempotently', async (t) => {
  t.equal(allPids.length, 9)
  const before = new Set([...allPids, ...stack.pids()])
  await stack.stop()
  await stack.stop()
  t.same(stack.pids(), [])
  for (const pid of before) {
    let alive = true
    try {
      process.kill(pid, 0)
    } catch {
      alive = false
    }
    t.notOk(alive, `pid ${pid} gone`)
  }
  t.rejects(stack.kill('cmp1', 'management'), /stopped/)
})
