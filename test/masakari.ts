/** The Masakari client replaying responses recorded from the real Keystone and masakari-api. */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig, type Config } from '../lib/config.js'
import { hostNotification } from '../lib/evaluator.js'
import { recordingLogger } from '../lib/log.js'
import { authBody, classify, masakariClient, type CachedToken, type Fetch, type HttpResponse, type TokenCache } from '../lib/masakari.js'
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

async function config(extra = ''): Promise<Config> {
  const text = `stateDir: /tmp/x\nmasakari:\n  authUrl: http://127.0.0.1:5000/v3\n  requestTimeout: 0.2\n  auth: {username: masakari-consul, userDomainName: Default, password: pw, projectName: service, projectDomainName: Default}\n${extra}`
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
  opts: { cache?: TokenCache & { saved: CachedToken[] }; extra?: string } = {},
) {
  const r = rec()
  const fetch: Fetch = scriptedFetch(r, async (_url, _m, i) => {
    const a = answers[i]
    if (a === undefined) throw new Error(`unexpected request #${i}`)
    if (a instanceof Error) throw a
    return typeof a === 'string' ? replay(a) : a
  })
  const cache = opts.cache ?? memoryCache()
  const client = masakariClient(await config(opts.extra), { fetch, now, tokenCache: cache, logger: recordingLogger() })
  return { result: await client.send(stopped), requests: r.requests, cache }
}

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
  t.match((await send(['keystone-token-password', 'masakari-409-maintenance'])).result, {
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
