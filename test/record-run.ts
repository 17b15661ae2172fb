/** recordRun: what a run writes, and when. */
import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { LockError } from '../lib/state/lock.js'
import type { Fetch } from '../lib/base/http.js'
import { loadMonitor } from '../lib/run/load-monitor.js'
import { withProblems } from '../lib/run/notes.js'
import { recordRun } from '../lib/run/record-run.js'
import { writeSnapshot } from '../lib/state/snapshot.js'
import { localStore } from '../lib/state/store.js'
import type { ConsulAgent } from '../lib/consul/consul-api.js'
import { LockSchema, type Role, type SenderLock } from '../lib/consul/sender.js'
import type { Snapshot } from '../lib/decide/snapshot-shape.js'
import { check, configYaml, fakeDeps, GUARDS_OFF, readState, response } from './helpers.js'

t.test('a run that loses the state lock while stalled writes neither the snapshot nor state.json', async (t) => {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { consul: { agents: { storage: '127.0.0.1:1' } } }))
  // The own-agent question comes between reading the state and writing: stall there (a frozen
  // process) for longer than the lock's stale time.
  const deps = fakeDeps({
    fetch: async () => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1300)
      throw new Error('connect ECONNREFUSED')
    },
  })
  for (const network of ['management', 'tenant'] as const)
    await writeSnapshot(stateDir, {
      version: 1,
      network,
      consulIndex: '1',
      receivedAt: deps.now().toISOString(),
      nodes: { cmp1: 'up', controller: 'up' },
    })
  const before = (await readdir(join(stateDir, 'snapshots'))).sort()
  const monitor = await loadMonitor(config, deps, 'test')
  monitor.store = localStore(stateDir, 1000, 2000)
  const nodes = Object.assign(Object.create(null), { cmp1: 'down', controller: 'up' })
  const incoming = { version: 1 as const, network: 'storage' as const, consulIndex: '1', receivedAt: deps.now().toISOString(), nodes }
  const err = await recordRun(monitor, deps, { incoming: [incoming] }).catch((e) => e)
  t.type(err, LockError)
  t.match(err.message, /lost the lock/)
  t.equal(await readState(stateDir), undefined, 'no state.json')
  t.same((await readdir(join(stateDir, 'snapshots'))).sort(), before, 'no storage snapshot')
})

/** A storage-down run with the storage agent configured: it asks the agent before the STOPPED. */
async function cmp1DownRun(t: Test, agent: Fetch) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { consul: { agents: { storage: '127.0.0.1:8500' } } }))
  const deps = fakeDeps({ fetch: agent })
  for (const network of ['management', 'tenant'] as const)
    await writeSnapshot(stateDir, {
      version: 1,
      network,
      consulIndex: '1',
      receivedAt: deps.now().toISOString(),
      nodes: { cmp1: 'up', controller: 'up' },
    })
  const monitor = await loadMonitor(config, deps, 'test')
  const nodes = Object.assign(Object.create(null), { cmp1: 'down', controller: 'up' })
  const incoming = { version: 1 as const, network: 'storage' as const, consulIndex: '2', receivedAt: deps.now().toISOString(), nodes }
  const result = await recordRun(monitor, deps, { incoming: [incoming] })
  const health = await readFile(join(stateDir, 'health'), 'utf8')
  const lines = deps.rec.stderr.map((l) => JSON.parse(l) as { level: string; msg: string; reason?: string })
  return { result, health, lines }
}

/** The storage agent: a leader, cmp1 critical, and the own node as `own` says (ACLs hide it). */
const storageAgent =
  (own: unknown[]): Fetch =>
  async (url) =>
    url.endsWith('/v1/status/leader')
      ? response(200, '"127.0.0.1:8300"')
      : url.endsWith('/v1/health/node/controller')
        ? response(200, own)
        : url.endsWith('/v1/health/state/critical')
          ? response(200, own.length === 0 ? [] : [check('cmp1', 'critical')])
          : response(403, 'Permission denied')

t.test(
  "an own agent's answer that cannot see nodes (ACLs) is a refusal: error line, health critical naming the rule, no STOPPED",
  async (t) => {
    const { result, health, lines } = await cmp1DownRun(t, storageAgent([]))
    t.same(result.queued, [], 'no STOPPED on an answer that cannot see nodes')
    t.match(health, /^critical\nstorage agent: .*own node controller .*node_prefix "" \{ policy = "read" \}/)
    t.ok(
      lines.some((l) => l.level === 'error' && /without seeing nodes/.test(l.msg) && /node_prefix/.test(l.reason ?? '')),
      'said at error',
    )
  },
)

t.test('an own agent that sees its own node confirms the recovery; health is not critical', async (t) => {
  const { result, health, lines } = await cmp1DownRun(t, storageAgent([check('controller', 'passing')]))
  t.match(result.queued, [{ payload: { event: 'STOPPED', host_status: 'NORMAL' } }])
  t.match(health, /^passing\n/)
  t.notOk(lines.some((l) => l.level === 'error'))
})

t.test('health note: a refusal is critical whatever else the run says, and keeps what else it says', async (t) => {
  const warning = { status: 'warning' as const, reason: 'a backlog' }
  t.same(withProblems(warning, [], []), warning, 'nothing refused: as it was')
  t.same(withProblems(warning, ['no log'], ['storage agent: blind']), {
    status: 'critical',
    reason: 'storage agent: blind; also: a backlog; no log',
  })
  t.same(withProblems({ status: 'passing', reason: '' }, [], ['storage agent: blind']), {
    status: 'critical',
    reason: 'storage agent: blind',
  })
})

/** Storage down for `down` (others up), the storage agent confirming it and naming its servers as `members` says. */
async function storageDownRun(t: Test, down: string[], members: Fetch, extra: Record<string, unknown> = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { consul: { agents: { storage: '127.0.0.1:8500' } }, ...extra }))
  const all = ['cmp1', 'cmp2', 'ctl2', 'controller']
  const agent: Fetch = async (url, init) =>
    url.endsWith('/v1/agent/members')
      ? members(url, init)
      : url.endsWith('/v1/status/leader')
        ? response(200, '"127.0.0.1:8300"')
        : url.endsWith('/v1/health/node/controller')
          ? response(200, [check('controller', 'passing')])
          : url.endsWith('/v1/health/state/critical')
            ? response(
                200,
                down.map((h) => check(h, 'critical')),
              )
            : response(404, 'no such path')
  const deps = fakeDeps({ fetch: agent })
  const up = Object.fromEntries(all.map((h) => [h, 'up' as const]))
  for (const network of ['management', 'tenant'] as const)
    await writeSnapshot(stateDir, { version: 1, network, consulIndex: '1', receivedAt: deps.now().toISOString(), nodes: up })
  const monitor = await loadMonitor(config, deps, 'test')
  const nodes = Object.assign(Object.create(null), up, Object.fromEntries(down.map((h) => [h, 'down'])))
  const incoming = { version: 1 as const, network: 'storage' as const, consulIndex: '2', receivedAt: deps.now().toISOString(), nodes }
  const result = await recordRun(monitor, deps, { incoming: [incoming] })
  const lines = deps.rec.stderr.map((l) => JSON.parse(l) as { level: string; msg: string; error?: string })
  return { result, lines }
}

const members =
  (servers: string[]): Fetch =>
  async () =>
    response(
      200,
      ['cmp1', 'cmp2', 'ctl2', 'controller'].map((Name) => ({ Name, Tags: { role: servers.includes(Name) ? 'consul' : 'node' } })),
    )

t.test('a Consul server (a controller) that fails is never notified about; a compute failing with it still is', async (t) => {
  const { result, lines } = await storageDownRun(t, ['ctl2', 'cmp1'], members(['controller', 'ctl2']))
  t.same(
    result.queued.map((n) => n.payload.event),
    ['STOPPED'],
    'one STOPPED',
  )
  t.match(result.queued, [{ hostname: 'cmp1' }], 'for the compute')
  t.match(
    result.decisions.find((d) => d.host === 'ctl2'),
    { action: 'none', reason: /Consul server/ },
  )
  t.notOk(
    lines.some((l) => l.level === 'error'),
    'no error line',
  )
})

t.test('a node in hostNames.exclude is never notified about', async (t) => {
  const { result } = await storageDownRun(t, ['cmp2'], members(['controller']), { hostNames: { exclude: ['cmp2'] } })
  t.same(result.queued, [])
  t.match(
    result.decisions.find((d) => d.host === 'cmp2'),
    { action: 'none', reason: /hostNames\.exclude/ },
  )
})

t.test('servers that cannot be asked are said, and the decision goes on as if the node were a host', async (t) => {
  const { result, lines } = await storageDownRun(t, ['ctl2'], async () => response(500, 'rpc error'))
  t.match(result.queued, [{ hostname: 'ctl2', payload: { event: 'STOPPED' } }])
  t.ok(lines.some((l) => l.level === 'warn' && /Consul servers/.test(l.msg) && /500|rpc error/.test(l.error ?? '')))
})

// ---- takeover: the hold that went by on a standby counts (issue #21) ---------------------------

const T0 = Date.parse('2026-11-25T12:00:00.000Z')
const atS = (s: number) => new Date(T0 + s * 1000).toISOString()

/** One step: at `at` s, `holder` holds the sender lock and `by` runs, with cmp1's storage state (none: a worker's run). */
interface Step {
  at: number
  holder: 'ctl1' | 'ctl2' | undefined
  by: 'ctl1' | 'ctl2'
  cmp1?: 'up' | 'down'
}

/**
 * Two controllers as coordination.ts makes them, without Consul: a state.json of its own stands
 * in for the record in Consul KV, and the sender lock is whoever the step names. The hold is
 * 5 s; every other guard off. Both have seen every network all up, recorded by ctl1 at -60 s.
 */
async function controllers(t: Test) {
  const dir = t.testdir({})
  const shared = localStore(join(dir, 'kv'))
  let clock = T0 - 60_000
  let holder: string | undefined = 'ctl1'
  const role = (name: string): Role =>
    holder === name ? { sender: true, session: `session-${name}` } : { sender: false, ...(holder ? { holder } : {}), why: 'test' }
  const one = async (name: string) => {
    const stateDir = join(dir, name)
    const config = join(dir, `${name}.yaml`)
    await writeFile(config, configYaml(stateDir, { hostname: name, guards: { ...GUARDS_OFF, hold: { recovery: 5, back: 5 } } }))
    const deps = fakeDeps({ now: () => new Date(clock) })
    const monitor = await loadMonitor(config, deps, 'test')
    const lock: SenderLock = {
      acquire: async () => role(name),
      peek: async () => role(name),
      stillHeld: async () => holder === name,
      session: () => (holder === name ? `session-${name}` : undefined),
    }
    monitor.coordination = { lock, shared, agent: {} as ConsulAgent, config: LockSchema.parse({}) }
    monitor.store = shared
    const storage = (cmp1: 'up' | 'down'): Snapshot => ({
      version: 1,
      network: 'storage',
      consulIndex: '',
      receivedAt: new Date(clock).toISOString(),
      nodes: Object.assign(Object.create(null), { cmp1, ctl1: 'up', ctl2: 'up' }),
    })
    for (const network of ['management', 'tenant'] as const) await writeSnapshot(stateDir, { ...storage('up'), network })
    return { stateDir, deps, run: (cmp1?: 'up' | 'down') => recordRun(monitor, deps, cmp1 ? { incoming: [storage(cmp1)] } : {}) }
  }
  const ctl = { ctl1: await one('ctl1'), ctl2: await one('ctl2') }
  await ctl.ctl1.run('up')
  await ctl.ctl2.run('up')
  return {
    ctl,
    /** Every step in turn; the last one's run. */
    steps: async (steps: Step[]) => {
      let last: Awaited<ReturnType<typeof ctl.ctl1.run>> | undefined
      for (const s of steps) {
        clock = T0 + s.at * 1000
        holder = s.holder
        last = await ctl[s.by].run(s.cmp1)
      }
      return last!
    },
  }
}

interface TakeoverCase {
  name: string
  steps: Step[]
  /** The last run: STOPPED queued, or held until this many seconds. */
  stopped?: true
  until?: number
}

const TAKEOVER: TakeoverCase[] = [
  {
    name: 'the sender died before recording a failure: the new sender counts the hold from when it saw the host fail',
    steps: [
      { at: 0, holder: 'ctl1', by: 'ctl2', cmp1: 'down' },
      // ctl1 is gone; the lock-delay goes by; ctl2's worker takes over and evaluates.
      { at: 3, holder: undefined, by: 'ctl2', cmp1: 'down' },
      { at: 20, holder: 'ctl2', by: 'ctl2' },
    ],
    stopped: true,
  },
  {
    name: 'the hold ran out on the standby during the lock-delay, and it ran again: the new sender sends at once, held since the failure',
    steps: [
      { at: 0, holder: 'ctl1', by: 'ctl2', cmp1: 'down' },
      // the standby's own evaluation finds the hold over (a STOPPED it does not record), twice
      { at: 6, holder: undefined, by: 'ctl2', cmp1: 'down' },
      { at: 8, holder: undefined, by: 'ctl2', cmp1: 'down' },
      { at: 20, holder: 'ctl2', by: 'ctl2' },
    ],
    stopped: true,
  },
  {
    name: 'part of the hold went by on the standby: the new sender holds the rest',
    steps: [
      { at: 0, holder: 'ctl1', by: 'ctl2', cmp1: 'down' },
      { at: 2, holder: 'ctl2', by: 'ctl2' },
    ],
    until: 5,
  },
  {
    name: 'a flap the standby saw breaks its hold: the new sender does not count across it',
    steps: [
      { at: 0, holder: 'ctl1', by: 'ctl2', cmp1: 'down' },
      { at: 2, holder: 'ctl1', by: 'ctl2', cmp1: 'up' },
      { at: 3, holder: 'ctl1', by: 'ctl2', cmp1: 'down' },
      { at: 4, holder: 'ctl2', by: 'ctl2' },
    ],
    until: 8,
  },
  {
    name: "the old sender's recorded hold stands, even when the standby's began earlier",
    steps: [
      { at: 0, holder: 'ctl1', by: 'ctl2', cmp1: 'down' },
      { at: 1, holder: 'ctl1', by: 'ctl1', cmp1: 'down' },
      { at: 5.5, holder: 'ctl2', by: 'ctl2' },
    ],
    until: 6,
  },
  {
    name: 'the sender keeps its own holds too: a flap it saw as sender is not counted once it sends again',
    steps: [
      { at: 0, holder: 'ctl1', by: 'ctl2', cmp1: 'down' },
      { at: 2, holder: 'ctl2', by: 'ctl2' },
      // ctl2 sends: cmp1 back up breaks the hold; then ctl2 loses the lock to ctl1.
      { at: 3, holder: 'ctl2', by: 'ctl2', cmp1: 'up' },
      { at: 4, holder: 'ctl1', by: 'ctl2', cmp1: 'down' },
      // ctl1 dies before recording cmp1 down; ctl2 takes over again.
      { at: 6, holder: 'ctl2', by: 'ctl2' },
    ],
    until: 9,
  },
]

for (const c of TAKEOVER) {
  t.test(`takeover: ${c.name}`, async (t) => {
    const { steps } = await controllers(t)
    const last = await steps(c.steps)
    const d = last.decisions.find((x) => x.host === 'cmp1')!
    if (c.stopped) {
      t.match(last.queued, [{ hostname: 'cmp1', payload: { event: 'STOPPED' } }])
      t.match(d.reason, new RegExp(`held since ${atS(0).replace(/\./g, '\\.')}`))
    } else {
      t.same(last.queued, [])
      t.match(d.guard, { kind: 'hold', until: atS(c.until!) })
    }
  })
}

t.test(
  "takeover: the standby's holds are in holds.json, with the vector each is for; the sender's decision keeps the one that ran out",
  async (t) => {
    const { ctl, steps } = await controllers(t)
    await steps([{ at: 0, holder: 'ctl1', by: 'ctl2', cmp1: 'down' }])
    const holds = () => readFile(join(ctl.ctl2.stateDir, 'holds.json'), 'utf8').then(JSON.parse)
    t.same(await holds(), { cmp1: { kind: 'recovery', since: atS(0), vector: 'management=up tenant=up storage=down' } })
    t.same(
      JSON.parse((await readState(join(ctl.ctl2.stateDir, '..', 'kv'))) ?? '{}').ledger.cmp1.hold,
      undefined,
      'the standby recorded nothing',
    )
    await steps([{ at: 20, holder: 'ctl2', by: 'ctl2' }])
    t.same(
      await holds(),
      { cmp1: { kind: 'recovery', since: atS(0), vector: 'management=up tenant=up storage=down' } },
      'decided: the hold that ran out stays (the record now says the recovery is decided)',
    )
    await steps([{ at: 30, holder: 'ctl2', by: 'ctl2', cmp1: 'up' }])
    t.match(await holds(), { cmp1: { kind: 'back', since: atS(30) } }, 'back up: its STARTED hold replaces it')
  },
)

t.test('takeover: an unusable holds.json is said, its holds count from now, and the run replaces it', async (t) => {
  const { ctl, steps } = await controllers(t)
  await writeFile(join(ctl.ctl2.stateDir, 'holds.json'), '{"cmp1": {"kind": "recovery"}}\n')
  const last = await steps([{ at: 10, holder: 'ctl2', by: 'ctl2', cmp1: 'down' }])
  t.match(
    last.decisions.find((x) => x.host === 'cmp1'),
    { guard: { kind: 'hold', until: atS(15) } },
  )
  const lines = ctl.ctl2.deps.rec.stderr.map((l) => JSON.parse(l) as { level: string; msg: string; error?: string })
  t.ok(lines.some((l) => l.level === 'warn' && /holds\.json cannot be used/.test(l.msg) && /cmp1\.since/.test(l.error ?? '')))
  t.match(JSON.parse(await readFile(join(ctl.ctl2.stateDir, 'holds.json'), 'utf8')), { cmp1: { since: atS(10) } })
})

t.test('one controller (no coordination) keeps no holds.json: its record has its holds', async (t) => {
  const stateDir = join(t.testdir({}), 'state')
  const config = join(stateDir, '..', 'config.yaml')
  await writeFile(config, configYaml(stateDir, { guards: { ...GUARDS_OFF, hold: { recovery: 5, back: 5 } } }))
  const deps = fakeDeps()
  const monitor = await loadMonitor(config, deps, 'test')
  t.equal(monitor.coordination, undefined)
  const nodes = (cmp1: string) => Object.assign(Object.create(null), { cmp1, controller: 'up' })
  const snapshot = (network: 'management' | 'tenant' | 'storage', cmp1: string) =>
    ({ version: 1, network, consulIndex: '', receivedAt: deps.now().toISOString(), nodes: nodes(cmp1) }) as Snapshot
  for (const network of ['management', 'tenant', 'storage'] as const) await writeSnapshot(stateDir, snapshot(network, 'up'))
  await recordRun(monitor, deps)
  const run = await recordRun(monitor, deps, { incoming: [snapshot('storage', 'down')] })
  t.match(run.state.ledger.cmp1, { hold: { kind: 'recovery', since: deps.now().toISOString() } })
  t.notOk(existsSync(join(stateDir, 'holds.json')))
})

/**
 * One controller whose sender lock answers when the test says, and whose shared record (a
 * state.json standing in for Consul KV) says when it was read and written.
 */
async function lockAndRecord(t: Test, answer: (events: string[]) => Promise<Role>, opts: { recordRefused?: Error } = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir))
  const deps = fakeDeps()
  const monitor = await loadMonitor(config, deps, 'test')
  const events: string[] = []
  const kv = localStore(join(dir, 'kv'))
  const shared = {
    read: kv.read,
    transact: <T>(fn: Parameters<typeof kv.transact<T>>[0]) =>
      kv.transact<T>(async (state, held) => {
        if (opts.recordRefused) throw opts.recordRefused
        events.push('record read')
        const out = await fn(state, held)
        if (out.next) events.push('record written')
        return out
      }),
  }
  const lock: SenderLock = {
    acquire: () => answer(events),
    peek: async () => ({ sender: false, why: 'test' }),
    stillHeld: async () => true,
    session: () => 'mine',
  }
  monitor.coordination = { lock, shared, agent: {} as ConsulAgent, config: LockSchema.parse({}) }
  monitor.store = shared
  const nodes = Object.assign(Object.create(null), { cmp1: 'up', controller: 'up' })
  for (const network of ['management', 'tenant'] as const)
    await writeSnapshot(stateDir, { version: 1, network, consulIndex: '1', receivedAt: deps.now().toISOString(), nodes })
  const incoming: Snapshot = { version: 1, network: 'storage', consulIndex: '2', receivedAt: deps.now().toISOString(), nodes }
  return {
    events,
    run: () => recordRun(monitor, deps, { incoming: [incoming] }),
    kvWritten: () => existsSync(join(dir, 'kv', 'state.json')),
  }
}

/** A lock that answers `role` only after a while, saying when. */
const later =
  (role: Role | Error) =>
  (events: string[]): Promise<Role> =>
    new Promise((resolve, reject) =>
      setTimeout(() => {
        events.push('lock answered')
        if (role instanceof Error) reject(role)
        else resolve(role)
      }, 100),
    )

t.test('the sender lock and the shared record are asked together: the record is read before the lock answers', async (t) => {
  const h = await lockAndRecord(t, later({ sender: true, session: 'mine' }))
  const run = await h.run()
  t.match(run.role, { sender: true })
  t.same(h.events, ['record read', 'lock answered', 'record written'], 'one read, beside the lock; written once the lock said ours')
})

t.test('the sender lock taken just now: the shared record is read again after it, then written', async (t) => {
  const h = await lockAndRecord(t, later({ sender: true, session: 'mine', taken: true }))
  const run = await h.run()
  t.match(run.role, { sender: true })
  t.same(h.events, ['record read', 'lock answered', 'record read', 'record written'], 'the first read may predate the last holder’s write')
})

t.test('the sender lock refuses: the run fails with its error, and the shared record is not written', async (t) => {
  const h = await lockAndRecord(
    t,
    later(new Error('PUT …/v1/kv/masakari-consul/sender?acquire answered 403: the ACL token lacks key_prefix write')),
  )
  await t.rejects(h.run(), /the ACL token lacks key_prefix write/)
  t.notOk(h.kvWritten())
  t.notOk(h.events.includes('record written'))
})

t.test('another controller sends: standby, the shared record not written', async (t) => {
  const h = await lockAndRecord(t, later({ sender: false, holder: 'ctl2', why: 'ctl2 holds the sender lock' }))
  const run = await h.run()
  t.match(run.role, { sender: false, holder: 'ctl2' })
  t.notOk(h.kvWritten())
})

t.test("the sender lock and the shared record both refuse: the run fails with the lock's error (its hint)", async (t) => {
  const lockError = new Error('PUT …/v1/kv/masakari-consul/sender?acquire answered 403: the ACL token lacks key_prefix write')
  const h = await lockAndRecord(t, later(lockError), { recordRefused: new Error('GET Consul KV masakari-consul/state answered 403') })
  await t.rejects(h.run(), /the ACL token lacks key_prefix write/)
})
