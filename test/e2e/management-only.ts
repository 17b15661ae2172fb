/**
 * The management-only strategy (as the Pacemaker-based monitor behaves). All three watches are
 * installed, as under the default strategy, so that a storage failure reaches the handler with
 * every network known and only the strategy stands between it and a notification.
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startRealStack, type RealStack } from './harness.js'

let stack: RealStack

t.before(async () => {
  stack = await startRealStack(t, {
    computes: ['cmp1', 'cmp2'],
    octet: 70,
    strategy: await readFile(join(import.meta.dirname, '..', '..', 'consul-config', 'strategies', 'management-only.yaml'), 'utf8'),
  })
})

t.test('management agent frozen: exactly one STOPPED under the management-only strategy', async (t) => {
  stack.consul.freeze('cmp1', 'management')
  const [n] = await stack.waitForNotifications('cmp1', 1, 60_000)
  t.match(n, { hostname: 'cmp1', payload: { event: 'STOPPED' } })
  await stack.waitForDelivery()
  t.equal((await stack.notifications('cmp1')).length, 1)
  const decision = stack.logLines().find((l) => l.msg === 'decision' && l.action === 'STOPPED')
  t.match(decision, { host: 'cmp1', row: 1, vector: { management: 'down' } })
})

t.test('storage down does not matter to this strategy', async (t) => {
  stack.consul.freeze('cmp2', 'storage')
  await stack.waitForSnapshot('cmp2', 'storage', 'down', 60_000)
  await stack.waitForEvaluation('storage')
  // no worker left: no hold or notification pending either
  await stack.waitForDelivery()
  t.same(await stack.notifications('cmp2'), [])
  t.ok(
    stack.logLines().some((l) => l.component === 'checks-handler/storage' && /not in the strategy/.test(String(l.msg))),
    'the storage handler ran and saw its network is not in the strategy',
  )
})

t.test('nothing started by this test survives it', async (t) => {
  t.same(await stack.stop(), [])
})
