import t from 'tap'
import { evaluate, type FirstSight } from '../lib/evaluator.js'
import type { NodeState } from '../lib/consul-input.js'
import type { Network } from '../lib/networks.js'
import type { Snapshots } from '../lib/snapshot.js'
import { emptyState, type LedgerEntry, type StoreState } from '../lib/store.js'
import { DEFAULT_STRATEGY, parseStrategy } from '../lib/strategy.js'
import { finish } from '../lib/outbox.js'

const now = new Date('2026-11-25T12:00:00.000Z')
let ids = 0
const newId = () => `id-${++ids}`

function snapshots(view: Partial<Record<Network, Record<string, NodeState>>>): Snapshots {
  const out: Snapshots = {}
  for (const [network, nodes] of Object.entries(view)) {
    out[network as Network] = { version: 1, network: network as Network, consulIndex: '7', receivedAt: now.toISOString(), nodes }
  }
  return out
}

/** cmp1's state on management, tenant, storage; controller always up. */
function view(m: NodeState | null, te: NodeState | null, s: NodeState | null): Snapshots {
  const on = (st: NodeState | null) => ({ controller: 'up' as NodeState, ...(st === null ? {} : { cmp1: st }) })
  return snapshots({ management: on(m), tenant: on(te), storage: on(s) })
}

function run(state: StoreState, snaps: Snapshots, firstSight: FirstSight = 'notify', strategy = DEFAULT_STRATEGY) {
  return evaluate({ snapshots: snaps, strategy, state, ownHost: 'controller', firstSight, now, newId })
}

const seen = (phase: LedgerEntry['phase'], extra: Partial<LedgerEntry> = {}): StoreState => ({
  ...emptyState(),
  ledger: { cmp1: { firstSeenAt: '2026-11-25T11:00:00.000Z', phase, ...extra } },
})
const accepted = (event: 'STOPPED' | 'STARTED') => ({ id: 'x', event, outcome: 'accepted' as const, at: '2026-11-25T11:30:00.000Z', generatedTime: '2026-11-25T11:30:00.000Z' })

interface Case {
  name: string
  state: StoreState
  snaps: Snapshots
  firstSight?: FirstSight
  action: 'STOPPED' | 'STARTED' | 'none'
  phase: LedgerEntry['phase']
  reason: RegExp
}

const cases: Case[] = [
  // every row of the spec table, from a known all-up host
  { name: 'row 1 storage down', state: seen('normal'), snaps: view('up', 'up', 'down'), action: 'STOPPED', phase: 'recovery', reason: /row 1 \(recovery\)/ },
  { name: 'row 2 tenant+storage down', state: seen('normal'), snaps: view('up', 'down', 'down'), action: 'STOPPED', phase: 'recovery', reason: /row 2/ },
  { name: 'row 3 management+storage down', state: seen('normal'), snaps: view('down', 'up', 'down'), action: 'STOPPED', phase: 'recovery', reason: /row 3/ },
  { name: 'row 4 all down', state: seen('normal'), snaps: view('down', 'down', 'down'), action: 'STOPPED', phase: 'recovery', reason: /row 4/ },
  { name: 'management down alone', state: seen('normal'), snaps: view('down', 'up', 'up'), action: 'none', phase: 'normal', reason: /no row matches/ },
  { name: 'tenant down alone', state: seen('normal'), snaps: view('up', 'down', 'up'), action: 'none', phase: 'normal', reason: /no row matches/ },
  { name: 'management+tenant down', state: seen('normal'), snaps: view('down', 'down', 'up'), action: 'none', phase: 'normal', reason: /no row matches/ },
  // already decided
  { name: 'still in recovery after an accepted STOPPED', state: seen('recovery', { notified: accepted('STOPPED') }), snaps: view('up', 'up', 'down'), action: 'none', phase: 'recovery', reason: /already decided: STOPPED accepted/ },
  { name: 'moved between recovery rows', state: seen('recovery', { notified: accepted('STOPPED') }), snaps: view('down', 'down', 'down'), action: 'none', phase: 'recovery', reason: /already decided/ },
  // back to all-up
  { name: 'back up after an accepted STOPPED', state: seen('recovery', { notified: accepted('STOPPED') }), snaps: view('up', 'up', 'up'), action: 'STARTED', phase: 'normal', reason: /back to all-up after STOPPED/ },
  { name: 'back up after a STOPPED refused as host not found', state: seen('recovery', { unsent: { ...accepted('STOPPED'), outcome: 'host-not-found' } }), snaps: view('up', 'up', 'up'), action: 'none', phase: 'normal', reason: /no STARTED/ },
  { name: 'all up, never stopped', state: seen('normal'), snaps: view('up', 'up', 'up'), action: 'none', phase: 'normal', reason: /all up/ },
  { name: 'partly back (storage up, management down) stays in recovery', state: seen('recovery', { notified: accepted('STOPPED') }), snaps: view('down', 'up', 'up'), action: 'none', phase: 'recovery', reason: /no row matches/ },
  // first sight
  { name: 'first sight in a recovery row, default notify', state: emptyState(), snaps: view('up', 'up', 'down'), action: 'STOPPED', phase: 'recovery', reason: /on first sight/ },
  { name: 'first sight in a recovery row, baseline', state: emptyState(), snaps: view('up', 'up', 'down'), firstSight: 'baseline', action: 'none', phase: 'recovery', reason: /baseline/ },
  { name: 'first sight all up', state: emptyState(), snaps: view('up', 'up', 'up'), action: 'none', phase: 'normal', reason: /all up/ },
  // unknown and maintenance
  { name: 'absent from storage (left)', state: seen('normal'), snaps: view('up', 'up', null), action: 'none', phase: 'normal', reason: /storage is unknown/ },
  { name: 'storage down but management snapshot missing', state: seen('normal'), snaps: snapshots({ tenant: { cmp1: 'up' }, storage: { cmp1: 'down' } }), action: 'none', phase: 'normal', reason: /management is unknown/ },
  { name: 'storage in maintenance', state: seen('normal'), snaps: view('up', 'up', 'maintenance'), action: 'none', phase: 'normal', reason: /storage is maintenance/ },
  { name: 'management maintenance while storage down', state: seen('normal'), snaps: view('maintenance', 'up', 'down'), action: 'none', phase: 'normal', reason: /management is maintenance/ },
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const r = run(c.state, c.snaps, c.firstSight)
    const d = r.decisions.find((x) => x.host === 'cmp1')!
    t.equal(d.action, c.action)
    t.match(d.reason, c.reason)
    t.equal(r.next.ledger.cmp1!.phase, c.phase)
    t.equal(r.queued.length, c.action === 'none' ? 0 : 1)
    if (c.action !== 'none') {
      const n = r.queued[0]!.notification
      t.same(n.payload, c.action === 'STOPPED'
        ? { event: 'STOPPED', cluster_status: 'OFFLINE', host_status: 'NORMAL' }
        : { event: 'STARTED', cluster_status: 'ONLINE', host_status: 'NORMAL' })
      t.equal(n.hostname, 'cmp1')
      t.equal(n.type, 'COMPUTE_HOST')
      t.equal(n.generated_time, '2026-11-25T12:00:00.000Z')
    }
  })
}

t.test('the monitor\'s own node is never notified about', async (t) => {
  const r = run(emptyState(), snapshots({ management: { controller: 'down' }, tenant: { controller: 'down' }, storage: { controller: 'down' } }))
  t.match(r.decisions, [{ host: 'controller', action: 'none', reason: /own node/ }])
  t.same(r.queued, [])
  t.same(r.next.ledger, {})
})

t.test('a pending STOPPED is not queued twice; back up queues STARTED behind it', async (t) => {
  const first = run(seen('normal'), view('up', 'up', 'down'))
  const again = run(first.next, view('up', 'down', 'down'))
  t.equal(again.queued.length, 0)
  t.match(again.decisions.find((d) => d.host === 'cmp1')!.reason, /STOPPED waiting in the outbox/)
  const back = run(again.next, view('up', 'up', 'up'))
  t.same(back.next.outbox.map((o) => o.notification.payload.event), ['STOPPED', 'STARTED'])
})

t.test('full cycle: down, accepted, up, accepted, down again notifies again', async (t) => {
  let state = run(seen('normal'), view('up', 'up', 'down')).next
  state = finish(state, state.outbox[0]!.id, 'accepted', 'ok', now)
  t.equal(run(state, view('up', 'up', 'down')).queued.length, 0, 'no second STOPPED')
  state = run(state, view('up', 'up', 'up')).next
  t.equal(state.outbox[0]!.notification.payload.event, 'STARTED')
  state = finish(state, state.outbox[0]!.id, 'accepted', 'ok', now)
  t.equal(run(state, view('up', 'up', 'up')).queued.length, 0, 'no second STARTED')
  const down = run(state, view('up', 'up', 'down'))
  t.equal(down.queued[0]!.notification.payload.event, 'STOPPED')
})

t.test('management-only strategy ignores storage', async (t) => {
  const mgmt = parseStrategy('sequence: [manage]\nmatrix:\n  - {health: [down], action: [recovery]}\n', 'm.yaml')
  t.equal(run(seen('normal'), view('up', 'up', 'down'), 'notify', mgmt).queued.length, 0)
  t.equal(run(seen('normal'), snapshots({ management: { cmp1: 'down' } }), 'notify', mgmt).queued.length, 1)
})

t.test('an unchanged view writes nothing', async (t) => {
  const first = run(emptyState(), view('up', 'up', 'up'))
  t.equal(first.dirty, true)
  t.equal(run(first.next, view('up', 'up', 'up')).dirty, false)
})
