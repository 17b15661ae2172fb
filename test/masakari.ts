/** The Masakari client replaying responses recorded from the real Keystone and masakari-api. */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig, type Config } from '../lib/config/config.js'
import { hostNotification } from '../lib/decide/evaluator.js'
import { recordingLogger } from '../lib/base/log.js'
import {
  agentFor,
  authBody,
  classify,
  masakariClient,
  masakariTime,
  type CachedToken,
  type Fetch,
  type HttpResponse,
  type TokenCache,
} from '../lib/openstack/masakari.js'
import type { Notification } from '../lib/decide/state-shape.js'
import { response, scriptedFetch, type Recorded } from './helpers.js'

interface Fixture {
  status: number
  headers: Record<string, string>
  body: unknown
}
const fixture = (name: string): Fixture =>
  JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'recorded', `${name}.json`), 'utf8'))
const replay = (name: string): HttpResponse => {
  const f = fixture(name)
  return response(f.status, f.body, f.headers)
}
const tokenFixture = fixture('keystone-token-password')
const tokenBody = tokenFixture.body as {
  token: { expires_at: string; catalog: Array<{ type: string; endpoints: Array<{ interface: string; url: string }> }> }
}
const publicEndpoint = tokenBody.token.catalog.find((s) => s.type === 'instance-ha')!.endpoints.find((e) => e.interface === 'public')!.url
// the recorded token is valid for an hour from its issue
const now = () => new Date(Date.parse(tokenBody.token.expires_at) - 50 * 60_000)

async function config(extra = '', authUrl = 'http://127.0.0.1:5000/v3'): Promise<Config> {
  const text = `stateDir: /tmp/x\nmasakari:\n  authUrl: ${authUrl}\n  requestTimeout: 0.2\n  auth: {username: masakari-consul, userDomainName: Default, password: pw, projectName: service, projectDomainName: Default}\n${extra}`
  return loadConfig('/c.yaml', { readFile: async () => text, env: {}, hostname: () => 'h' })
}

function memoryCache(initial?: CachedToken): TokenCache & { saved: CachedToken[] } {
  let value = initial
  const saved: CachedToken[] = []
  return {
    saved,
    load: async () => value,
    save: async (v) => {
      value = v
      saved.push(v)
    },
    clear: async () => {
      value = undefined
    },
  }
}

const rec = (): Recorded => ({ stdout: [], stderr: [], spawned: [], logFile: [], requests: [] })
const stopped = hostNotification('cmp1', 'STOPPED', new Date('2026-11-25T12:00:00.000Z'))

async function send(
  answers: Array<string | HttpResponse | Error>,
  opts: { cache?: TokenCache & { saved: CachedToken[] }; extra?: string; authUrl?: string } = {},
) {
  const r = rec()
  const fetch: Fetch = scriptedFetch(r, async (_url, _m, i) => {
    const a = answers[i]
    if (a === undefined) throw new Error(`unexpected request #${i}`)
    if (a instanceof Error) throw a
    return typeof a === 'string' ? replay(a) : a
  })
  const cache = opts.cache ?? memoryCache()
  const client = masakariClient(await config(opts.extra, opts.authUrl), { fetch, now, tokenCache: cache, logger: recordingLogger() })
  return { result: await client.send(stopped), requests: r.requests, cache }
}

/** Keystone's answer to GET on its unversioned URL (keystone/server/flask/application.py): 300 and every version. */
const versionList = (values: unknown[]) => response(300, { versions: { values } })
const v3Entry = (href: string, status = 'stable') => ({
  id: 'v3.14',
  status,
  updated: '2020-04-07T00:00:00Z',
  links: [{ rel: 'self', href }],
})
const v2Entry = { id: 'v2.0', status: 'deprecated', links: [{ rel: 'self', href: 'http://127.0.0.1:5000/v2.0/' }] }
const requested = (requests: Array<{ method: string; url: string }>) =>
  requests.map((r) => `${r.method} ${r.url.replace(publicEndpoint, '…')}`)

t.test('202: accepted, with the catalog endpoint and the token', async (t) => {
  const { result, requests, cache } = await send(['keystone-token-password', 'masakari-202'])
  t.match(result, { final: true, outcome: 'accepted' })
  t.equal(requests[0]!.url, 'http://127.0.0.1:5000/v3/auth/tokens')
  t.match(requests[0]!.body, {
    auth: {
      identity: { methods: ['password'], password: { user: { name: 'masakari-consul', domain: { name: 'Default' }, password: 'pw' } } },
      scope: { project: { name: 'service', domain: { name: 'Default' } } },
    },
  })
  t.equal(requests[1]!.url, `${publicEndpoint}/notifications`)
  t.equal(requests[1]!.headers['X-Auth-Token'], tokenFixture.headers['x-subject-token'])
  t.same(requests[1]!.body, { notification: stopped })
  t.equal((cache as ReturnType<typeof memoryCache>).saved.length, 1)
})

t.test('an auth URL without a version: one discovery GET, then the token from the v3 self link', async (t) => {
  const discovery = versionList([v2Entry, v3Entry('http://127.0.0.1:5000/v3/')])
  const { result, requests } = await send([discovery, 'keystone-token-password', 'masakari-202'], { authUrl: 'http://127.0.0.1:5000' })
  t.match(result, { final: true, outcome: 'accepted' })
  t.same(requested(requests), ['GET http://127.0.0.1:5000', 'POST http://127.0.0.1:5000/v3/auth/tokens', 'POST …/notifications'])
})

t.test("discovery takes a versioned URL's 200 single-version answer, and the self link wherever it points", async (t) => {
  const single = response(200, { version: v3Entry('http://127.0.0.1:5000/identity/v3/') })
  const { result, requests } = await send([single, 'keystone-token-password', 'masakari-202'], {
    authUrl: 'http://127.0.0.1:5000/identity/',
  })
  t.match(result, { outcome: 'accepted' })
  t.same(requested(requests).slice(0, 2), ['GET http://127.0.0.1:5000/identity/', 'POST http://127.0.0.1:5000/identity/v3/auth/tokens'])
})

t.test('a versioned auth URL (…/v3 or …/v3/) costs no discovery request', async (t) => {
  for (const authUrl of ['http://127.0.0.1:5000/v3', 'http://127.0.0.1:5000/v3/']) {
    const { requests } = await send(['keystone-token-password', 'masakari-202'], { authUrl })
    t.same(requested(requests), ['POST http://127.0.0.1:5000/v3/auth/tokens', 'POST …/notifications'], authUrl)
  }
})

t.test('the discovered URL is kept for the process: a renewal after a 401 does not discover again', async (t) => {
  const discovery = versionList([v3Entry('http://127.0.0.1:5000/v3/')])
  const { result, requests } = await send(
    [discovery, 'keystone-token-password', 'masakari-401', 'keystone-token-password', 'masakari-202'],
    {
      authUrl: 'http://127.0.0.1:5000',
    },
  )
  t.match(result, { outcome: 'accepted' })
  t.same(
    requests.map((r) => r.method),
    ['GET', 'POST', 'POST', 'POST', 'POST'],
  )
})

t.test('discovery that offers no usable v3 is an error naming the URL and what was offered', async (t) => {
  const old = versionList([v2Entry, v3Entry('http://127.0.0.1:5000/v3/', 'experimental')])
  const { result, requests } = await send([old], { authUrl: 'http://127.0.0.1:5000' })
  t.match(result, {
    final: false,
    message:
      "Keystone at http://127.0.0.1:5000 offers no usable v3 identity API (versions: v2.0 (deprecated), v3.14 (experimental)); set masakari.authUrl (upstream's auth_url) to the v3 URL, …/v3",
  })
  t.equal(requests.length, 1, 'no token asked of a guessed URL')
})

t.test('a discovery answer that is not a list of versions is an error naming the URL and the answer', async (t) => {
  const { result } = await send([response(404, '<html>Not Found</html>')], { authUrl: 'http://127.0.0.1:5000' })
  t.match(result, {
    final: false,
    message:
      /^Keystone version discovery at http:\/\/127\.0\.0\.1:5000: answered 404, not a list of API versions: <html>Not Found<\/html>; set masakari\.authUrl/,
  })
})

t.test('a cached token is reused: no Keystone request', async (t) => {
  const first = await send(['keystone-token-password', 'masakari-202'])
  const { requests } = await send(['masakari-202'], { cache: first.cache })
  t.equal(requests.length, 1)
  t.match(requests[0]!.url, /\/notifications$/)
})

t.test('a cached token within 5 minutes of its expiry is renewed before use', async (t) => {
  // A token of these credentials (same cache key), as the first run cached it, with less time left.
  const issued = (await send(['keystone-token-password', 'masakari-202'])).cache.saved[0]!
  const expiringIn = (minutes: number) => memoryCache({ ...issued, expiresAt: new Date(now().getTime() + minutes * 60_000).toISOString() })
  const soon = await send(['keystone-token-password', 'masakari-202'], { cache: expiringIn(4) })
  t.same(
    soon.requests.map((r) => r.url.replace(/.*\//, '')),
    ['tokens', 'notifications'],
    '4 min left: a fresh token first',
  )
  const later = await send(['masakari-202'], { cache: expiringIn(6) })
  t.same(
    later.requests.map((r) => r.url.replace(/.*\//, '')),
    ['notifications'],
    '6 min left: the cached token is used',
  )
})

t.test('409 duplicate and 409 on maintenance are final and told apart', async (t) => {
  t.match((await send(['keystone-token-password', 'masakari-409-duplicate'])).result, {
    final: true,
    outcome: 'duplicate',
    message: /is duplicate/,
  })
  // (a STOPPED answered "on maintenance" is looked up: Masakari's list has nothing of cmp1's)
  const cmp1Host = response(200, { hosts: [{ uuid: 'cmp1-uuid', name: 'cmp1' }] })
  const segs = response(200, { segments: [{ uuid: 'seg-a' }] })
  const none = response(200, { notifications: [] })
  t.match((await send(['keystone-token-password', 'masakari-409-maintenance', segs, cmp1Host, none])).result, {
    final: true,
    outcome: 'on-maintenance',
    message: /under maintenance/,
  })
})

t.test('400 host not found is final, never retried', async (t) => {
  const { result, requests } = await send(['keystone-token-password', 'masakari-400-host-not-found'])
  t.match(result, { final: true, outcome: 'host-not-found', message: /could not be found/ })
  t.equal(requests.length, 2)
})

t.test('401 from Masakari: re-authenticate once and resend', async (t) => {
  const first = await send(['keystone-token-password', 'masakari-202'])
  const { result, requests } = await send(['masakari-401', 'keystone-token-password', 'masakari-202'], { cache: first.cache })
  t.match(result, { final: true, outcome: 'accepted' })
  t.same(
    requests.map((r) => r.url.replace(/.*\//, '')),
    ['notifications', 'tokens', 'notifications'],
  )
})

t.test('401 twice: retry later, not final', async (t) => {
  const { result } = await send(['keystone-token-password', 'masakari-401', 'keystone-token-password', 'masakari-401'])
  t.match(result, { final: false, message: /401/ })
})

t.test('Keystone refuses the credentials: retry later with a clear message', async (t) => {
  const { result } = await send(['keystone-401'])
  t.match(result, { final: false, message: /Keystone refused the credentials of masakari\.auth \(401/ })
})

t.test('500 and network errors and timeouts: retry later', async (t) => {
  t.match((await send(['keystone-token-password', response(500, { computeFault: { message: 'boom', code: 500 } })])).result, {
    final: false,
    message: /answered 500: boom/,
  })
  t.match((await send([new Error('connect ECONNREFUSED 127.0.0.1:5000')])).result, { final: false, message: /ECONNREFUSED/ })
  const hang: Fetch = (_url, init) =>
    new Promise((_resolve, reject) =>
      init.signal.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' }))),
    )
  const client = masakariClient(await config(), { fetch: hang, now, tokenCache: memoryCache(), logger: recordingLogger() })
  t.match(await client.send(stopped), { final: false, message: /timed out after 0.2 s/ })
})

t.test('endpoint: interface and region from config; override; missing service named', async (t) => {
  const internal = await send(['keystone-token-password', 'masakari-202'], { extra: '  interface: internal\n  region: RegionOne\n' })
  const internalUrl = tokenBody.token.catalog.find((s) => s.type === 'instance-ha')!.endpoints.find((e) => e.interface === 'internal')!.url
  t.equal(internal.requests[1]!.url, `${internalUrl}/notifications`)
  const override = await send(['keystone-token-password', 'masakari-202'], { extra: '  endpoint: http://127.0.0.1:15868/v1/abc/\n' })
  t.equal(override.requests[1]!.url, 'http://127.0.0.1:15868/v1/abc/notifications')
  const other = await send(['keystone-token-password'], { extra: '  region: Elsewhere\n' })
  t.match(other.result, { final: false, message: /no instance-ha endpoint with interface public in region Elsewhere/ })
})

t.test('application credential auth', async (t) => {
  const text = `masakari:\n  authUrl: http://127.0.0.1:5000/v3\n  auth: {applicationCredentialId: abc, applicationCredentialSecret: s}\n`
  const cfg = await loadConfig('/c.yaml', { readFile: async () => text, env: {}, hostname: () => 'h' })
  t.same(authBody(cfg), { auth: { identity: { methods: ['application_credential'], application_credential: { id: 'abc', secret: 's' } } } })
  const r = rec()
  const client = masakariClient(cfg, {
    fetch: scriptedFetch(r, (_u, _m, i) => replay(i === 0 ? 'keystone-token-appcred' : 'masakari-202')),
    now,
    tokenCache: memoryCache(),
    logger: recordingLogger(),
  })
  t.match(await client.send(stopped), { outcome: 'accepted' })
})

t.test('classify table', async (t) => {
  const table: Array<[number, unknown, object]> = [
    [202, fixture('masakari-202').body, { final: true, outcome: 'accepted' }],
    [409, fixture('masakari-409-duplicate').body, { final: true, outcome: 'duplicate' }],
    [409, fixture('masakari-409-maintenance').body, { final: true, outcome: 'on-maintenance' }],
    [400, fixture('masakari-400-host-not-found').body, { final: true, outcome: 'host-not-found' }],
    [400, fixture('masakari-400-generated-time').body, { final: true, outcome: 'rejected' }],
    [403, fixture('masakari-403').body, { final: false }],
    [503, '<html>Service Unavailable</html>', { final: false, message: /503: <html>Service Unavailable/ }],
  ]
  for (const [status, body, want] of table)
    t.match(classify(status, typeof body === 'string' ? body : JSON.stringify(body)), want, `${status}`)
})

// A resend of a STOPPED Masakari already acted on: it checks "on maintenance" before
// "duplicate" (masakari/ha/api.py _create_notification), so we ask it whether it holds ours.
// The notification list is recorded; the segment and host lists are in the shape of
// masakari's views (api/openstack/ha/views/hosts.py), which were not recorded.
const listed = fixture('masakari-notifications-list')
const listedEntry = (listed.body as { notifications: Array<{ source_host_uuid: string; generated_time: string }> }).notifications[0]!
const probe = hostNotification('os-probe-1', 'STOPPED', new Date(`${listedEntry.generated_time.slice(0, 23)}Z`))
const segments = response(200, {
  segments: [
    { uuid: 'seg-a', name: 'a' },
    { uuid: 'seg-b', name: 'b' },
  ],
})
const noHosts = response(200, { hosts: [] })
const probeHost = response(200, {
  hosts: [{ id: 1, uuid: listedEntry.source_host_uuid, name: 'os-probe-1', on_maintenance: true, failover_segment_id: 'seg-b' }],
})

async function resend(notification: Notification, answers: Array<string | HttpResponse | Error>) {
  const r = rec()
  const fetch: Fetch = scriptedFetch(r, async (_url, _m, i) => {
    const a = answers[i]
    if (a === undefined) throw new Error(`unexpected request #${i}`)
    if (a instanceof Error) throw a
    return typeof a === 'string' ? replay(a) : a
  })
  const client = masakariClient(await config(), { fetch, now, tokenCache: memoryCache(), logger: recordingLogger() })
  return { result: await client.send(notification), requests: r.requests }
}

t.test('409 on maintenance for a STOPPED Masakari already holds: counted as delivered', async (t) => {
  const { result, requests } = await resend(probe, [
    'keystone-token-password',
    'masakari-409-maintenance',
    segments,
    noHosts,
    probeHost,
    'masakari-notifications-list',
  ])
  t.match(result, { final: true, outcome: 'duplicate', uuid: '9be53607-61b7-4264-99f1-0680aba8d21f', message: /already holds it/ })
  const gets = requests.filter((r) => r.method === 'GET').map((r) => new URL(r.url))
  t.same(
    gets.map((u) => u.pathname.replace(/.*\/v1\/[^/]+/, '')),
    ['/segments', '/segments/seg-a/hosts', '/segments/seg-b/hosts', '/notifications'],
  )
  t.equal(gets[1]!.searchParams.get('name'), 'os-probe-1')
  t.same(Object.fromEntries(gets[3]!.searchParams), {
    source_host_uuid: listedEntry.source_host_uuid,
    type: 'COMPUTE_HOST',
    'generated-since': probe.generated_time,
  })
})

t.test('409 on maintenance for a STOPPED Masakari does not hold: on maintenance, final', async (t) => {
  const later = hostNotification('os-probe-1', 'STOPPED', new Date(Date.parse(probe.generated_time) + 1))
  const lookups = [segments, noHosts, probeHost]
  const a = await resend(later, ['keystone-token-password', 'masakari-409-maintenance', ...lookups, 'masakari-notifications-list'])
  t.match(a.result, { final: true, outcome: 'on-maintenance', message: /under maintenance\.$/ }, 'another generated_time')
  const body = structuredClone(listed.body) as { notifications: Array<{ payload: { event: string } }> }
  body.notifications[0]!.payload.event = 'STARTED'
  const b = await resend(probe, ['keystone-token-password', 'masakari-409-maintenance', ...lookups, response(200, body)])
  t.match(b.result, { final: true, outcome: 'on-maintenance' }, 'Masakari holds a STARTED of that time, not our STOPPED')
})

t.test('409 on maintenance for a STARTED is not looked up: after a recovery the host stays on maintenance', async (t) => {
  const started = hostNotification('os-probe-1', 'STARTED', new Date(probe.generated_time))
  const { result, requests } = await resend(started, ['keystone-token-password', 'masakari-409-maintenance'])
  t.match(result, { final: true, outcome: 'on-maintenance' })
  t.equal(requests.length, 2)
})

t.test('409 on maintenance and Masakari cannot be asked: retried when it is unreachable, final when it refuses', async (t) => {
  const down = await resend(probe, ['keystone-token-password', 'masakari-409-maintenance', segments, response(503, 'busy')])
  t.match(down.result, {
    final: false,
    message: /could not be asked whether it already holds this STOPPED: GET .*hosts\?name=os-probe-1 answered 503/,
  })
  const refused = await resend(probe, ['keystone-token-password', 'masakari-409-maintenance', 'masakari-403'])
  t.match(refused.result, {
    final: true,
    outcome: 'on-maintenance',
    message: /under maintenance\. \(could not check .*segments answered 403/,
  })
  const unknownHost = await resend(probe, ['keystone-token-password', 'masakari-409-maintenance', segments, noHosts, noHosts])
  t.match(unknownHost.result, { final: true, outcome: 'on-maintenance', message: /in none of the 2 failover segments/ })
})

t.test("Masakari's stored times are UTC without an offset", async (t) => {
  // Date.parse would read them as local time: make local time not UTC for this test.
  const tz = process.env.TZ
  process.env.TZ = 'Asia/Kolkata'
  t.teardown(() => {
    if (tz === undefined) delete process.env.TZ
    else process.env.TZ = tz
  })
  t.equal(masakariTime('2026-11-25T18:45:00.123000'), Date.parse('2026-11-25T18:45:00.123Z'))
  t.equal(masakariTime('2026-11-25T18:45:00'), Date.parse('2026-11-25T18:45:00.000Z'))
  t.equal(masakariTime('2026-11-25T19:45:00+01:00'), Date.parse('2026-11-25T18:45:00.000Z'))
  t.equal(masakariTime('not a time'), undefined)
})

t.test('the TLS agent goes to https: requests only; http: ones get none', async (t) => {
  const tls = { name: 'the https agent' }
  const agents: Array<[string, unknown]> = []
  const fetch: Fetch = async (url, init) => {
    const chosen = typeof init.agent === 'function' ? init.agent(new URL(url)) : init.agent
    agents.push([new URL(url).protocol, chosen])
    return url.endsWith('/auth/tokens') ? replay('keystone-token-password') : replay('masakari-202')
  }
  const https = await config('  endpoint: https://127.0.0.1:15868/v1/abc\n')
  const client = masakariClient(https, { fetch, now, tokenCache: memoryCache(), logger: recordingLogger(), agent: tls })
  t.match(await client.send(stopped), { outcome: 'accepted' })
  t.same(agents, [
    ['http:', undefined],
    ['https:', tls],
  ])
  t.equal(agentFor(undefined), undefined, 'no TLS configured: no agent at all')
})
