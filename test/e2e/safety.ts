/**
 * Decision safety on the real stack: leave, maintenance, flapping, rate limit, self-isolation.
 * Assertions read Masakari's stored notifications.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { EVALUATE, startRealStack, type RealStack } from './harness.js'

const computes = ['cmp1', 'cmp2', 'cmp3', 'cmp4', 'cmp5', 'cmp6', 'cmp7']
const RATE_WINDOW = 30
let stack: RealStack

const events = async (host: string) => (await stack.notifications(host)).map((n) => n.payload.event)
const storage = 'storage' as const

t.before(async () => {
  stack = await startRealStack(t, {
    computes,
    octet: 80,
    // The fast-detection profile (consul-config's gossip_lan settings): a partition's failures
    // arrive within seconds of each other, as they would in a large cloud probed at 1 s.
    fastGossip: true,
    monitor: {
      guards: {
        hold: { recovery: 5, back: 3 },
        isolation: { maxDownFraction: 0.55, window: 30 },
        rateLimit: { maxRecoveries: 2, window: RATE_WINDOW },
      },
    },
  })
})

t.test("graceful leave of a compute's storage agent: no notification, shown as unknown", async (t) => {
  await stack.consul.leave('cmp7', storage)
  await stack.waitForSnapshot('cmp7', storage, 'absent', 60_000)
  await stack.waitForEvaluation(storage)
  // no worker left: a hold started by a transient 'down' (see the README's leave race) is over
  await stack.waitForDelivery()
  t.same(await events('cmp7'), [])
  const explain = execFileSync(process.execPath, [EVALUATE, '--config', stack.configPath, '--dry-run', '--explain', 'cmp7'], {
    encoding: 'utf8',
  })
  t.match(explain, /storage\s+unknown/)
})

t.test('consul maint -enable, then the agent fails: no notification, shown as maintenance', async (t) => {
  await stack.consul.maintenance('cmp5', storage, true)
  await stack.waitForSnapshot('cmp5', storage, 'maintenance', 60_000)
  stack.consul.freeze('cmp5', storage)
  await stack.consul.waitForSerf('cmp5', storage, 'critical', 60_000)
  // its snapshot still says maintenance: wait for the run that saw the failure
  await stack.waitForEvaluation(storage, await stack.checkIndex('cmp5', storage), 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp5'), [])
  const report = JSON.parse(
    execFileSync(process.execPath, [EVALUATE, '--config', stack.configPath, '--dry-run', '--json'], { encoding: 'utf8' }),
  )
  t.match(
    report.hosts.find((h: { host: string }) => h.host === 'cmp5'),
    { vector: { storage: 'maintenance' }, action: 'none', reason: /storage is maintenance/ },
  )
  stack.consul.thaw('cmp5', storage)
  await stack.consul.waitForSerf('cmp5', storage, 'passing', 60_000)
  await stack.consul.maintenance('cmp5', storage, false)
  await stack.waitForSnapshot('cmp5', storage, 'up', 60_000)
})

t.test('a storage agent flapping faster than the hold time: no notification', async (t) => {
  for (let i = 0; i < 3; i++) {
    stack.consul.freeze('cmp6', storage)
    await stack.waitForSnapshot('cmp6', storage, 'down', 60_000)
    stack.consul.thaw('cmp6', storage)
    await stack.waitForSnapshot('cmp6', storage, 'up', 60_000)
  }
  await stack.waitForEvaluation(storage)
  // no worker left: every hold the downs started is broken or over
  await stack.waitForDelivery()
  t.same(await events('cmp6'), [])
  const holds = stack.logLines().filter((l) => l.host === 'cmp6' && l.guard === 'hold')
  t.ok(holds.length >= 3, `each down was held (${holds.length} hold lines)`)
})

t.test('three computes failing together with a limit of two per window: two at once, the third after the window', async (t) => {
  const three = ['cmp1', 'cmp2', 'cmp3']
  for (const c of three) stack.consul.freeze(c, storage)
  await waitUntilCount(three, 2)
  const limited = stack.logLines().filter((l) => three.includes(String(l.host)) && l.guard === 'rate-limit')
  t.ok(limited.length >= 1, 'the third is held and logged')
  t.match(limited[0], { action: 'no action', reason: /rate limit: 2 recoveries in the last 30 s/ })
  const stopped = await waitUntilCount(three, 3, (RATE_WINDOW + 30) * 1000)
  const times = stopped.map((n) => Date.parse(`${n.created_at}Z`)).sort()
  t.ok(times[1]! - times[0]! < 5000, `the first two at once (${times[1]! - times[0]!} ms apart)`)
  const gap = (times[2]! - times[0]!) / 1000
  t.ok(gap >= RATE_WINDOW - 1, `the third ${gap.toFixed(1)} s after the first, past the ${RATE_WINDOW} s window`)
  for (const h of three) t.same(await events(h), ['STOPPED'], `${h}: one STOPPED`)
  for (const h of three) stack.consul.thaw(h, storage)
  for (const h of three) await stack.waitForNotifications(h, 2, 60_000)
  await stack.waitForDelivery()
  for (const h of three) t.same(await events(h), ['STOPPED', 'STARTED'])
})

async function waitUntilCount(hosts: string[], count: number, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const got = (await stack.notifications()).filter((n) => hosts.includes(n.hostname) && n.payload.event === 'STOPPED')
    if (got.length >= count) return got
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} STOPPED among ${hosts.join(', ')}; logs: ${stack.dir}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

t.test('most computes down at once on storage (the monitor looks cut off): zero STOPPED; restored: no STARTED', async (t) => {
  const cut = ['cmp1', 'cmp2', 'cmp3', 'cmp4']
  const before = (await stack.notifications()).length
  for (const c of cut) stack.consul.freeze(c, storage)
  for (const c of cut) await stack.waitForSnapshot(c, storage, 'down', 60_000)
  await stack.waitForEvaluation(storage)
  // no worker left: every hold is over (a worker stays while one is pending)
  await stack.waitForDelivery(60_000)
  t.equal((await stack.notifications()).length, before, 'nothing sent')
  const loud = stack.logLines().filter((l) => /SELF-ISOLATION/.test(String(l.msg)))
  t.equal(loud.length, 1, 'one loud line')
  t.match(loud[0], { level: 'error', network: 'storage' })
  const table = execFileSync(process.execPath, [EVALUATE, '--config', stack.configPath, '--dry-run'], { encoding: 'utf8' })
  t.match(table, /SELF-ISOLATION GUARD on storage/)
  for (const c of cut) stack.consul.thaw(c, storage)
  for (const c of cut) await stack.waitForSnapshot(c, storage, 'up', 60_000)
  await stack.waitForEvaluation(storage)
  await stack.waitForDelivery(60_000)
  t.equal((await stack.notifications()).length, before, 'no spurious STARTED')
  t.ok(
    stack.logLines().some((l) => /released/.test(String(l.msg))),
    'release logged',
  )
})

t.test('one compute frozen while the guard is armed: still exactly one STOPPED', async (t) => {
  stack.consul.freeze('cmp4', storage)
  await stack.waitForNotifications('cmp4', 1, 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp4'), ['STOPPED'])
  stack.consul.thaw('cmp4', storage)
  await stack.waitForNotifications('cmp4', 2, 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp4'), ['STOPPED', 'STARTED'])
})

t.test('nothing started by this test survives it', async (t) => {
  t.same(await stack.stop(), [])
})
