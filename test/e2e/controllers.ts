/**
 * Three controllers, one notification (issue #10), on the real stack: three servers per
 * cluster, a monitor on each controller (its own state dir and hostname) with the pulse check,
 * Masakari's duplicate window 0. Assertions read what Masakari stored, per host and event.
 *
 * CONTROLLERS_REPEAT=N runs the first scenario N times in a row on the same stack
 * (`npm run repeat:controllers` runs it 10 times).
 */
import t from 'tap'
import { type RealStack, startRealStack } from './harness.js'

const controllers = ['ctl1', 'ctl2', 'ctl3']
const computes = ['cmp1', 'cmp2', 'cmp3', 'cmp4']
const storage = 'storage' as const
const REPEAT = Number(process.env.CONTROLLERS_REPEAT ?? 1)
let stack: RealStack

t.before(async () => {
  stack = await startRealStack(t, {
    computes,
    controllers,
    octet: 170,
    pulse: '3s',
    // Ten rounds of the same failure in a few minutes: the rate limit (5 per 300 s) would hold
    // the sixth, by design; it is not what this file tests.
    monitor: { guards: { rateLimit: { maxRecoveries: 0 } } },
  })
})

const events = async (host: string) => (await stack.notifications(host)).map((n) => n.payload.event)
const gone = new Set<string>()
const live = () => controllers.filter((c) => !gone.has(c))

/** The controller holding the sender lock, as Consul's KV says. */
const holder = () => stack.holder(live())

/** Every live controller's monitor has nothing pending and no process running. */
async function settled(timeoutMs = 120_000): Promise<void> {
  for (const c of live()) await stack.monitor(c).waitForDelivery(timeoutMs)
}

t.test('a compute fails: exactly one STOPPED, one STARTED when it is back; the others are standby', async (t) => {
  for (let i = 0; i < REPEAT; i++) {
    const before = (await stack.notifications('cmp1')).length
    if (i > 0) t.comment(`round ${i + 1} of ${REPEAT} (${before} stored so far for cmp1)`)
    stack.consul.freeze('cmp1', storage)
    await stack.waitForNotifications('cmp1', before + 1, 120_000)
    await settled()
    stack.consul.thaw('cmp1', storage)
    await stack.waitForNotifications('cmp1', before + 2, 120_000)
    await settled()
    t.same((await events('cmp1')).slice(before), ['STOPPED', 'STARTED'], `round ${i + 1}: one STOPPED, one STARTED`)
  }
  const sender = await holder()
  const standbys = controllers.filter((c) => c !== sender)
  for (const c of standbys) {
    t.ok(
      stack
        .monitor(c)
        .logLines()
        .some((l) => /^standby/.test(String(l.msg)) && l.holder === sender),
      `${c} logged standby, ${sender} sends`,
    )
  }
})

t.test('the holder frozen longer than lock-delay, then resumed: still exactly one STOPPED', async (t) => {
  const frozen = await holder()
  stack.consul.freeze('cmp2', storage)
  await stack.consul.waitForSerf(
    'cmp2',
    storage,
    'critical',
    60_000,
    live().find((c) => c !== frozen),
  )
  stack.freezeController(frozen)
  gone.add(frozen)
  const t0 = Date.now()
  await stack.waitForNotifications('cmp2', 1, 150_000)
  t.comment(`stored by another controller ${((Date.now() - t0) / 1000).toFixed(1)} s after ${frozen} froze`)
  stack.thawController(frozen)
  gone.delete(frozen)
  await settled(180_000)
  t.same(await events('cmp2'), ['STOPPED'], 'exactly one, though the frozen holder resumed with it pending')
  t.not(await holder(), frozen, 'the resumed controller is standby')
  stack.consul.thaw('cmp2', storage)
  await stack.waitForNotifications('cmp2', 2, 120_000)
  await settled()
  t.same(await events('cmp2'), ['STOPPED', 'STARTED'])
})

t.test('the worker killed (SIGKILL) while a STOPPED is held, no further Consul event: the pulse delivers it', async (t) => {
  const sender = await holder()
  const m = stack.monitor(sender)
  stack.consul.freeze('cmp3', storage)
  // the decision is held (5 s) by a worker waiting for it: kill that worker
  const worker = await waitForWorker(m.configPath)
  process.kill(worker, 'SIGKILL')
  const t0 = Date.now()
  await stack.waitForNotifications('cmp3', 1, 120_000)
  t.comment(`stored ${((Date.now() - t0) / 1000).toFixed(1)} s after the worker was killed`)
  await settled()
  t.same(await events('cmp3'), ['STOPPED'])
  t.ok(
    m.logLines().some((l) => l.component === 'worker' && l.msg === 'notification accepted by Masakari' && l.host === 'cmp3'),
    'delivered by a worker the pulse started',
  )
  stack.consul.thaw('cmp3', storage)
  await stack.waitForNotifications('cmp3', 2, 120_000)
  await settled()
})

async function waitForWorker(configPath: string): Promise<number> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const { readdirSync, readFileSync } = await import('node:fs')
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue
      try {
        const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8')
        if (cmd.includes(configPath) && cmd.includes('--worker')) return Number(name)
      } catch {}
    }
    if (Date.now() > deadline) throw new Error('no worker appeared')
    await new Promise((r) => setTimeout(r, 50))
  }
}

t.test(
  'the lock holder killed (all its agents and processes) right after a compute fails: exactly one STOPPED, from another',
  async (t) => {
    const killed = await holder()
    stack.consul.freeze('cmp4', storage)
    await stack.consul.waitForSerf(
      'cmp4',
      storage,
      'critical',
      60_000,
      live().find((c) => c !== killed),
    )
    await stack.killController(killed)
    gone.add(killed)
    const t0 = Date.now()
    await stack.waitForNotifications('cmp4', 1, 150_000)
    t.comment(`takeover: stored ${((Date.now() - t0) / 1000).toFixed(1)} s after ${killed} was killed (lock-delay 15 s)`)
    await settled()
    t.same(await events('cmp4'), ['STOPPED'])
    t.not(await holder(), killed)
  },
)

t.test('nothing started by this test survives it', async (t) => {
  t.same(await stack.stop(), [])
})
