import t from 'tap'
import {
  DEFAULT_GOSSIP,
  DEFAULT_GUARDS,
  holdIsOver,
  isolationStatus,
  networkView,
  quietWindow,
  rateLimitSlot,
  type GuardPolicy,
} from '../lib/decide/guards.js'
import type { Snapshot } from '../lib/decide/snapshot-shape.js'

const now = new Date('2026-11-25T12:00:00.000Z')
const ago = (s: number) => new Date(now.getTime() - s * 1000).toISOString()
const policy = (over: Partial<GuardPolicy['isolation']> = {}): GuardPolicy => ({
  ...DEFAULT_GUARDS,
  isolation: { ...DEFAULT_GUARDS.isolation, ...over },
})

function snap(up: number, down: number): Snapshot {
  const nodes: Snapshot['nodes'] = { controller: 'up' }
  for (let i = 0; i < up; i++) nodes[`up${i}`] = 'up'
  for (let i = 0; i < down; i++) nodes[`down${i}`] = 'down'
  return { version: 1, network: 'storage', consulIndex: '1', receivedAt: now.toISOString(), nodes }
}

t.test('network view: own node excluded, recent downs by the window (inclusive)', async (t) => {
  const since: Record<string, string> = { down0: ago(30), down1: ago(30.001), down2: ago(1) }
  const v = networkView(snap(3, 3), 'controller', (h) => since[h], [], now, policy({ window: 30 }))
  t.same(v, { known: 6, down: 3, recentlyDown: 2 })
})

t.test('network view: a host of the burst in progress counts as together, however long ago it turned down', async (t) => {
  const since: Record<string, string> = { down0: ago(51), down1: ago(45), down2: ago(1) }
  const v = networkView(snap(3, 3), 'controller', (h) => since[h], ['down0', 'up0'], now, policy({ window: 30 }))
  t.same(v, { known: 6, down: 3, recentlyDown: 2 }, 'down0 by the burst, down2 by the window; up0 is not down')
})

const trips: Array<[string, GuardPolicy, number, number, boolean]> = [
  // name, policy, known, recently down, tripped?
  ['exactly the fraction does not trip', policy({ maxDownFraction: 0.5 }), 6, 3, false],
  ['just over the fraction trips', policy({ maxDownFraction: 0.5 }), 6, 4, true],
  ['default 0.55: 3 of 6 does not trip', policy(), 6, 3, false],
  ['default 0.55: 4 of 6 trips', policy(), 6, 4, true],
  ['default 0.55: 1 of 2 does not trip', policy(), 2, 1, false],
  ['count: exactly the count does not trip', policy({ maxDownFraction: 1, maxDownCount: 2 }), 100, 2, false],
  ['count: one more trips', policy({ maxDownFraction: 1, maxDownCount: 2 }), 100, 3, true],
  ['fraction 1 disables it', policy({ maxDownFraction: 1 }), 3, 3, false],
  ['no known hosts', policy(), 0, 0, false],
]
for (const [name, p, known, recent, tripped] of trips) {
  t.test(`isolation: ${name}`, async (t) => {
    const s = isolationStatus('storage', { known, down: recent, recentlyDown: recent }, undefined, now, p)
    t.equal(s !== undefined, tripped)
    if (s) t.match(s, { since: now.toISOString(), reason: /turned down on storage together \(within 30 s, or one burst\)/ })
  })
}

t.test('isolation holds while the hosts stay down, after the window too; releases when they come back', async (t) => {
  const current = { since: ago(600), reason: 'x' }
  t.equal(isolationStatus('storage', { known: 6, down: 4, recentlyDown: 0 }, current, now, policy()), current, 'old downs keep it')
  t.equal(
    isolationStatus('storage', { known: 6, down: 3, recentlyDown: 0 }, current, now, policy()),
    undefined,
    'back under the threshold: released',
  )
})

t.test('hold boundaries', async (t) => {
  const p = { ...DEFAULT_GUARDS, hold: { recovery: 5, back: 10 } }
  t.equal(holdIsOver({ firstSeenAt: 'x', hold: { kind: 'recovery', since: ago(5) } }, 'recovery', now, p), true, 'exactly the hold')
  t.equal(holdIsOver({ firstSeenAt: 'x', hold: { kind: 'recovery', since: ago(4.999) } }, 'recovery', now, p), false)
  t.equal(holdIsOver({ firstSeenAt: 'x', hold: { kind: 'back', since: ago(9.999) } }, 'back', now, p), false)
  t.equal(
    holdIsOver({ firstSeenAt: 'x', hold: { kind: 'recovery', since: ago(60) } }, 'back', now, p),
    false,
    'a hold of the other kind does not count',
  )
  t.equal(holdIsOver({ firstSeenAt: 'x' }, 'recovery', now, { ...p, hold: { recovery: 0, back: 0 } }), true, 'hold 0: at once')
})

t.test('rate limit window boundaries', async (t) => {
  const p = { ...DEFAULT_GUARDS, rateLimit: { maxRecoveries: 2, window: 60 } }
  t.same(rateLimitSlot([ago(60), ago(30)], now, p), { recent: [ago(30)] }, 'a recovery exactly one window ago no longer counts')
  const full = rateLimitSlot([ago(59.9), ago(30)], now, p)
  t.equal(full.recent.length, 2)
  t.same(full.nextSlot, new Date(now.getTime() + 100), 'next slot when the oldest leaves the window')
  t.same(
    rateLimitSlot([ago(1), ago(2), ago(3)], now, { ...p, rateLimit: { maxRecoveries: 0, window: 60 } }).nextSlot,
    undefined,
    '0 lifts the limit',
  )
})

const fast = { probeInterval: 0.4, suspicionMult: 2, pushPullInterval: 30 }
const windows: Array<[string, Parameters<typeof quietWindow>[0], number, number | 'auto', number]> = [
  // name, gossip, cluster members, guards.burst.quietWindow, seconds
  ["Consul's defaults, 9 members: push/pull (30 s) outlasts the detection spread (5 × 4 s + 2 s)", DEFAULT_GOSSIP, 9, 'auto', 30],
  ['gossip-fast.json, 9 members: push/pull still bounds a late "left"', fast, 9, 'auto', 30],
  ['a faster push/pull: the detection spread decides (5 × 0.8 s + 0.8 s)', { ...fast, pushPullInterval: 1 }, 9, 'auto', 4.8],
  ['1,000 members: suspicion grows with log10 N (5 × 12 s + 2 s); push/pull scales ×6', DEFAULT_GOSSIP, 1000, 'auto', 180],
  ['100 members: push/pull ×3 (90 s) outlasts 5 × 8 s + 2 s', DEFAULT_GOSSIP, 100, 'auto', 90],
  ['an empty snapshot counts as one member', DEFAULT_GOSSIP, 0, 'auto', 30],
  ['a fixed window from the config wins', DEFAULT_GOSSIP, 9, 12, 12],
]
for (const [name, gossip, members, configured, seconds] of windows) {
  t.test(`quiet window: ${name}`, async (t) => {
    const p = { ...DEFAULT_GUARDS, burst: { quietWindow: configured } }
    t.equal(quietWindow(gossip, members, p).seconds, seconds)
  })
}

t.test('quiet window: says how it was derived', async (t) => {
  t.equal(
    quietWindow(DEFAULT_GOSSIP, 9, DEFAULT_GUARDS).basis,
    '9 members, probe 1 s, suspicion_mult 4: detections spread up to 22 s, push/pull 30 s',
  )
})
