/**
 * Never silently blind (#18): a lost edge is found again on a timer. An unconfirmed recovery
 * has a wake; a resync reads every cluster now and records as a watch run would; a stale run
 * cannot put an older view back; the notes the pulse reads say what is unsettled.
 */
import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import { readFile, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { EXIT } from '../lib/run/cli.js'
import type { Fetch } from '../lib/openstack/masakari.js'
import type { Snapshot } from '../lib/decide/snapshot-shape.js'
import { supersedes } from '../lib/decide/snapshot-shape.js'
import { emptyState } from '../lib/decide/state-shape.js'
import { unsettled, writeResync } from '../lib/state/status-files.js'
import { check, configYaml, fakeDeps, payload, readState, response, scriptedFetch, type Recorded, recordedFixture } from './helpers.js'

const fixture = recordedFixture
const token = fixture('keystone-token-password')
const accepted = fixture('masakari-202')
/** Within the recorded token's hour. */
const T0 = Date.parse(token.body.token.expires_at) - 50 * 60_000
const at = (s: number) => () => new Date(T0 + s * 1000)
const AGENTS = { management: '127.0.0.1:18501', tenant: '127.0.0.1:18502', storage: '127.0.0.1:18503' }
const allUp = { controller: 'passing', cmp1: 'passing', cmp2: 'passing' } as const
const cmp1Down = { ...allUp, cmp1: 'critical' } as const

async function setup(t: Test, extra: Record<string, unknown> = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { consul: { agents: AGENTS, lock: { enabled: false } }, ...extra }))
  return { stateDir, config }
}

/**
 * Consul's own agents, one per network, as `cluster()` says now; `refuse` makes an agent
 * unreachable. Keystone issues the recorded token; Masakari accepts (the recorded 202).
 */
function agents(
  rec: Recorded,
  cluster: (network: string) => Record<string, 'passing' | 'critical'>,
  refuse = new Set<string>(),
  blind = new Set<string>(),
): Fetch {
  return scriptedFetch(rec, async (url) => {
    const network = Object.entries(AGENTS).find(([, a]) => url.includes(a))?.[0]
    if (url.endsWith('/auth/tokens')) return response(token.status, token.body, token.headers)
    if (network === undefined) return response(accepted.status, accepted.body, accepted.headers)
    if (refuse.has(network)) throw new Error(`connect ECONNREFUSED ${url}`)
    const states = cluster(network)
    if (url.endsWith('/v1/status/leader')) return response(200, '"127.0.0.1:8300"')
    // What a token without node:read gets: the nodes filtered out.
    if (url.includes('/v1/health/node/')) return response(200, blind.has(network) ? [] : [check(url.split('/').at(-1)!, 'passing')])
    if (url.endsWith('/v1/health/state/any')) return response(200, payload(states), { 'X-Consul-Index': '500' })
    if (url.endsWith('/v1/health/state/critical'))
      return response(
        200,
        Object.entries(states)
          .filter(([, s]) => s === 'critical')
          .map(([n]) => check(n, 'critical')),
      )
    return response(404, 'not here')
  })
}

async function watchRun(config: string, network: string, states: Record<string, 'passing' | 'critical'>, now: () => Date, fetch?: Fetch) {
  const deps = fakeDeps({ stdin: payload(states), now, ...(fetch ? { fetch } : {}) })
  const code = await main(['--network', network, '--config', config], deps)
  return { code, deps }
}

async function allUpRuns(t: Test, config: string) {
  for (const n of ['management', 'tenant', 'storage']) {
    const { code, deps } = await watchRun(config, n, allUp, at(0))
    t.equal(code, 0, deps.rec.stderr.join('\n'))
  }
}

const stateOf = async (stateDir: string) => JSON.parse((await readState(stateDir))!)
const snapshotOf = async (stateDir: string, network: string): Promise<Snapshot> =>
  JSON.parse(await readFile(join(stateDir, 'snapshots', `${network}.json`), 'utf8'))

t.test('an unconfirmed recovery has a wake, and the worker asks again then: STOPPED once the agent answers', async (t) => {
  const { stateDir, config } = await setup(t)
  await allUpRuns(t, config)
  const rec: Recorded = { stdout: [], stderr: [], spawned: [], logFile: [], requests: [] }
  const refuse = new Set(['storage'])
  const fetch = agents(rec, (n) => (n === 'storage' ? cmp1Down : allUp), refuse)
  const down = await watchRun(config, 'storage', cmp1Down, at(10), fetch)
  t.equal(down.code, 0, down.deps.rec.stderr.join('\n'))
  const state = await stateOf(stateDir)
  t.same(state.outbox, [], 'not confirmed: nothing queued')
  t.equal(state.ledger.cmp1.guard, 'unconfirmed')
  t.equal(state.wakeAt, new Date(T0 + 12_000).toISOString(), 'asked again 2 s later (the shortest back-off)')
  t.match(await readFile(join(stateDir, 'wake'), 'utf8'), String(Math.ceil((T0 + 12_000) / 1000)), 'the pulse sees the wake')
  t.match(down.deps.rec.logFile.join('\n'), `asking again at ${new Date(T0 + 12_000).toISOString()}`)

  refuse.clear()
  let clock = T0 + 13_000
  const worker = fakeDeps({ now: () => new Date(clock), fetch })
  worker.sleep = async (ms) => {
    clock += ms
  }
  t.equal(await main(['--worker', '--config', config], worker), 0, worker.rec.stderr.join('\n'))
  const posted = rec.requests.filter((r) => r.url.endsWith('/notifications')).map((r) => r.body)
  t.match(
    posted,
    [{ notification: { hostname: 'cmp1', payload: { event: 'STOPPED' } } }],
    'decided at the wake, with no further change from Consul',
  )
  t.notOk((await stateOf(stateDir)).ledger.cmp1.unconfirmedSince, 'confirmed: the back-off is forgotten')
})

t.test('the back-off grows with the time unconfirmed, up to 30 s', async (t) => {
  const { stateDir, config } = await setup(t)
  await allUpRuns(t, config)
  const rec: Recorded = { stdout: [], stderr: [], spawned: [], logFile: [], requests: [] }
  const fetch = agents(rec, () => cmp1Down, new Set(['storage']))
  const waits: number[] = []
  for (const s of [10, 20, 40, 100, 200]) {
    await watchRun(config, 'storage', cmp1Down, at(s), fetch)
    waits.push((Date.parse((await stateOf(stateDir)).wakeAt) - (T0 + s * 1000)) / 1000)
  }
  t.same(waits, [2, 5, 15, 30, 30])
})

t.test('a resync reads every cluster now and decides what no watch run brought', async (t) => {
  const { stateDir, config } = await setup(t)
  await allUpRuns(t, config)
  // The storage watch's run for cmp1's failure was lost (killed, or it failed): only the cluster knows.
  const rec: Recorded = { stdout: [], stderr: [], spawned: [], logFile: [], requests: [] }
  const deps = fakeDeps({ now: at(60), fetch: agents(rec, (n) => (n === 'storage' ? cmp1Down : allUp)) })
  t.equal(await main(['--resync', '--config', config], deps), 0, deps.rec.stderr.join('\n'))
  const read = rec.requests.filter((r) => r.url.endsWith('/v1/health/state/any')).map((r) => r.url)
  t.same(
    read.sort(),
    Object.values(AGENTS)
      .map((a) => `http://${a}/v1/health/state/any`)
      .sort(),
    'every network read',
  )
  const snap = await snapshotOf(stateDir, 'storage')
  t.equal(snap.nodes.cmp1, 'down')
  t.equal(snap.consulIndex, '500', "the agent's index orders it against the watch's runs")
  const posted = rec.requests.filter((r) => r.url.endsWith('/notifications')).map((r) => r.body)
  t.match(posted, [{ notification: { hostname: 'cmp1', payload: { event: 'STOPPED' } } }], 'decided and sent by the resync')
  // Recovered, the host waits for its operator: nothing is left to decide, nothing extra runs.
  t.notOk(existsSync(join(stateDir, 'resync')), 'settled: no further resync')
})

t.test('a resync refuses an answer that cannot see nodes (an ACL token without node:read): exit 69, nothing replaced', async (t) => {
  const { stateDir, config } = await setup(t)
  await allUpRuns(t, config)
  const before = await snapshotOf(stateDir, 'storage')
  const rec: Recorded = { stdout: [], stderr: [], spawned: [], logFile: [], requests: [] }
  const filtered: Fetch = scriptedFetch(rec, async (url) =>
    url.endsWith('/v1/health/state/any') ? response(200, '[]', { 'X-Consul-Index': '501' }) : response(404, ''),
  )
  const deps = fakeDeps({ now: at(60), fetch: filtered })
  t.equal(await main(['--resync', '--config', config], deps), EXIT.consul)
  t.match(
    deps.rec.stderr.join('\n'),
    /does not show this controller's own node controller \(its serfHealth\).*node_prefix "" \{ policy = "read" \}/,
  )
  t.same(await snapshotOf(stateDir, 'storage'), before, 'the stored view is kept, never taken for "every host left"')
})

t.test('a stale run (lower index, payload read earlier) does not put an older view back', async (t) => {
  const { stateDir, config } = await setup(t, { consul: { lock: { enabled: false } } })
  await allUpRuns(t, config)
  const run = async (states: Record<string, 'passing' | 'critical'>, index: string, readAt: number, now: number) => {
    const deps = fakeDeps({ stdin: payload(states), now: at(now) })
    deps.stdinReadAt = new Date(T0 + readAt * 1000)
    process.env.CONSUL_INDEX = index
    try {
      t.equal(await main(['--network', 'storage', '--config', config], deps), 0, deps.rec.stderr.join('\n'))
    } finally {
      delete process.env.CONSUL_INDEX
    }
    return deps
  }
  await run(cmp1Down, '20', 10, 10)
  // Read its payload (index 10, all up) at 9 s, but finished after the run above.
  const stale = await run(allUp, '10', 9, 11)
  t.equal((await snapshotOf(stateDir, 'storage')).nodes.cmp1, 'down', 'the newer view stays')
  t.match(stale.rec.logFile.join('\n'), /a newer view of this network is already stored/)
  t.same(
    (await stateOf(stateDir)).outbox.map((e: { host: string }) => e.host),
    ['cmp1'],
  )
  // A cluster rebuilt from scratch starts its index again: a later read still wins.
  await run(allUp, '3', 30, 30)
  t.equal((await snapshotOf(stateDir, 'storage')).nodes.cmp1, 'up')
})

t.test('supersedes: a lower index read no later is older; anything else replaces', async (t) => {
  const snap = (consulIndex: string, s: number): Snapshot => ({
    version: 1,
    network: 'storage',
    consulIndex,
    receivedAt: new Date(T0 + s * 1000).toISOString(),
    nodes: {},
  })
  const cases: Array<[string, Snapshot, Snapshot | undefined, boolean]> = [
    ['nothing stored', snap('5', 0), undefined, true],
    ['higher index, later', snap('6', 1), snap('5', 0), true],
    ['same index', snap('5', 0), snap('5', 1), true],
    ['lower index, read earlier: stale', snap('4', 0), snap('5', 1), false],
    ['lower index, read at the same time: stale', snap('4', 1), snap('5', 1), false],
    ['lower index, read later: a rebuilt cluster', snap('4', 2), snap('5', 1), true],
    ['higher index, read earlier: a clock set back', snap('6', 0), snap('5', 1), true],
    ['run by hand (no index)', snap('', 0), snap('5', 1), true],
  ]
  for (const [name, incoming, stored, want] of cases) t.equal(supersedes(incoming, stored), want, name)
})

t.test('unsettled: why the pulse must resync, or undefined when every host is up and nothing waits', async (t) => {
  const snaps = (storage: Record<string, 'up' | 'down' | 'maintenance'>) => ({
    management: {
      version: 1 as const,
      network: 'management' as const,
      consulIndex: '1',
      receivedAt: '',
      nodes: { a: 'up' as const, b: 'up' as const },
    },
    storage: { version: 1 as const, network: 'storage' as const, consulIndex: '1', receivedAt: '', nodes: storage },
  })
  const seq = ['management', 'storage'] as const
  const state = emptyState()
  const recovered = { ...emptyState(), ledger: { b: { firstSeenAt: '', phase: 'recovery' as const } } }
  const cases: Array<[string, Parameters<typeof unsettled>, string | undefined]> = [
    ['all up', [state, snaps({ a: 'up', b: 'up' }), [...seq]], undefined],
    ['maintenance is the operator’s', [state, snaps({ a: 'up', b: 'maintenance' }), [...seq]], undefined],
    ['a host down', [state, snaps({ a: 'up', b: 'down' }), [...seq]], 'b is down on storage'],
    ['a host gone from one network', [state, snaps({ a: 'up' }), [...seq]], 'b is missing on storage'],
    ['down, already recovered', [recovered, snaps({ a: 'up', b: 'down' }), [...seq]], undefined],
    ['no snapshot', [state, snaps({ a: 'up', b: 'up' }), ['management', 'tenant']], 'no snapshot of tenant'],
    [
      'held',
      [{ ...state, wakeAt: '2026-11-25T12:00:05.000Z' }, snaps({ a: 'up', b: 'up' }), [...seq]],
      'a decision is held or unconfirmed until 2026-11-25T12:00:05.000Z',
    ],
  ]
  for (const [name, args, want] of cases) t.equal(unsettled(...args), want, name)
})

t.test('the resync note: other runs only bring it forward; a resync sets it; kept while a run failed', async (t) => {
  const dir = t.testdir({})
  const read = async () => (await readFile(join(dir, 'resync'), 'utf8').catch(() => 'absent')).trim()
  await writeResync(dir, new Date(T0 + 60_000), { postpone: false })
  await writeResync(dir, new Date(T0 + 90_000), { postpone: false })
  t.equal(await read(), String((T0 + 60_000) / 1000), 'a watch run does not postpone it')
  await writeResync(dir, new Date(T0 + 90_000), { postpone: true })
  t.equal(await read(), String((T0 + 90_000) / 1000), 'a resync does')
  await writeFile(join(dir, 'failed-storage'), 'the storage watch run failed (exit 74)\n')
  await writeResync(dir, undefined, { postpone: false })
  t.equal(await read(), String((T0 + 90_000) / 1000), 'settled, but a watch run failed: kept')
  await unlink(join(dir, 'failed-storage'))
  await writeResync(dir, undefined, { postpone: false })
  t.equal(await read(), 'absent', 'settled: nothing extra runs')
})

t.test('a worker whose config changed hands over to a fresh one (a token replaced must not wait for it to exit)', async (t) => {
  const { stateDir, config } = await setup(t)
  await allUpRuns(t, config)
  const rec: Recorded = { stdout: [], stderr: [], spawned: [], logFile: [], requests: [] }
  const fetch = agents(rec, () => cmp1Down, new Set(['storage']))
  await watchRun(config, 'storage', cmp1Down, at(10), fetch)
  t.ok((await stateOf(stateDir)).wakeAt, 'unconfirmed: a worker has work for as long as the agent refuses')
  let clock = T0 + 12_000
  let sleeps = 0
  const worker = fakeDeps({ now: () => new Date(clock), fetch })
  worker.sleep = async (ms) => {
    clock += ms
    // The operator fixes the config while the worker waits to ask again.
    if (++sleeps === 1) await writeFile(config, `${await readFile(config, 'utf8')}# edited\n`)
    if (sleeps > 1000) throw new Error('the worker kept its old config')
  }
  t.equal(await main(['--worker', '--config', config], worker), 0, worker.rec.stderr.join('\n'))
  t.same(worker.rec.spawned, [config], 'a fresh worker is started, with the config as it is now')
  t.match(worker.rec.logFile.join('\n'), /the config changed: a fresh worker takes over with it/)
})

t.test('an agent that answered without seeing nodes keeps the check critical until it confirms again', async (t) => {
  const { stateDir, config } = await setup(t)
  await allUpRuns(t, config)
  const rec: Recorded = { stdout: [], stderr: [], spawned: [], logFile: [], requests: [] }
  const blind = new Set(['storage'])
  const fetch = agents(rec, () => cmp1Down, new Set(), blind)
  await watchRun(config, 'storage', cmp1Down, at(10), fetch)
  const note = () => readFile(join(stateDir, 'failed-confirm-storage'), 'utf8').catch(() => undefined)
  t.match(await note(), /^critical\nstorage agent: .*node_prefix/, 'written when refused')
  // A later run that asks no agent (nothing to confirm) writes a passing health note: the refusal stays.
  await watchRun(config, 'tenant', allUp, at(11))
  t.match(await readFile(join(stateDir, 'health'), 'utf8'), /^passing/)
  t.match(await note(), /^critical/, 'still there for the pulse')
  blind.clear()
  let clock = T0 + 13_000
  const worker = fakeDeps({ now: () => new Date(clock), fetch })
  worker.sleep = async (ms) => {
    clock += ms
  }
  t.equal(await main(['--worker', '--config', config], worker), 0, worker.rec.stderr.join('\n'))
  t.equal(await note(), undefined, 'removed once the agent confirms')
})

t.test('a resync without own agents evaluates the stored view again, says so, and is not a failure', async (t) => {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir))
  await allUpRuns(t, config)
  const deps = fakeDeps({ now: at(60) })
  t.equal(await main(['--resync', '--config', config], deps), 0, deps.rec.stderr.join('\n'))
  t.match(deps.rec.logFile.join('\n'), /resync without consul\.agents: the clusters cannot be read/)
  t.match(deps.rec.logFile.join('\n'), /"msg":"evaluated"/)
})
