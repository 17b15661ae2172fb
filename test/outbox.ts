import t from 'tap'
import {
  backoffMs,
  dueEntries,
  finish,
  isExpired,
  nextDue,
  retryLater,
  startedWithoutStopped,
  type DeliveryPolicy,
} from '../lib/decide/outbox.js'
import { hostNotification } from '../lib/decide/evaluator.js'
import { emptyState, type OutboxEntry, type StoreState } from '../lib/decide/state-shape.js'

const policy: DeliveryPolicy = { initialBackoff: 1, maxBackoff: 30, expiry: 600, concurrency: 2 }
const t0 = new Date('2026-11-25T12:00:00.000Z')
const at = (s: number) => new Date(t0.getTime() + s * 1000)

function entry(id: string, host: string, event: 'STOPPED' | 'STARTED', next = t0): OutboxEntry {
  return {
    id,
    host,
    notification: hostNotification(host, event, t0),
    reason: 'test',
    decidedAt: t0.toISOString(),
    attempts: 0,
    nextAttemptAt: next.toISOString(),
  }
}
const withOutbox = (...outbox: OutboxEntry[]): StoreState => ({ ...emptyState(), outbox })

t.test('backoff doubles from initial and is capped', async (t) => {
  const table: Array<[number, number]> = [
    [1, 1000],
    [2, 2000],
    [3, 4000],
    [5, 16000],
    [6, 30000],
    [60, 30000],
  ]
  for (const [attempts, ms] of table) t.equal(backoffMs(attempts, policy), ms, `attempt ${attempts}`)
})

t.test("one host's entries go in order; at most `concurrency` at once", async (t) => {
  const s = withOutbox(
    entry('a', 'cmp1', 'STOPPED'),
    entry('b', 'cmp1', 'STARTED'),
    entry('c', 'cmp2', 'STOPPED'),
    entry('d', 'cmp3', 'STOPPED'),
  )
  t.same(
    dueEntries(s, t0, 10).map((e) => e.id),
    ['a', 'c', 'd'],
  )
  t.same(
    dueEntries(s, t0, 2).map((e) => e.id),
    ['a', 'c'],
  )
})

t.test("an entry backing off is not due, and blocks its host's later entries", async (t) => {
  const s = withOutbox(entry('a', 'cmp1', 'STOPPED', at(5)), entry('b', 'cmp1', 'STARTED'))
  t.same(dueEntries(s, t0, 10), [])
  t.same(
    dueEntries(s, at(5), 10).map((e) => e.id),
    ['a'],
  )
  t.same(nextDue(s), at(5), "next due is the head's time, not the blocked entry's")
  t.equal(nextDue(emptyState()), undefined)
})

t.test('expiry boundary', async (t) => {
  const e = entry('a', 'cmp1', 'STOPPED')
  t.equal(isExpired(e, at(600), policy), false)
  t.equal(isExpired(e, at(600.001), policy), true)
})

t.test('finish moves the entry to the ledger: accepted/duplicate as notified, the rest as unsent', async (t) => {
  const s = withOutbox(entry('a', 'cmp1', 'STOPPED'), entry('b', 'cmp2', 'STOPPED'))
  const accepted = finish(s, 'a', 'accepted', 'ok', at(1))
  t.same(
    accepted.outbox.map((e) => e.id),
    ['b'],
  )
  t.match(accepted.ledger.cmp1!.notified, { id: 'a', event: 'STOPPED', outcome: 'accepted' })
  const refused = finish(accepted, 'b', 'host-not-found', 'Host with name cmp2 could not be found.', at(1))
  t.same(refused.outbox, [])
  t.equal(refused.ledger.cmp2!.notified, undefined)
  t.match(refused.ledger.cmp2!.unsent, { outcome: 'host-not-found' })
  t.equal(finish(refused, 'gone', 'accepted', 'ok', at(1)), refused, 'unknown id: unchanged')
})

t.test('retryLater counts the attempt and sets the backoff', async (t) => {
  const s = retryLater(withOutbox(entry('a', 'cmp1', 'STOPPED')), 'a', 'Masakari answered 503', t0, policy)
  t.match(s.outbox[0], { attempts: 1, lastError: 'Masakari answered 503', nextAttemptAt: at(1).toISOString() })
  const s2 = retryLater(s, 'a', 'again', at(1), policy)
  t.match(s2.outbox[0], { attempts: 2, nextAttemptAt: at(3).toISOString() })
})

t.test('a STARTED is only sent when Masakari holds a STOPPED', async (t) => {
  const started = entry('b', 'cmp1', 'STARTED')
  t.equal(startedWithoutStopped(withOutbox(started), started), true)
  const held = finish(withOutbox(entry('a', 'cmp1', 'STOPPED'), started), 'a', 'duplicate', 'dup', t0)
  t.equal(startedWithoutStopped(held, started), false)
  t.equal(startedWithoutStopped(held, entry('c', 'cmp1', 'STOPPED')), false)
})

t.test('finish records a prototype-named host as any other, keeping the others', async (t) => {
  // A plain-object ledger, as the evaluator's next state has it.
  let s: StoreState = {
    ...withOutbox(entry('a', 'constructor', 'STOPPED'), entry('b', '__proto__', 'STOPPED'), entry('c', 'toString', 'STARTED')),
    ledger: {},
  }
  s = finish(s, 'a', 'accepted', 'ok', at(1))
  s = finish(s, 'b', 'on-maintenance', 'm', at(2))
  t.same(Object.keys(s.ledger), ['constructor', '__proto__'])
  t.match(Object.getOwnPropertyDescriptor(s.ledger, 'constructor')?.value, { firstSeenAt: t0.toISOString(), notified: { id: 'a' } })
  t.match(Object.getOwnPropertyDescriptor(s.ledger, '__proto__')?.value, { firstSeenAt: t0.toISOString(), unsent: { id: 'b' } })
  t.equal(JSON.parse(JSON.stringify(s)).ledger.constructor.firstSeenAt, t0.toISOString())
  t.equal(s.ledger.toString, undefined, 'a direct lookup of an absent host finds nothing (report.ts reads it so)')
})
