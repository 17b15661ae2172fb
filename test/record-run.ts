/** recordRun: what a run writes, and when. */
import t, { type Test } from 'tap'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { LockError } from '../lib/state/lock.js'
import type { Fetch } from '../lib/base/http.js'
import { loadMonitor } from '../lib/run/load-monitor.js'
import { withProblems } from '../lib/run/notes.js'
import { recordRun } from '../lib/run/record-run.js'
import { writeSnapshot } from '../lib/state/snapshot.js'
import { localStore } from '../lib/state/store.js'
import { check, configYaml, fakeDeps, readState, response } from './helpers.js'

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
