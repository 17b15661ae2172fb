/**
 * The core pipeline on the real stack, default strategy: Consul watches fire the bundled
 * handler, Masakari stores what we send. Every assertion reads Masakari's stored notifications.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { EVALUATE, startRealStack, type RealStack } from './harness.js'

const computes = ['cmp1', 'cmp2', 'cmp3', 'cmp4', 'cmp5', 'ghost1']
let stack: RealStack

const events = async (host: string) => (await stack.notifications(host)).map((n) => n.payload.event)

t.before(async () => {
  stack = await startRealStack(t, { computes, masakariHosts: computes.filter((c) => c !== 'ghost1'), octet: 50 })
})

t.test("the watch's first firing at agent start, every host up: nothing sent", async (t) => {
  await stack.waitForDelivery()
  t.same(await stack.notifications(), [])
  const state = await stack.state()
  t.same(Object.keys(state.ledger).sort(), [...computes].sort(), 'every compute seen, the controller (own node) not')
})

t.test("graceful leave of a compute's storage agent: no STOPPED", async (t) => {
  await stack.consul.leave('cmp5', 'storage')
  await stack.waitForSnapshot('cmp5', 'storage', 'absent', 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp5'), [])
  const decision = stack.logLines().findLast((l) => l.msg === 'decision' && l.host === 'cmp5')
  t.match(decision, { action: 'no action', vector: { storage: 'unknown' }, reason: /storage is unknown/ })
})

t.test('storage agent frozen: exactly one STOPPED; thawed: exactly one STARTED', async (t) => {
  stack.consul.freeze('cmp1', 'storage')
  const [stopped] = await stack.waitForNotifications('cmp1', 1, 60_000)
  t.match(stopped, {
    type: 'COMPUTE_HOST',
    hostname: 'cmp1',
    payload: { event: 'STOPPED', cluster_status: 'OFFLINE', host_status: 'NORMAL' },
  })
  await stack.waitForDelivery()
  t.same(await events('cmp1'), ['STOPPED'])
  stack.consul.thaw('cmp1', 'storage')
  await stack.waitForNotifications('cmp1', 2, 60_000)
  await stack.waitForSnapshot('cmp1', 'storage', 'up')
  await stack.waitForDelivery()
  t.same(await events('cmp1'), ['STOPPED', 'STARTED'])
})

t.test('management agent alone frozen: nothing under the default strategy', async (t) => {
  stack.consul.freeze('cmp2', 'management')
  await stack.waitForSnapshot('cmp2', 'management', 'down', 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp2'), [])
  const decision = stack.logLines().findLast((l) => l.msg === 'decision' && l.host === 'cmp2')
  t.match(decision, { action: 'no action', vector: { management: 'down', tenant: 'up', storage: 'up' } })
  stack.consul.thaw('cmp2', 'management')
  await stack.waitForSnapshot('cmp2', 'management', 'up', 60_000)
})

t.test('tenant and storage frozen together: exactly one STOPPED', async (t) => {
  stack.consul.freeze('cmp3', 'tenant')
  stack.consul.freeze('cmp3', 'storage')
  await stack.waitForSnapshot('cmp3', 'tenant', 'down', 60_000)
  await stack.waitForSnapshot('cmp3', 'storage', 'down', 60_000)
  await stack.waitForNotifications('cmp3', 1)
  await stack.waitForDelivery()
  t.same(await events('cmp3'), ['STOPPED'])
  // back to a healthy cluster for the next scenarios: one STARTED once both are back
  stack.consul.thaw('cmp3', 'tenant')
  stack.consul.thaw('cmp3', 'storage')
  await stack.waitForNotifications('cmp3', 2, 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp3'), ['STOPPED', 'STARTED'])
})

t.test('all three agents frozen: exactly one STOPPED', async (t) => {
  for (const n of ['management', 'tenant', 'storage'] as const) stack.consul.freeze('cmp4', n)
  for (const n of ['management', 'tenant', 'storage'] as const) await stack.waitForSnapshot('cmp4', n, 'down', 60_000)
  await stack.waitForNotifications('cmp4', 1)
  await stack.waitForDelivery()
  t.same(await events('cmp4'), ['STOPPED'])
  for (const n of ['management', 'tenant', 'storage'] as const) stack.consul.thaw('cmp4', n)
  await stack.waitForNotifications('cmp4', 2, 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp4'), ['STOPPED', 'STARTED'])
})

t.test('a node Masakari does not know: looked up, one warning, no STOPPED sent, no rate-limit slot, no error line', async (t) => {
  stack.consul.freeze('ghost1', 'storage')
  await stack.waitForSnapshot('ghost1', 'storage', 'down', 60_000)
  await stack.waitForDelivery()
  // more watch runs on other changes must not bring it back
  stack.consul.freeze('cmp2', 'tenant')
  await stack.waitForSnapshot('cmp2', 'tenant', 'down', 60_000)
  stack.consul.thaw('cmp2', 'tenant')
  await stack.waitForSnapshot('cmp2', 'tenant', 'up', 60_000)
  await stack.waitForDelivery()
  const ghost = stack.logLines().filter((l) => l.host === 'ghost1')
  t.same(
    ghost.filter((l) => l.level === 'error'),
    [],
    'no error line: nothing was sent for it',
  )
  const warned = ghost.filter((l) => l.level === 'warn' && /not a host in any Masakari failover segment/.test(String(l.msg)))
  t.equal(warned.length, 1, 'exactly one warning, however many runs follow')
  const state = await stack.state()
  t.notOk(state.ledger.ghost1?.unsent, 'nothing queued for it')
  t.same(state.outbox, [], 'the outbox is empty')
  t.same(await events('ghost1'), [])
  const explain = execFileSync(process.execPath, [EVALUATE, 'explain', 'ghost1', '--config', stack.configPath], { encoding: 'utf8' })
  t.match(explain, /not a host in any Masakari segment/, 'explain says why')
})

t.test('nothing started by this test survives it', async (t) => {
  t.same(await stack.stop(), [], 'no Consul, Keystone, masakari-api or monitor process left')
})
