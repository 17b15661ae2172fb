/**
 * Three controllers with Consul ACLs on (default_policy deny), issue #10: the monitors' token
 * with the README's minimal policy is enough for one STOPPED from three controllers; a token
 * without it is a clear error in the monitor's pulse check and in its log, never a view of
 * `unknown` hosts.
 */
import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { parse, stringify } from 'yaml'
import { type RealStack, startRealStack } from './harness.js'

const controllers = ['ctl1', 'ctl2', 'ctl3']
const computes = ['cmp1', 'cmp2', 'cmp3']
const storage = 'storage' as const
let stack: RealStack

t.before(async () => {
  stack = await startRealStack(t, { computes, controllers, octet: 180, acl: true, pulse: '3s' })
})

const events = async (host: string) => (await stack.notifications(host)).map((n) => n.payload.event)
const consulGet = async (c: string, path: string) => {
  const res = await fetch(`http://${stack.consul.httpAddr(c, 'management')}${path}`, { headers: { 'X-Consul-Token': stack.token! } })
  return res.json() as Promise<unknown>
}
const holder = () => stack.holder()
async function settled(): Promise<void> {
  for (const c of controllers) await stack.monitor(c).waitForDelivery(120_000)
}

t.test('the minimal token: a compute fails, exactly one STOPPED; back, one STARTED', async (t) => {
  stack.consul.freeze('cmp1', storage)
  await stack.waitForNotifications('cmp1', 1, 120_000)
  await settled()
  t.same(await events('cmp1'), ['STOPPED'])
  stack.consul.thaw('cmp1', storage)
  await stack.waitForNotifications('cmp1', 2, 120_000)
  await settled()
  t.same(await events('cmp1'), ['STOPPED', 'STARTED'])
})

t.test("a token without the policy: a clear error in the monitor's check and its log; the sender still sends one", async (t) => {
  const sender = await holder()
  const standby = controllers.find((c) => c !== sender)!
  const token = await stack.consul.createToken('management', 'masakari-consul-weak', 'node_prefix "" { policy = "read" }')
  const m = stack.monitor(standby)
  const config = parse(await readFile(m.configPath, 'utf8')) as { consul: Record<string, unknown> }
  config.consul.token = token
  await writeFile(m.configPath, stringify(config))
  // The config is newer than the health note: the pulse's next run (3 s) takes a deep look.
  let output = ''
  const deadline = Date.now() + 60_000
  for (;;) {
    // the check as the controller's own agent runs it (what `consul` and the UI show for the node)
    const checks = (await consulGet(standby, '/v1/agent/checks')) as Record<string, { Status: string; Output: string }>
    const pulse = checks['masakari-consul']
    if (pulse?.Status === 'critical' && /403/.test(pulse.Output)) {
      output = pulse.Output
      break
    }
    if (Date.now() > deadline) throw new Error(`the pulse check did not turn critical: ${JSON.stringify(pulse)}`)
    await new Promise((r) => setTimeout(r, 250))
  }
  t.match(output, /critical: .*answered 403 .*ACL token lacks/, 'the check says what is wrong')
  // A Consul event: the weak monitor's watch runs, and says so in its log; the sender sends.
  stack.consul.freeze('cmp2', storage)
  await stack.waitForNotifications('cmp2', 1, 120_000)
  const deadline2 = Date.now() + 60_000
  while (!m.logLines().some((l) => l.level === 'error' && /own Consul agent refused/.test(String(l.msg)))) {
    if (Date.now() > deadline2) throw new Error('no error line in the weak monitor log')
    await new Promise((r) => setTimeout(r, 250))
  }
  const line = m.logLines().find((l) => l.level === 'error' && /own Consul agent refused/.test(String(l.msg)))
  t.match(line, { error: /403.*ACL token lacks/ }, 'the log says what is wrong')
  for (const c of controllers.filter((c) => c !== standby)) await stack.monitor(c).waitForDelivery(120_000)
  t.same(await events('cmp2'), ['STOPPED'], 'exactly one, from the sender')
})

t.test('nothing started by this test survives it', async (t) => {
  t.same(await stack.stop(), [])
})
