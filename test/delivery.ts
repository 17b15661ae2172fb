import t, { type Test } from 'tap'
import { join } from 'node:path'
import { deliveryPass } from '../lib/run/delivery.js'
import { hostNotification } from '../lib/decide/evaluator.js'
import { recordingLogger } from '../lib/base/log.js'
import type { MasakariClient, SendResult } from '../lib/openstack/masakari.js'
import { localStore, type Store } from '../lib/state/store.js'
import type { Notification, OutboxEntry } from '../lib/decide/state-shape.js'

const t0 = new Date('2026-11-25T12:00:00.000Z')

function entry(id: string, host: string, event: 'STOPPED' | 'STARTED'): OutboxEntry {
  return {
    id,
    host,
    notification: hostNotification(host, event, t0),
    reason: 'test',
    decidedAt: t0.toISOString(),
    attempts: 0,
    nextAttemptAt: t0.toISOString(),
  }
}

async function seed(store: Store, ...outbox: OutboxEntry[]) {
  await store.transact(async (s) => ({ next: { ...s, outbox }, result: undefined }))
}

function harness(t: Test, answer: (n: Notification, i: number) => SendResult | Promise<SendResult>) {
  const store = localStore(join(t.testdir({}), 'state'))
  let clock = t0.getTime()
  const sent: Notification[] = []
  const client: MasakariClient = { send: async (n) => answer(n, sent.push(n) - 1) }
  const logger = recordingLogger()
  const deps = {
    store,
    client: () => client,
    policy: { initialBackoff: 1, maxBackoff: 8, expiry: 60, concurrency: 4 },
    now: () => new Date(clock),
    sleep: async (ms: number) => {
      clock += ms
    },
    logger,
  }
  return { store, sent, logger, deps, advance: (ms: number) => (clock += ms) }
}

const ok: SendResult = { final: true, outcome: 'accepted', message: 'accepted by Masakari' }

t.test('accepted: removed from the outbox, recorded in the ledger, sent once', async (t) => {
  const h = harness(t, () => ok)
  await seed(h.store, entry('a', 'cmp1', 'STOPPED'))
  t.match(await deliveryPass(h.deps), { sent: 1, remaining: 0 })
  t.equal(h.sent.length, 1)
  const s = await h.store.read()
  t.same(s.outbox, [])
  t.match(s.ledger.cmp1!.notified, { id: 'a', outcome: 'accepted', event: 'STOPPED' })
})

t.test('5xx and network errors: kept with a backoff, then sent again once due', async (t) => {
  const h = harness(t, (_n, i) => (i === 0 ? { final: false, message: 'Masakari answered 503' } : ok))
  await seed(h.store, entry('a', 'cmp1', 'STOPPED'))
  const first = await deliveryPass(h.deps)
  t.match(first, { sent: 1, remaining: 1 })
  t.equal(first.nextDueAt?.getTime(), t0.getTime() + 1000, 'due again after the initial backoff')
  t.match((await h.store.read()).outbox, [{ id: 'a', attempts: 1, lastError: 'Masakari answered 503' }])
  t.match(await deliveryPass(h.deps), { sent: 0, remaining: 1 }, 'not sent before it is due')
  h.advance(1000)
  t.match(await deliveryPass(h.deps), { sent: 1, remaining: 0 })
  t.equal(h.sent.length, 2)
  t.equal(JSON.stringify(h.sent[1]), JSON.stringify(h.sent[0]), 'the resend is byte-identical (same generated_time)')
  t.match((await h.store.read()).ledger.cmp1!.notified, { outcome: 'accepted' })
})

t.test('final answers are never retried', async (t) => {
  const finals: Array<[SendResult, 'notified' | 'unsent']> = [
    [{ final: true, outcome: 'duplicate', message: 'is duplicate' }, 'notified'],
    [{ final: true, outcome: 'on-maintenance', message: 'under maintenance' }, 'unsent'],
    [{ final: true, outcome: 'host-not-found', message: 'Host with name cmp1 could not be found.' }, 'unsent'],
    [{ final: true, outcome: 'rejected', message: 'Invalid input' }, 'unsent'],
  ]
  for (const [result, where] of finals) {
    const h = harness(t, () => result)
    await seed(h.store, entry('a', 'cmp1', 'STOPPED'))
    t.match(await deliveryPass(h.deps), { sent: 1, remaining: 0 }, `${result.final && result.outcome}: nothing left to retry`)
    t.equal(h.sent.length, 1, `${result.final && result.outcome}: one request`)
    const s = await h.store.read()
    t.same(s.outbox, [])
    t.match(s.ledger.cmp1![where], { outcome: result.final && result.outcome })
  }
})

t.test('host not found: one clear error line', async (t) => {
  const h = harness(t, () => ({ final: true, outcome: 'host-not-found', message: 'Host with name cmp9 could not be found.' }))
  await seed(h.store, entry('a', 'cmp9', 'STOPPED'))
  await deliveryPass(h.deps)
  const errors = h.logger.lines.filter((l) => l.level === 'error')
  t.equal(errors.length, 1)
  t.match(errors[0], { host: 'cmp9', outcome: 'host-not-found', msg: /does not know this host/ })
})

t.test('expiry: an entry not accepted by its expiry is given up, loudly, without another request', async (t) => {
  const h = harness(t, () => ({ final: false, message: 'Masakari answered 500' }))
  await seed(h.store, entry('a', 'cmp1', 'STOPPED'))
  await deliveryPass(h.deps)
  h.advance(59_000)
  t.match(await deliveryPass(h.deps), { sent: 1, remaining: 1 }, 'retried until its expiry (60 s after the decision)')
  h.advance(1_001)
  t.match(await deliveryPass(h.deps), { sent: 0, remaining: 0 })
  t.equal(h.sent.length, 2, 'not sent again once expired')
  t.match((await h.store.read()).ledger.cmp1!.unsent, { outcome: 'expired', message: /Masakari answered 500/ })
  t.match(
    h.logger.lines.find((l) => l.level === 'error'),
    { msg: 'notification expired undelivered', host: 'cmp1' },
  )
})

t.test('STARTED waits for its STOPPED, and is skipped when the STOPPED was refused', async (t) => {
  const h = harness(t, (n) => (n.payload.event === 'STOPPED' ? { final: true, outcome: 'on-maintenance', message: 'maintenance' } : ok))
  await seed(h.store, entry('a', 'cmp1', 'STOPPED'), entry('b', 'cmp1', 'STARTED'))
  await deliveryPass(h.deps)
  t.match(await deliveryPass(h.deps), { sent: 0, remaining: 0 })
  t.same(
    h.sent.map((n) => n.payload.event),
    ['STOPPED'],
  )
  t.match((await h.store.read()).ledger.cmp1!.unsent, { event: 'STARTED', outcome: 'skipped' })
})

t.test('STOPPED then STARTED of one host go in order across passes', async (t) => {
  const h = harness(t, () => ok)
  await seed(h.store, entry('a', 'cmp1', 'STOPPED'), entry('b', 'cmp1', 'STARTED'), entry('c', 'cmp2', 'STOPPED'))
  const first = await deliveryPass(h.deps)
  t.equal(first.sent, 2)
  t.same(
    h.sent.map((n) => `${n.hostname}:${n.payload.event}`),
    ['cmp1:STOPPED', 'cmp2:STOPPED'],
  )
  t.match(await deliveryPass(h.deps), { sent: 1, remaining: 0 })
  t.same(
    h.sent.map((n) => `${n.hostname}:${n.payload.event}`),
    ['cmp1:STOPPED', 'cmp2:STOPPED', 'cmp1:STARTED'],
  )
})

t.test('concurrency bounds requests in flight', async (t) => {
  let inFlight = 0
  let peak = 0
  const h = harness(t, async () => {
    peak = Math.max(peak, ++inFlight)
    await new Promise((r) => setTimeout(r, 5))
    inFlight--
    return ok
  })
  await seed(h.store, ...Array.from({ length: 10 }, (_, i) => entry(`e${i}`, `cmp${i}`, 'STOPPED')))
  t.match(await deliveryPass(h.deps), { sent: 10, remaining: 0 })
  t.equal(h.sent.length, 10)
  t.equal(peak, 4)
})

t.test('an entry answered while the outbox changed is still recorded once', async (t) => {
  const h = harness(t, async (n) => {
    // a handler queues another host's notification while this one is in flight
    if (n.hostname === 'cmp1')
      await h.store.transact(async (s) => ({ next: { ...s, outbox: [...s.outbox, entry('z', 'cmp2', 'STOPPED')] }, result: undefined }))
    return ok
  })
  await seed(h.store, entry('a', 'cmp1', 'STOPPED'))
  t.match(await deliveryPass(h.deps), { sent: 1, remaining: 1 }, 'the entry queued meanwhile waits for the next pass')
  t.match(await deliveryPass(h.deps), { sent: 1, remaining: 0 })
  t.same(
    h.sent.map((n) => n.hostname),
    ['cmp1', 'cmp2'],
  )
  t.same((await h.store.read()).outbox, [])
})

t.test("a slow answer does not hold back the other hosts' notifications", async (t) => {
  const order: string[] = []
  const h = harness(t, async (n) => {
    if (n.hostname === 'slow') await new Promise((r) => setTimeout(r, 150))
    order.push(n.hostname)
    return ok
  })
  await seed(h.store, entry('s', 'slow', 'STOPPED'), ...Array.from({ length: 6 }, (_, i) => entry(`f${i}`, `fast${i}`, 'STOPPED')))
  h.deps.policy.concurrency = 2
  t.match(await deliveryPass(h.deps), { sent: 7, remaining: 0 })
  t.equal(order.at(-1), 'slow', 'the fast ones went through while the slow one was in flight')
  t.equal(order.length, 7)
  t.same((await h.store.read()).outbox, [])
})

t.test('a host Masakari does not know is an error once, with the name tried; its next failure only an info line', async (t) => {
  const notFound: SendResult = { final: true, outcome: 'host-not-found', message: 'Masakari has no host named cmp1' }
  const h = harness(t, () => notFound)
  await seed(h.store, entry('a', 'cmp1', 'STOPPED'))
  await deliveryPass(h.deps)
  await seed(h.store, entry('b', 'cmp1', 'STOPPED'))
  await deliveryPass(h.deps)
  const said = h.logger.lines.filter((l) => /does not know this host/.test(l.msg))
  t.equal(said.length, 2)
  t.match(said, [
    { level: 'error', host: 'cmp1', message: /no host named cmp1/ },
    { level: 'info', msg: /said before/ },
  ])
})
