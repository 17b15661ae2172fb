import t, { type Test } from 'tap'
import { join } from 'node:path'
import { deliveryPass, type DeliveryDeps } from '../lib/delivery.js'
import { hostNotification } from '../lib/evaluator.js'
import { recordingLogger } from '../lib/log.js'
import type { MasakariClient, SendResult } from '../lib/masakari.js'
import { localStore, type Notification, type OutboxEntry, type Store } from '../lib/store.js'

const t0 = new Date('2026-11-25T12:00:00.000Z')

/** Passes until the outbox is empty, sleeping (on the fake clock) until the next entry is due: the worker's delivery without holds. */
async function deliverAll(deps: DeliveryDeps): Promise<void> {
  for (;;) {
    const pass = await deliveryPass(deps)
    if (pass.remaining === 0) return
    if (pass.sent === 0 && pass.nextDueAt) await deps.sleep(Math.max(10, pass.nextDueAt.getTime() - deps.now().getTime()))
  }
}

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
  await deliverAll(h.deps)
  t.equal(h.sent.length, 1)
  const s = await h.store.read()
  t.same(s.outbox, [])
  t.match(s.ledger.cmp1!.notified, { id: 'a', outcome: 'accepted', event: 'STOPPED' })
})

t.test('5xx and network errors retry with backoff until accepted', async (t) => {
  const h = harness(t, (_n, i) => (i < 3 ? { final: false, message: i === 0 ? 'Masakari answered 503' : 'connect ECONNREFUSED' } : ok))
  await seed(h.store, entry('a', 'cmp1', 'STOPPED'))
  await deliverAll(h.deps)
  t.equal(h.sent.length, 4)
  t.same(new Set(h.sent.map((n) => JSON.stringify(n))).size, 1, 'every retry is byte-identical (same generated_time)')
  t.match((await h.store.read()).ledger.cmp1!.notified, { outcome: 'accepted' })
  t.equal(h.logger.lines.filter((l) => l.msg === 'notification not delivered, will retry').length, 3)
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
    await deliverAll(h.deps)
    t.equal(h.sent.length, 1, `${result.final && result.outcome}: one request`)
    const s = await h.store.read()
    t.same(s.outbox, [])
    t.match(s.ledger.cmp1![where], { outcome: result.final && result.outcome })
  }
})

t.test('host not found: one clear error line', async (t) => {
  const h = harness(t, () => ({ final: true, outcome: 'host-not-found', message: 'Host with name cmp9 could not be found.' }))
  await seed(h.store, entry('a', 'cmp9', 'STOPPED'))
  await deliverAll(h.deps)
  const errors = h.logger.lines.filter((l) => l.level === 'error')
  t.equal(errors.length, 1)
  t.match(errors[0], { host: 'cmp9', outcome: 'host-not-found', msg: /does not know this host/ })
})

t.test('expiry: an entry never accepted is given up after the expiry, loudly', async (t) => {
  const h = harness(t, () => ({ final: false, message: 'Masakari answered 500' }))
  await seed(h.store, entry('a', 'cmp1', 'STOPPED'))
  await deliverAll(h.deps)
  const s = await h.store.read()
  t.same(s.outbox, [])
  t.match(s.ledger.cmp1!.unsent, { outcome: 'expired', message: /Masakari answered 500/ })
  t.ok(h.sent.length >= 5 && h.sent.length <= 15, `retried ${h.sent.length} times in 60 s with backoff capped at 8 s`)
  t.match(
    h.logger.lines.find((l) => l.level === 'error'),
    { msg: 'notification expired undelivered', host: 'cmp1' },
  )
})

t.test('STARTED waits for its STOPPED, and is skipped when the STOPPED was refused', async (t) => {
  const h = harness(t, (n) => (n.payload.event === 'STOPPED' ? { final: true, outcome: 'on-maintenance', message: 'maintenance' } : ok))
  await seed(h.store, entry('a', 'cmp1', 'STOPPED'), entry('b', 'cmp1', 'STARTED'))
  await deliverAll(h.deps)
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
  await deliverAll(h.deps)
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
  await deliverAll(h.deps)
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
  await deliverAll(h.deps)
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
  await deliverAll(h.deps)
  t.equal(order.at(-1), 'slow', 'the fast ones went through while the slow one was in flight')
  t.equal(order.length, 7)
  t.same((await h.store.read()).outbox, [])
})
