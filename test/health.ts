/**
 * The monitor's own check (the health note the pulse reports): what turns it non-passing, and
 * which reason wins when several hold. Fencing's reasons are tested in test/fence-delivery.ts.
 */
import t from 'tap'
import { hostNotification } from '../lib/decide/evaluator.js'
import type { Snapshots } from '../lib/decide/snapshot-shape.js'
import { emptyState, type OutboxEntry, type StoreState } from '../lib/decide/state-shape.js'
import { type Health, healthOf } from '../lib/state/status-files.js'

const T0 = Date.parse('2026-11-25T12:00:00.000Z')
const now = new Date(T0 + 120_000)
const SEQ = ['management', 'storage'] as const

const snapshots: Snapshots = {
  management: { version: 1, network: 'management', consulIndex: '1', receivedAt: '', nodes: { cmp1: 'up' } },
  storage: { version: 1, network: 'storage', consulIndex: '1', receivedAt: '', nodes: { cmp1: 'down' } },
}

const isolated: StoreState = {
  ...emptyState(),
  isolation: { storage: { since: new Date(T0).toISOString(), reason: '4 of 6 hosts turned down on storage together' } },
}

function waiting(decidedAtS: number): OutboxEntry {
  const n = hostNotification('cmp1', 'STOPPED', new Date(T0 + decidedAtS * 1000))
  return {
    id: 'a',
    host: 'cmp1',
    notification: n,
    reason: 'test',
    decidedAt: n.generated_time,
    attempts: 1,
    nextAttemptAt: n.generated_time,
  }
}

t.test('healthOf: each reason alone, and which one wins', async (t) => {
  const cases: Array<[string, StoreState, Snapshots, { status: Health['status']; reason: RegExp }]> = [
    ['nothing wrong', emptyState(), snapshots, { status: 'passing', reason: /^0 notification\(s\) pending/ }],
    [
      'self-isolation holds recoveries back: warning, naming the network and the guard’s reason',
      isolated,
      snapshots,
      { status: 'warning', reason: /self-isolation guard holds every recovery back \(storage since .*: 4 of 6 hosts turned down/ },
    ],
    [
      'isolation on two networks: both named',
      { ...isolated, isolation: { ...isolated.isolation, management: { since: 'x', reason: '5 of 6' } } },
      snapshots,
      { status: 'warning', reason: /management since x: 5 of 6.*storage since/ },
    ],
    [
      'a backlog alone',
      { ...emptyState(), outbox: [waiting(0)] },
      snapshots,
      { status: 'warning', reason: /^1 notification\(s\) waiting/ },
    ],
    [
      'isolation is said before a backlog (it is why hosts go unnotified)',
      { ...isolated, outbox: [waiting(0)] },
      snapshots,
      { status: 'warning', reason: /^self-isolation guard/ },
    ],
    [
      'isolation is said before a missing snapshot',
      isolated,
      { storage: snapshots.storage },
      { status: 'warning', reason: /^self-isolation guard/ },
    ],
  ]
  for (const [name, state, snaps, want] of cases) t.match(healthOf(state, snaps, [...SEQ], undefined, now), want, name)
})
