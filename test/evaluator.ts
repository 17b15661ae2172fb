import t from 'tap'
import { evaluate, type FirstSight } from '../lib/decide/evaluator.js'
import type { NodeState } from '../lib/base/networks.js'
import type { Network } from '../lib/base/networks.js'
import type { Snapshots } from '../lib/decide/snapshot-shape.js'
import { emptyState, type LedgerEntry, type OwnHolds, ownHoldsOf, type StoreState } from '../lib/decide/state-shape.js'
import { DEFAULT_STRATEGY, parseStrategy } from '../lib/decide/strategy.js'
import { finish } from '../lib/decide/outbox.js'
import type { GuardPolicy } from '../lib/decide/guards.js'

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

const OFF: GuardPolicy = {
  hold: { recovery: 0, back: 0 },
  burst: { quietWindow: 0 },
  isolation: { maxDownFraction: 1, maxDownCount: null, window: 30 },
  rateLimit: { maxRecoveries: 0, window: 300 },
}

function run(state: StoreState, snaps: Snapshots, firstSight: FirstSight = 'notify', strategy = DEFAULT_STRATEGY) {
  return evaluate({ snapshots: snaps, strategy, state, ownHost: 'controller', firstSight, now, newId, guards: OFF })
}

const seen = (phase: LedgerEntry['phase'], extra: Partial<LedgerEntry> = {}): StoreState => ({
  ...emptyState(),
  ledger: { cmp1: { firstSeenAt: '2026-11-25T11:00:00.000Z', phase, ...extra } },
})
const accepted = (event: 'STOPPED' | 'STARTED') => ({
  id: 'x',
  event,
  outcome: 'accepted' as const,
  at: '2026-11-25T11:30:00.000Z',
  generatedTime: '2026-11-25T11:30:00.000Z',
})

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
  {
    name: 'row 1 storage down',
    state: seen('normal'),
    snaps: view('up', 'up', 'down'),
    action: 'STOPPED',
    phase: 'recovery',
    reason: /row 1 \(recovery\)/,
  },
  {
    name: 'row 2 tenant+storage down',
    state: seen('normal'),
    snaps: view('up', 'down', 'down'),
    action: 'STOPPED',
    phase: 'recovery',
    reason: /row 2/,
  },
  {
    name: 'row 3 management+storage down',
    state: seen('normal'),
    snaps: view('down', 'up', 'down'),
    action: 'STOPPED',
    phase: 'recovery',
    reason: /row 3/,
  },
  {
    name: 'row 4 all down',
    state: seen('normal'),
    snaps: view('down', 'down', 'down'),
    action: 'STOPPED',
    phase: 'recovery',
    reason: /row 4/,
  },
  {
    name: 'management down alone',
    state: seen('normal'),
    snaps: view('down', 'up', 'up'),
    action: 'none',
    phase: 'normal',
    reason: /no row matches/,
  },
  {
    name: 'tenant down alone',
    state: seen('normal'),
    snaps: view('up', 'down', 'up'),
    action: 'none',
    phase: 'normal',
    reason: /no row matches/,
  },
  {
    name: 'management+tenant down',
    state: seen('normal'),
    snaps: view('down', 'down', 'up'),
    action: 'none',
    phase: 'normal',
    reason: /no row matches/,
  },
  // already decided
  {
    name: 'still in recovery after an accepted STOPPED',
    state: seen('recovery', { notified: accepted('STOPPED') }),
    snaps: view('up', 'up', 'down'),
    action: 'none',
    phase: 'recovery',
    reason: /already decided: STOPPED accepted/,
  },
  {
    name: 'moved between recovery rows',
    state: seen('recovery', { notified: accepted('STOPPED') }),
    snaps: view('down', 'down', 'down'),
    action: 'none',
    phase: 'recovery',
    reason: /already decided/,
  },
  // back to all-up
  {
    name: 'back up after an accepted STOPPED',
    state: seen('recovery', { notified: accepted('STOPPED') }),
    snaps: view('up', 'up', 'up'),
    action: 'STARTED',
    phase: 'normal',
    reason: /back to all-up after STOPPED/,
  },
  {
    name: 'back up after a STOPPED refused as host not found',
    state: seen('recovery', { unsent: { ...accepted('STOPPED'), outcome: 'host-not-found' } }),
    snaps: view('up', 'up', 'up'),
    action: 'none',
    phase: 'normal',
    reason: /no STARTED/,
  },
  {
    name: 'all up, never stopped',
    state: seen('normal'),
    snaps: view('up', 'up', 'up'),
    action: 'none',
    phase: 'normal',
    reason: /all up/,
  },
  {
    name: 'partly back (storage up, management down) stays in recovery',
    state: seen('recovery', { notified: accepted('STOPPED') }),
    snaps: view('down', 'up', 'up'),
    action: 'none',
    phase: 'recovery',
    reason: /no row matches/,
  },
  // first sight
  {
    name: 'first sight in a recovery row, default notify',
    state: emptyState(),
    snaps: view('up', 'up', 'down'),
    action: 'STOPPED',
    phase: 'recovery',
    reason: /on first sight/,
  },
  {
    name: 'first sight in a recovery row, baseline',
    state: emptyState(),
    snaps: view('up', 'up', 'down'),
    firstSight: 'baseline',
    action: 'none',
    phase: 'recovery',
    reason: /baseline/,
  },
  { name: 'first sight all up', state: emptyState(), snaps: view('up', 'up', 'up'), action: 'none', phase: 'normal', reason: /all up/ },
  // unknown and maintenance
  {
    name: 'absent from storage (left)',
    state: seen('normal'),
    snaps: view('up', 'up', null),
    action: 'none',
    phase: 'normal',
    reason: /storage is unknown/,
  },
  {
    name: 'storage down but management snapshot missing',
    state: seen('normal'),
    snaps: snapshots({ tenant: { cmp1: 'up' }, storage: { cmp1: 'down' } }),
    action: 'none',
    phase: 'normal',
    reason: /management is unknown/,
  },
  {
    name: 'storage in maintenance',
    state: seen('normal'),
    snaps: view('up', 'up', 'maintenance'),
    action: 'none',
    phase: 'normal',
    reason: /storage is maintenance/,
  },
  {
    name: 'management maintenance while storage down',
    state: seen('normal'),
    snaps: view('maintenance', 'up', 'down'),
    action: 'none',
    phase: 'normal',
    reason: /management is maintenance/,
  },
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
      t.same(
        n.payload,
        c.action === 'STOPPED'
          ? { event: 'STOPPED', cluster_status: 'OFFLINE', host_status: 'NORMAL' }
          : { event: 'STARTED', cluster_status: 'ONLINE', host_status: 'NORMAL' },
      )
      t.equal(n.hostname, 'cmp1')
      t.equal(n.type, 'COMPUTE_HOST')
      t.equal(n.generated_time, '2026-11-25T12:00:00.000Z')
    }
  })
}

t.test("the monitor's own node is never notified about", async (t) => {
  const r = run(
    emptyState(),
    snapshots({ management: { controller: 'down' }, tenant: { controller: 'down' }, storage: { controller: 'down' } }),
  )
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
  t.same(
    back.next.outbox.map((o) => o.notification.payload.event),
    ['STOPPED', 'STARTED'],
  )
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

// ---- guards ----------------------------------------------------------------------------------

const at = (s: number) => new Date(now.getTime() + s * 1000)
function runAt(
  s: number,
  state: StoreState,
  snaps: Snapshots,
  guards: Partial<GuardPolicy>,
  confirmations?: Parameters<typeof evaluate>[0]['confirmations'],
  ownHolds?: OwnHolds,
) {
  return evaluate({
    snapshots: snaps,
    strategy: DEFAULT_STRATEGY,
    state,
    ownHost: 'controller',
    firstSight: 'notify',
    now: at(s),
    newId,
    guards: { ...OFF, ...guards },
    confirmations,
    ...(ownHolds ? { ownHolds } : {}),
  })
}
const cmp1 = (r: ReturnType<typeof run>) => r.decisions.find((d) => d.host === 'cmp1')!

t.test('hold: STOPPED only after the host stayed in a recovery row for the hold time', async (t) => {
  const hold = { hold: { recovery: 5, back: 5 } }
  const r0 = runAt(0, seen('normal'), view('up', 'up', 'down'), hold)
  t.match(cmp1(r0), { action: 'none', guard: { kind: 'hold', until: at(5).toISOString() } })
  t.equal(r0.next.wakeAt, at(5).toISOString(), 'a wake-up is recorded: the hold fires with no new event')
  t.equal(r0.next.ledger.cmp1!.phase, 'normal', "an unstable vector is not recorded as the host's state")
  const r1 = runAt(4.999, r0.next, view('up', 'down', 'down'), hold)
  t.match(cmp1(r1), { action: 'none', guard: { kind: 'hold' } }, 'moving between recovery rows keeps the hold')
  const r2 = runAt(5, r1.next, view('up', 'down', 'down'), hold)
  t.match(cmp1(r2), { action: 'STOPPED', reason: /held since/ })
  t.equal(r2.next.wakeAt, undefined)
})

t.test('hold: a flapping host never reaches its notification', async (t) => {
  const hold = { hold: { recovery: 5, back: 5 } }
  let s = seen('normal')
  for (let i = 0; i < 4; i++) {
    s = runAt(i * 3, s, view('up', 'up', 'down'), hold).next
    const up = runAt(i * 3 + 2, s, view('up', 'up', 'up'), hold)
    t.equal(up.queued.length, 0)
    s = up.next
    t.equal(s.ledger.cmp1!.hold, undefined, 'the hold is broken')
  }
  t.same(s.outbox, [])
})

t.test('hold: STARTED only after the host stayed all-up for the hold time; a relapse sends nothing', async (t) => {
  const hold = { hold: { recovery: 0, back: 5 } }
  const stoppedState = seen('recovery', { notified: accepted('STOPPED') })
  const r0 = runAt(0, stoppedState, view('up', 'up', 'up'), hold)
  t.match(cmp1(r0), { action: 'none', guard: { kind: 'hold', until: at(5).toISOString() } })
  const relapse = runAt(2, r0.next, view('up', 'up', 'down'), hold)
  t.match(cmp1(relapse), { action: 'none', reason: /already decided/ })
  t.equal(relapse.next.ledger.cmp1!.hold, undefined)
  const back = runAt(3, relapse.next, view('up', 'up', 'up'), hold)
  t.equal(runAt(7.999, back.next, view('up', 'up', 'up'), hold).queued.length, 0)
  t.match(cmp1(runAt(8, back.next, view('up', 'up', 'up'), hold)), { action: 'STARTED' })
})

// ---- takeover: a hold this controller saw while another sent (several controllers) -------------

const DOWN = 'management=up tenant=up storage=down'
const ALL_UP = 'management=up tenant=up storage=up'
const TENANT_AND_STORAGE = 'management=up tenant=down storage=down'
const HOLD5 = { hold: { recovery: 5, back: 5 } }
const own = (kind: 'recovery' | 'back', s: number, vector: string): OwnHolds => ({ cmp1: { kind, since: at(s).toISOString(), vector } })

/** A run at `s` seconds with this controller's own holds (evaluate's `ownHolds`). */
function runOwn(s: number, state: StoreState, snaps: Snapshots, ownHolds?: OwnHolds) {
  return runAt(s, state, snaps, HOLD5, undefined, ownHolds)
}

interface TakeoverCase {
  name: string
  /** The shared record as the old sender left it. */
  record: StoreState
  snaps: Snapshots
  ownHolds?: OwnHolds
  /** The new sender's first evaluation, seconds after this controller's own hold began (at 0). */
  at: number
  action: 'STOPPED' | 'STARTED' | 'none'
  /** When the hold ends, when it still holds. */
  until?: number
  reason?: RegExp
}

const TAKEOVER_CASES: TakeoverCase[] = [
  {
    name: 'the record never saw the vector (its sender died first): the hold counts from when this controller saw it',
    record: seen('normal', { vector: ALL_UP }),
    snaps: view('up', 'up', 'down'),
    ownHolds: own('recovery', 0, DOWN),
    at: 5,
    action: 'STOPPED',
    reason: /held since 2026-11-25T12:00:00\.000Z/,
  },
  {
    name: 'part of the hold went by on this controller: the new sender holds the rest',
    record: seen('normal', { vector: ALL_UP }),
    snaps: view('up', 'up', 'down'),
    ownHolds: own('recovery', 0, DOWN),
    at: 2,
    action: 'none',
    until: 5,
  },
  {
    name: 'a host new to the record (its first sight by the old sender never recorded): the same',
    record: emptyState(),
    snaps: view('up', 'up', 'down'),
    ownHolds: own('recovery', 0, DOWN),
    at: 5,
    action: 'STOPPED',
  },
  {
    name: 'this controller held another vector: the hold starts now',
    record: seen('normal', { vector: ALL_UP }),
    snaps: view('up', 'up', 'down'),
    ownHolds: own('recovery', 0, TENANT_AND_STORAGE),
    at: 20,
    action: 'none',
    until: 25,
  },
  {
    name: 'the record saw this vector and holds nothing (a guard had its reason): the hold starts now',
    record: seen('normal', { vector: DOWN }),
    snaps: view('up', 'up', 'down'),
    ownHolds: own('recovery', 0, DOWN),
    at: 20,
    action: 'none',
    until: 25,
  },
  {
    name: "the record saw this vector unconfirmed (the old sender's own agent did not answer as it died): the hold counts from this controller's",
    record: seen('normal', { vector: DOWN, unconfirmedSince: at(0).toISOString() }),
    snaps: view('up', 'up', 'down'),
    ownHolds: own('recovery', 0, DOWN),
    at: 5,
    action: 'STOPPED',
    reason: /held since 2026-11-25T12:00:00\.000Z/,
  },
  {
    name: "the record's own hold stands, even when this controller's began earlier",
    record: seen('normal', { vector: DOWN, hold: { kind: 'recovery', since: at(1).toISOString() } }),
    snaps: view('up', 'up', 'down'),
    ownHolds: own('recovery', 0, DOWN),
    at: 5.5,
    action: 'none',
    until: 6,
  },
  {
    name: 'a hold of the other kind: the hold starts now',
    record: seen('normal', { vector: ALL_UP }),
    snaps: view('up', 'up', 'down'),
    ownHolds: own('back', 0, DOWN),
    at: 20,
    action: 'none',
    until: 25,
  },
  {
    name: 'no holds of its own (one controller, or none seen): the hold starts now, as always',
    record: seen('normal', { vector: ALL_UP }),
    snaps: view('up', 'up', 'down'),
    at: 20,
    action: 'none',
    until: 25,
  },
  {
    name: 'an own hold that begins after now (another clock): the hold starts now',
    record: seen('normal', { vector: ALL_UP }),
    snaps: view('up', 'up', 'down'),
    ownHolds: own('recovery', 30, DOWN),
    at: 20,
    action: 'none',
    until: 25,
  },
  {
    name: 'back all up: the STARTED hold counts from when this controller saw the host all up',
    record: seen('recovery', { vector: DOWN, notified: accepted('STOPPED') }),
    snaps: view('up', 'up', 'up'),
    ownHolds: own('back', 0, ALL_UP),
    at: 5,
    action: 'STARTED',
  },
]

for (const c of TAKEOVER_CASES) {
  t.test(`takeover: ${c.name}`, async (t) => {
    const d = cmp1(runOwn(c.at, c.record, c.snaps, c.ownHolds))
    t.equal(d.action, c.action)
    if (c.until !== undefined) t.match(d.guard, { kind: 'hold', until: at(c.until).toISOString() })
    if (c.reason) t.match(d.reason, c.reason)
  })
}

t.test('takeover: a flap this controller saw breaks its own hold; the new sender does not count across it', async (t) => {
  // The old sender recorded the host all up, then died; this controller's own runs go on.
  const record = seen('normal', { vector: ALL_UP })
  let holds: OwnHolds | undefined
  for (const [s, storage] of [
    [0, 'down'],
    [2, 'up'],
    [3, 'down'],
  ] as const) {
    holds = ownHoldsOf(runOwn(s, record, view('up', 'up', storage), holds).next.ledger)
  }
  t.same(holds, own('recovery', 3, DOWN), 'held since it turned down again')
  const takeover = cmp1(runOwn(6, record, view('up', 'up', 'down'), holds))
  t.match(takeover, { action: 'none', guard: { kind: 'hold', until: at(8).toISOString() } })
  t.equal(cmp1(runOwn(8, record, view('up', 'up', 'down'), holds)).action, 'STOPPED')
})

t.test('ownHoldsOf: every held host with the vector of its hold, and nothing else', async (t) => {
  const ledger = Object.assign(Object.create(null), {
    cmp1: { firstSeenAt: 'x', vector: DOWN, hold: { kind: 'recovery', since: 'a' } },
    cmp2: { firstSeenAt: 'x', vector: ALL_UP },
    ['__proto__']: { firstSeenAt: 'x', vector: ALL_UP, hold: { kind: 'back', since: 'b' } },
  }) as StoreState['ledger']
  const holds = ownHoldsOf(ledger)
  t.same(Object.keys(holds).sort(), ['__proto__', 'cmp1'])
  t.same({ ...holds.cmp1 }, { kind: 'recovery', since: 'a', vector: DOWN })
  t.equal(Object.getPrototypeOf(holds), null)
})

function cloud(down: string[], maintenance: string[] = [], size = 6): Snapshots {
  const nodes: Record<string, NodeState> = { controller: 'up' }
  for (let i = 1; i <= size; i++)
    nodes[`cmp${i}`] = down.includes(`cmp${i}`) ? 'down' : maintenance.includes(`cmp${i}`) ? 'maintenance' : 'up'
  const up = Object.fromEntries(Object.keys(nodes).map((n) => [n, 'up' as NodeState]))
  return snapshots({ management: up, tenant: up, storage: nodes })
}
const isolationOn = { isolation: { maxDownFraction: 0.55, maxDownCount: null, window: 30 } }

t.test('isolation: most hosts down at once on storage → no STOPPED, one loud event; view restored → no STARTED', async (t) => {
  const base = runAt(0, emptyState(), cloud([]), isolationOn).next
  const cut = runAt(10, base, cloud(['cmp1', 'cmp2', 'cmp3', 'cmp4']), isolationOn)
  t.same(cut.queued, [])
  t.equal(cut.events.length, 1)
  t.match(cut.events[0], { level: 'error', msg: /SELF-ISOLATION/, fields: { network: 'storage', down: 4, known: 6 } })
  t.match(
    cut.decisions.find((d) => d.host === 'cmp1'),
    { guard: { kind: 'isolation' }, reason: /4 of 6 hosts \(67% > 55%\)/ },
  )
  const still = runAt(100, cut.next, cloud(['cmp1', 'cmp2', 'cmp3', 'cmp4']), isolationOn)
  t.same(still.queued, [], 'still suppressed long after the window')
  t.same(still.events, [], 'logged once, not on every run')
  const back = runAt(110, still.next, cloud([]), isolationOn)
  t.same(back.queued, [], 'no spurious STARTED')
  t.match(back.events, [{ level: 'warn', msg: /released/ }])
})

t.test('isolation armed: one host down is still recovered; a partition while it is down does not add any', async (t) => {
  const base = runAt(0, emptyState(), cloud([]), isolationOn).next
  const one = runAt(10, base, cloud(['cmp1']), isolationOn)
  t.same(
    one.queued.map((q) => q.host),
    ['cmp1'],
  )
  const partition = runAt(20, one.next, cloud(['cmp1', 'cmp2', 'cmp3', 'cmp4', 'cmp5']), isolationOn)
  t.same(partition.queued, [])
})

t.test('isolation trips on a count too', async (t) => {
  const g = { isolation: { maxDownFraction: 1, maxDownCount: 1, window: 30 } }
  const base = runAt(0, emptyState(), cloud([]), g).next
  t.equal(runAt(1, base, cloud(['cmp1']), g).queued.length, 1)
  t.equal(runAt(1, base, cloud(['cmp1', 'cmp2']), g).queued.length, 0)
})

t.test('rate limit: two per window, the third when the window allows', async (t) => {
  const g = { rateLimit: { maxRecoveries: 2, window: 60 } }
  const base = runAt(0, emptyState(), cloud([]), g).next
  const three = runAt(10, base, cloud(['cmp1', 'cmp2', 'cmp3']), g)
  t.same(
    three.queued.map((q) => q.host),
    ['cmp1', 'cmp2'],
  )
  t.match(
    three.decisions.find((d) => d.host === 'cmp3'),
    { action: 'none', guard: { kind: 'rate-limit', until: at(70).toISOString() } },
  )
  t.equal(three.next.wakeAt, at(70).toISOString())
  t.equal(runAt(69.999, three.next, cloud(['cmp1', 'cmp2', 'cmp3']), g).queued.length, 0)
  const later = runAt(70, three.next, cloud(['cmp1', 'cmp2', 'cmp3']), g)
  t.same(
    later.queued.map((q) => q.host),
    ['cmp3'],
  )
})

t.test('maintenance and absence never recover, and say so', async (t) => {
  const r = runAt(0, runAt(0, emptyState(), cloud([]), {}).next, cloud([], ['cmp2']), {})
  t.match(
    r.decisions.find((d) => d.host === 'cmp2'),
    { action: 'none', reason: /storage is maintenance/ },
  )
})

t.test('confirmation with the own agents', async (t) => {
  const table: Array<[string, Parameters<typeof evaluate>[0]['confirmations'], number, RegExp]> = [
    ['agent confirms', { storage: { ok: true, critical: new Set(['cmp1']) } }, 1, /row 1/],
    ['agent no longer shows it failed', { storage: { ok: true, critical: new Set() } }, 0, /storage agent no longer shows it failed/],
    [
      'agent without leader',
      { storage: { ok: false, reason: 'no cluster leader' } },
      0,
      /storage agent did not confirm: no cluster leader/,
    ],
    ['agent unreachable', { storage: { ok: false, reason: 'no answer within 1 s' } }, 0, /did not confirm/],
  ]
  for (const [name, c, n, reason] of table) {
    const r = runAt(0, seen('normal'), view('up', 'up', 'down'), {}, c)
    t.equal(r.queued.length, n, name)
    t.match(cmp1(r).reason, reason, name)
  }
})

// ---- bursts: hosts that failed together, reported one by one --------------------------------

/** A timeline: at each second, the storage view (hosts down; hosts gone from the cluster). */
type Step = [at: number, down: string[], gone?: string[]]
function timeline(steps: Step[], until: number, guards: Partial<GuardPolicy>, size = 8) {
  let state = runAt(0, emptyState(), cloud([], [], size), guards).next
  const sent: Array<[number, string]> = []
  const times = [...new Set([...steps.map((s) => s[0]), ...Array.from({ length: until + 1 }, (_, i) => i)])].sort((a, b) => a - b)
  for (const at of times) {
    const view: Step = steps.findLast((s) => s[0] <= at) ?? [0, []]
    const snaps = cloud(view[1], [], size)
    for (const g of view[2] ?? []) delete snaps.storage!.nodes[g]
    const r = runAt(at, state, snaps, guards)
    for (const q of r.queued) sent.push([at, q.host])
    state = r.next
  }
  return { sent, state }
}

const bursty = { hold: { recovery: 5, back: 5 }, burst: { quietWindow: 30 } }
const bursts: Array<[name: string, steps: Step[], until: number, sent: Array<[number, string]>]> = [
  ['a lone failure: STOPPED after the short hold', [[10, ['cmp1']]], 60, [[15, 'cmp1']]],
  [
    "a second failure within the first one's hold: both wait until storage has been quiet for 30 s",
    [
      [10, ['cmp1']],
      [13.9, ['cmp1', 'cmp2']],
    ],
    60,
    [
      [44, 'cmp1'],
      [44, 'cmp2'],
    ],
  ],
  [
    'each further failure of the burst extends every pending recovery',
    [
      [10, ['cmp1']],
      [13.9, ['cmp1', 'cmp2']],
      [20.9, ['cmp1', 'cmp2', 'cmp3']],
    ],
    80,
    [
      [51, 'cmp1'],
      [51, 'cmp2'],
      [51, 'cmp3'],
    ],
  ],
  [
    'a failure 25 s after a lone one already sent joins a burst: it waits for the quiet window',
    [
      [10, ['cmp1']],
      [35, ['cmp1', 'cmp2']],
    ],
    80,
    [
      [15, 'cmp1'],
      [65, 'cmp2'],
    ],
  ],
  [
    'two failures 60 s apart are not a burst',
    [
      [10, ['cmp1']],
      [70, ['cmp1', 'cmp2']],
    ],
    90,
    [
      [15, 'cmp1'],
      [75, 'cmp2'],
    ],
  ],
  [
    'a graceful leave first reported as failed, during another failure: only the failed host, once the leave shows',
    [
      [10, ['cmp1']],
      [12, ['cmp1', 'cmp2']],
      [30, ['cmp2'], ['cmp1']],
    ],
    80,
    [[30, 'cmp2']],
  ],
]
for (const [name, steps, until, sent] of bursts) {
  t.test(`burst: ${name}`, async (t) => {
    t.same(timeline(steps, until, bursty).sent, sent)
  })
}

t.test('burst: the isolation guard decides a burst that turns out to be most of the network', async (t) => {
  const guards = { ...bursty, ...isolationOn }
  const steps: Step[] = [
    [10, ['cmp1']],
    [13.9, ['cmp1', 'cmp2']],
    [20.9, ['cmp1', 'cmp2', 'cmp3']],
    [28.9, ['cmp1', 'cmp2', 'cmp3', 'cmp4']],
  ]
  const { sent, state } = timeline(steps, 120, guards, 6)
  t.same(sent, [], 'no STOPPED: 4 of 6 turned down within 30 s')
  t.ok(state.isolation.storage, 'the guard holds')
})

t.test('burst: the isolation guard decides a mass failure Consul declares over 51 s, no four within 30 s', async (t) => {
  // The declarations of a CI run (test/e2e/mass-failure.ts): six storage agents frozen at 40 s,
  // after cmp8 failed (sent) and cmp7 left; Lifeguard spread them as the lone live prober slowed.
  const guards = { ...bursty, ...isolationOn }
  const frozen: Array<[number, string]> = [
    [66.1, 'cmp4'],
    [70.2, 'cmp3'],
    [77.3, 'cmp1'],
    [101.2, 'cmp5'],
    [109.3, 'cmp2'],
    [117.2, 'cmp6'],
  ]
  const steps: Step[] = [
    [0, ['cmp8']],
    [10, ['cmp8'], ['cmp7']],
  ]
  for (let i = 0; i < frozen.length; i++) steps.push([frozen[i]![0], ['cmp8', ...frozen.slice(0, i + 1).map(([, h]) => h)], ['cmp7']])
  const { sent, state } = timeline(steps, 200, guards, 8)
  t.same(sent, [[5, 'cmp8']], 'only the lone failure before it')
  t.match(state.isolation.storage, { reason: /4 of 7 hosts .* turned down on storage together/ }, 'tripped by the fourth of the burst')
})

t.test('burst: a held host says until when and why; the network shows the burst', async (t) => {
  const base = runAt(0, emptyState(), cloud([]), bursty).next
  const first = runAt(10, base, cloud(['cmp1']), bursty)
  const second = runAt(13, first.next, cloud(['cmp1', 'cmp2']), bursty)
  t.match(
    second.decisions.find((d) => d.host === 'cmp1'),
    {
      guard: { kind: 'burst', until: at(43).toISOString() },
      reason:
        /storage has a burst in progress \(2 hosts down since .*10\.000Z, the last at .*13\.000Z\): waiting until it has been quiet for 30 s/,
    },
  )
  t.same(second.timing.storage, {
    quietWindow: { seconds: 30, basis: 'guards.burst.quietWindow' },
    burst: { since: at(10).toISOString(), lastDown: at(13).toISOString(), quietUntil: at(43).toISOString(), hosts: ['cmp1', 'cmp2'] },
  })
  t.equal(second.next.wakeAt, at(43).toISOString(), 'the worker wakes when the window ends')
  t.equal(second.next.ledger.cmp1?.guard, 'burst')
})

t.test('hosts named like Object.prototype members are hosts like any other', async (t) => {
  const names = ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf']
  const nodes = (down: string): Record<string, NodeState> =>
    JSON.parse(JSON.stringify(Object.fromEntries([['controller', 'up'], ...names.map((n) => [n, n === down ? 'down' : 'up'])])))
  const up = nodes('')
  const snaps = snapshots({ management: up, tenant: up, storage: nodes('constructor') })
  const first = run(emptyState(), snaps)
  t.same(
    first.queued.map((q) => q.host),
    ['constructor'],
  )
  t.same(Object.keys(first.next.ledger).sort(), [...names].sort(), 'one ledger entry each, __proto__ included')
  for (const n of names) {
    t.equal(first.next.ledger[n]?.firstSeenAt, now.toISOString(), `${n}: first seen now`)
    t.match(
      first.decisions.find((d) => d.host === n),
      { vectorText: `management=up tenant=up storage=${n === 'constructor' ? 'down' : 'up'}` },
    )
  }
  // The next run reads that ledger back (through JSON, as state.json) and decides nothing new.
  const again = run(JSON.parse(JSON.stringify(first.next)), snaps)
  t.same(again.queued, [])
  t.match(
    again.decisions.find((d) => d.host === 'constructor'),
    { reason: /already decided: STOPPED waiting in the outbox/ },
  )
})

t.test("burst: the agent's own gossip tuning sets the window when it reports one", async (t) => {
  const auto = { hold: { recovery: 5, back: 5 }, burst: { quietWindow: 'auto' as const } }
  const base = runAt(0, emptyState(), cloud([]), auto).next
  const first = runAt(10, base, cloud(['cmp1']), auto)
  const second = runAt(13, first.next, cloud(['cmp1', 'cmp2']), auto)
  t.match(second.timing.storage?.quietWindow, { seconds: 30, basis: /gossip tuning Consul's defaults/ })
  const critical = new Set(['cmp1', 'cmp2'])
  const slowAgent = { storage: { ok: true as const, critical, gossip: { probeInterval: 1, suspicionMult: 20 } } }
  const asked = runAt(43, second.next, cloud(['cmp1', 'cmp2']), auto, slowAgent)
  t.same(asked.queued, [], 'not after 30 s: the agent says a suspicion can last 6 × 20 s')
  t.match(asked.timing.storage?.quietWindow, { seconds: 102, basis: /as the storage agent reports it/ })
  t.match(asked.decisions.find((d) => d.host === 'cmp1')?.guard, { kind: 'burst', until: at(115).toISOString() })
  const plain = runAt(43, second.next, cloud(['cmp1', 'cmp2']), auto, { storage: { ok: true, critical } })
  t.same(
    plain.queued.map((q) => q.host),
    ['cmp1', 'cmp2'],
    'an agent that does not say leaves the default window',
  )
})

t.test('a recovery waits while the agent says its gossip view is degraded, then goes once it is not', async (t) => {
  const g = { hold: { recovery: 5, back: 5 }, burst: { quietWindow: 30 } }
  const base = runAt(0, emptyState(), cloud([]), g).next
  const first = runAt(10, base, cloud(['cmp1']), g)
  const critical = new Set(['cmp1'])
  const degraded = { storage: { ok: true as const, critical, degraded: 'memberlist health score 6 of 8' } }
  const held = runAt(15, first.next, cloud(['cmp1']), g, degraded)
  t.same(held.queued, [], 'not after the short hold: the first of a mass failure looks just like this')
  t.match(
    held.decisions.find((d) => d.host === 'cmp1'),
    {
      guard: { kind: 'burst', until: at(25).toISOString() },
      reason: /storage agent's gossip view is degraded \(memberlist health score 6 of 8\)/,
    },
  )
  t.equal(held.next.wakeAt, at(25).toISOString(), 'the worker asks again in 10 s')
  const again = runAt(25, held.next, cloud(['cmp1']), g, { storage: { ok: true, critical } })
  t.same(
    again.queued.map((q) => q.host),
    ['cmp1'],
    'a clean view: STOPPED',
  )
})

t.test('hostNames: the notification names the host as Masakari knows it; the ledger keeps the Consul name', async (t) => {
  const r = evaluate({
    snapshots: view('up', 'up', 'down'),
    strategy: DEFAULT_STRATEGY,
    state: seen('normal'),
    ownHost: 'controller',
    firstSight: 'notify',
    now,
    newId,
    guards: OFF,
    masakariName: (node) => `${node}.example.org`,
  })
  t.match(r.queued, [{ host: 'cmp1', notification: { hostname: 'cmp1.example.org', payload: { event: 'STOPPED' } } }])
  t.ok(Object.hasOwn(r.next.ledger, 'cmp1'), 'the ledger is keyed by the Consul node name')
})
