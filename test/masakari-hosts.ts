/**
 * masakari.lookupHosts: a node in no Masakari failover segment gets no STOPPED (no rate-limit
 * slot, one warning), Masakari's host list kept in the state directory and asked again only when
 * due, and a lookup that fails excludes nobody.
 */
import t, { type Test } from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { HttpResponse } from '../lib/base/http.js'
import { main as evaluate } from '../handlers/operator-cli.js'
import { loadMonitor } from '../lib/run/load-monitor.js'
import { recordRun } from '../lib/run/record-run.js'
import { writeSnapshot } from '../lib/state/snapshot.js'
import { hostListPath } from '../lib/state/paths.js'
import { HOST_LIST_KNOWN_MAX_AGE_S, HOST_LIST_MAX_AGE_S, HOST_LIST_RECHECK_S, HOST_LIST_TTL_S } from '../lib/decide/host-list.js'
import { configYaml, fakeDeps, readState, response, scriptedFetch } from './helpers.js'

const ENDPOINT = 'http://127.0.0.1:15868/v1/proj'
const T0 = Date.parse('2026-11-25T12:00:00.000Z')

/**
 * Keystone and Masakari as the lookup sees them: `segments` maps a segment's uuid to its hosts'
 * names (each list in pages of `page`; the marker is an item's `id`, as masakari-api's database
 * takes it: anything else is answered 400 "Marker … could not be found"; a marker at the end
 * answers an empty page), or `answer` for every Masakari request.
 */
function masakari(segments: Record<string, string[]>, opts: { page?: number; answer?: () => HttpResponse } = {}) {
  const page = opts.page ?? 1000
  const paged = (items: Array<{ uuid: string; id: number }>, url: URL) => {
    const marker = url.searchParams.get('marker')
    const from = marker === null ? 0 : items.findIndex((i) => String(i.id) === marker) + 1
    if (from === 0 && marker !== null) return undefined
    return items.slice(from, from + page)
  }
  const markerNotFound = (url: URL) =>
    response(400, { badRequest: { message: `Marker ${url.searchParams.get('marker')} could not be found.`, code: 400 } })
  return (raw: string): HttpResponse => {
    if (raw.endsWith('/auth/tokens')) return response(201, { token: { expires_at: '2026-11-26T12:00:00Z' } }, { 'X-Subject-Token': 'tok' })
    if (opts.answer) return opts.answer()
    const url = new URL(raw)
    const path = url.pathname.replace('/v1/proj', '')
    if (path === '/segments') {
      const items = paged(
        Object.keys(segments).map((uuid, i) => ({ uuid, id: i + 1 })),
        url,
      )
      return items ? response(200, { segments: items }) : markerNotFound(url)
    }
    const uuid = /^\/segments\/([^/]+)\/hosts$/.exec(path)?.[1]
    if (uuid === undefined || !(uuid in segments)) return response(404, { itemNotFound: { message: 'no such segment', code: 404 } })
    const hosts = segments[uuid]!.map((name, i) => ({ uuid: `${uuid}-${name}`, name, id: 100 + i }))
    const items = paged(hosts, url)
    return items ? response(200, { hosts: items }) : markerNotFound(url)
  }
}

/** A state directory with cmp1 and cmp2 up on management and tenant; the config's masakari keys as given. */
async function setup(t: Test, masakariKeys: Record<string, unknown> = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { masakari: { endpoint: ENDPOINT, ...masakariKeys } }))
  for (const network of ['management', 'tenant'] as const)
    await writeSnapshot(stateDir, {
      version: 1,
      network,
      consulIndex: '1',
      receivedAt: new Date(T0).toISOString(),
      nodes: { cmp1: 'up', cmp2: 'up', controller: 'up' },
    })
  return { stateDir, config }
}

/** One watch run of storage with cmp1 down, `at` seconds after T0, Masakari answering through `answer`. */
async function cmp1Down(config: string, answer: (url: string) => HttpResponse, at = 0, index = 2) {
  const now = () => new Date(T0 + at * 1000)
  const deps = fakeDeps({ now })
  const fetch = scriptedFetch(deps.rec, (url) => answer(url))
  deps.fetch = async () => fetch
  const monitor = await loadMonitor(config, deps, 'test')
  const nodes = Object.assign(Object.create(null), { cmp1: 'down', cmp2: 'up', controller: 'up' })
  const incoming = { version: 1 as const, network: 'storage' as const, consulIndex: String(index), receivedAt: now().toISOString(), nodes }
  const result = await recordRun(monitor, deps, { incoming: [incoming] })
  const lines = deps.rec.stderr.map((l) => JSON.parse(l) as { level: string; msg: string; host?: string })
  const masakariRequests = deps.rec.requests.filter((r) => r.url.startsWith(ENDPOINT))
  return { result, lines, requests: masakariRequests, state: JSON.parse((await readState(monitor.config.stateDir)) ?? '{}') }
}

/** Keeps a host list in the state directory as a run `age` seconds before T0 would have. */
async function keptList(stateDir: string, hosts: string[], age: number, warned: string[] = []) {
  const lookedUpAt = new Date(T0 - age * 1000).toISOString()
  await writeFile(hostListPath(stateDir), JSON.stringify({ version: 1, lookedUpAt, segments: 1, hosts, warned }))
}

const unknownWarnings = (lines: Array<{ level: string; msg: string; host?: string }>) =>
  lines.filter((l) => l.level === 'warn' && /not a host in any Masakari failover segment/.test(l.msg))
const lookupFailures = (lines: Array<{ level: string; msg: string }>) =>
  lines.filter((l) => l.level === 'warn' && /cannot look up Masakari's hosts/.test(l.msg))

t.test('a node in no segment: nothing queued, no rate-limit slot, one warning over two runs', async (t) => {
  const { config, stateDir } = await setup(t)
  const answer = masakari({ s1: ['cmp2'] })
  const first = await cmp1Down(config, answer)
  t.same(first.result.queued, [], 'no STOPPED')
  t.same(first.state.outbox ?? [], [], 'nothing in the outbox')
  t.same(first.state.recoveries ?? [], [], 'no rate-limit slot used')
  const d = first.result.decisions.find((x) => x.host === 'cmp1')!
  t.equal(d.action, 'none')
  t.equal(d.reason, 'not a host in any Masakari segment (looked up 2026-11-25T12:00:00.000Z)')
  t.equal(unknownWarnings(first.lines).length, 1, 'warned')
  t.equal(unknownWarnings(first.lines)[0]!.host, 'cmp1')
  const second = await cmp1Down(config, answer, 10, 3)
  t.same(second.result.queued, [], 'still no STOPPED')
  t.same(second.requests, [], 'the kept list answers (missing, but asked again only after the recheck interval)')
  t.equal(unknownWarnings(second.lines).length, 0, 'not warned again')
  const kept = JSON.parse(await readFile(hostListPath(stateDir), 'utf8'))
  t.same(kept.warned, ['cmp1'])
})

t.test('a host in a segment is queued as before', async (t) => {
  const { config } = await setup(t)
  const run = await cmp1Down(config, masakari({ s1: ['cmp2'], s2: ['cmp1'] }))
  t.same(
    run.result.queued.map((n) => [n.hostname, n.payload.event]),
    [['cmp1', 'STOPPED']],
  )
  t.equal(unknownWarnings(run.lines).length, 0)
  t.ok(
    run.requests.some((r) => r.url === `${ENDPOINT}/segments/s2/hosts`),
    'every segment asked',
  )
})

t.test('a host on a later page of its segment is known (pages followed by marker)', async (t) => {
  const { config } = await setup(t)
  const run = await cmp1Down(config, masakari({ s1: ['cmp2', 'cmp3', 'cmp1'] }, { page: 2 }))
  t.same(
    run.result.queued.map((n) => n.hostname),
    ['cmp1'],
  )
})

t.test('a lookup that fails excludes nobody: queued, and a warning', async (t) => {
  const { config, stateDir } = await setup(t)
  const down = () => response(503, 'Service Unavailable')
  const run = await cmp1Down(config, masakari({}, { answer: down }))
  t.same(
    run.result.queued.map((n) => n.hostname),
    ['cmp1'],
    'fails towards notifying',
  )
  t.equal(lookupFailures(run.lines).length, 1)
  t.match(lookupFailures(run.lines)[0], { why: 'no list kept yet', error: /answered 503/ })
  t.equal(await readFile(hostListPath(stateDir), 'utf8').catch(() => 'none'), 'none', 'nothing kept')
})

t.test('an empty answer excludes nobody', async (t) => {
  const { config } = await setup(t)
  const run = await cmp1Down(config, masakari({ s1: [] }))
  t.same(
    run.result.queued.map((n) => n.hostname),
    ['cmp1'],
  )
  t.match(lookupFailures(run.lines)[0], { error: /lists no host/ })
})

t.test('a fresh kept list holding the host: no request', async (t) => {
  const { config, stateDir } = await setup(t)
  await keptList(stateDir, ['cmp1', 'cmp2'], HOST_LIST_TTL_S - 10)
  const run = await cmp1Down(config, masakari({ s1: ['cmp2'] }))
  t.same(run.requests, [], 'Masakari not asked')
  t.same(
    run.result.queued.map((n) => n.hostname),
    ['cmp1'],
  )
})

t.test('past its TTL, a kept list holding the host is used without asking first (no wait for Masakari)', async (t) => {
  const { config, stateDir } = await setup(t)
  await keptList(stateDir, ['cmp1', 'cmp2'], HOST_LIST_KNOWN_MAX_AGE_S - 10)
  const run = await cmp1Down(config, masakari({ s1: ['cmp2'] }))
  t.same(run.requests, [], 'Masakari not asked')
  t.same(
    run.result.queued.map((n) => n.hostname),
    ['cmp1'],
    'the STOPPED queued, as without the lookup',
  )
})

t.test('a kept list past its TTL without the host is asked again', async (t) => {
  const { config, stateDir } = await setup(t)
  await keptList(stateDir, ['cmp2'], HOST_LIST_TTL_S + 1)
  const missing = await cmp1Down(config, masakari({ s1: ['cmp2', 'cmp1'] }))
  t.ok(missing.requests.length > 0, 'cmp1 not in it: asked')
  t.same(
    missing.result.queued.map((n) => n.hostname),
    ['cmp1'],
  )
})

t.test('a kept list holding the host but past the known-host age is asked again', async (t) => {
  const { config, stateDir } = await setup(t)
  await keptList(stateDir, ['cmp1', 'cmp2'], HOST_LIST_KNOWN_MAX_AGE_S + 1)
  const run = await cmp1Down(config, masakari({ s1: ['cmp2'] }))
  t.ok(run.requests.length > 0, 'asked')
  t.same(run.result.queued, [], 'cmp1 left the segments since')
  const kept = JSON.parse(await readFile(hostListPath(stateDir), 'utf8'))
  t.same(kept, { version: 1, lookedUpAt: '2026-11-25T12:00:00.000Z', segments: 1, hosts: ['cmp2'], warned: ['cmp1'] })
})

t.test('past its TTL, the kept list stands in when Masakari cannot be asked (said); past the maximum age it does not', async (t) => {
  const { config, stateDir } = await setup(t)
  const down = masakari({}, { answer: () => response(503, 'Service Unavailable') })
  await keptList(stateDir, ['cmp2'], HOST_LIST_MAX_AGE_S - 10)
  const stale = await cmp1Down(config, down)
  t.same(stale.result.queued, [], 'the kept list says cmp1 is no host')
  t.match(lookupFailures(stale.lines), [{ msg: /the list kept from before is used/, lookedUpAt: '2026-11-25T11:00:10.000Z' }])
  await keptList(stateDir, ['cmp2'], HOST_LIST_MAX_AGE_S + 10)
  const old = await cmp1Down(config, down, 0, 3)
  t.same(
    old.result.queued.map((n) => n.hostname),
    ['cmp1'],
    'too old to exclude anyone',
  )
  t.match(lookupFailures(old.lines), [{ msg: /no node is excluded by it/ }])
})

t.test('a host added to a segment since the list was kept is found at once', async (t) => {
  const { config, stateDir } = await setup(t)
  await keptList(stateDir, ['cmp2'], HOST_LIST_RECHECK_S + 1)
  // Added to a segment since the list was kept: found at once.
  const added = await cmp1Down(config, masakari({ s1: ['cmp2', 'cmp1'] }))
  t.ok(added.requests.length > 0, 'asked again')
  t.same(
    added.result.queued.map((n) => n.hostname),
    ['cmp1'],
  )
})

t.test('a node missing from a fresh list and from Masakari: one new list, then none before the recheck interval', async (t) => {
  const { config, stateDir } = await setup(t)
  await keptList(stateDir, ['cmp2'], HOST_LIST_RECHECK_S + 1)
  const answer = masakari({ s1: ['cmp2'] })
  const first = await cmp1Down(config, answer, 0, 3)
  t.ok(first.requests.length > 0, 'asked again')
  const within = await cmp1Down(config, answer, HOST_LIST_RECHECK_S - 1, 4)
  t.same(within.requests, [], 'not asked again within the recheck interval')
  t.same(within.result.queued, [])
  const after = await cmp1Down(config, answer, HOST_LIST_RECHECK_S + 1, 5)
  t.ok(after.requests.length > 0, 'asked again after it')
})

t.test('masakari.lookupHosts false: Masakari not asked, the STOPPED queued', async (t) => {
  const { config, stateDir } = await setup(t, { lookupHosts: false })
  const run = await cmp1Down(config, masakari({ s1: ['cmp2'] }))
  t.same(run.requests, [])
  t.same(
    run.result.queued.map((n) => n.hostname),
    ['cmp1'],
  )
  t.equal(await readFile(hostListPath(stateDir), 'utf8').catch(() => 'none'), 'none')
})

t.test('explain shows the node as no host, with the why; status writes no list', async (t) => {
  const { config, stateDir } = await setup(t)
  await writeSnapshot(stateDir, {
    version: 1,
    network: 'storage',
    consulIndex: '2',
    receivedAt: new Date(T0).toISOString(),
    nodes: { cmp1: 'down', cmp2: 'up', controller: 'up' },
  })
  const deps = fakeDeps()
  const fetch = scriptedFetch(deps.rec, masakari({ s1: ['cmp2'] }))
  deps.fetch = async () => fetch
  t.equal(await evaluate(['explain', 'cmp1', '--config', config], deps), 0)
  t.match(deps.rec.stdout.join(''), /no action — not a host in any Masakari segment \(looked up 2026-11-25T12:00:00.000Z\)/)
  t.equal(await evaluate(['status', '--config', config], deps), 0)
  t.equal(await readFile(hostListPath(stateDir), 'utf8').catch(() => 'none'), 'none', 'a read-only command keeps no list')
  t.equal(await readFile(join(stateDir, 'token.json'), 'utf8').catch(() => 'none'), 'none', 'nor a token')
})
