/**
 * End to end against a real Keystone and a real masakari-api (Debian bookworm packages, on
 * loopback; see stack/openstack.ts). Fails when the packages are not installed: npm test installs them.
 *
 * RECORD_FIXTURES=1 rewrites test/fixtures/recorded/*.json from the live answers (the replay
 * fixtures of the Masakari client's unit tests); otherwise the live answers are compared with
 * the recorded ones (status, and the exact body of every error answer).
 */
import t from 'tap'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  catalogUrl,
  etcPathsOf,
  freePort,
  httpJson,
  isAlive,
  passwordAuthBody,
  passwordToken,
  startOpenStack,
  type Recorded,
} from '../../stack/openstack.js'

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'recorded')
const RECORD = process.env.RECORD_FIXTURES === '1'

// npm test installs the packages (scripts/prepare.mjs): without them this file would test
// nothing, and a run that tests nothing must not pass.
const missing = ['/usr/bin/keystone-manage', '/usr/bin/uwsgi_python3', '/usr/bin/masakari-manage', '/usr/bin/masakari-api'].filter(
  (f) => !existsSync(f),
)
if (missing.length > 0) {
  throw new Error(`Keystone / masakari-api are not installed (no ${missing.join(', ')}): run scripts/install-stack.sh (npm test does)`)
}

interface Fixture extends Recorded {
  request: { method: string; url: string; headers?: Record<string, string>; body?: unknown }
  note?: string
}

/** The few assertions `fixture` needs (any tap Test has them). */
interface Asserts {
  pass(msg: string): boolean
  fail(msg: string): boolean
  equal(found: unknown, wanted: unknown, msg: string): boolean
  same(found: unknown, wanted: unknown, msg: string): boolean
}

/** Record (RECORD_FIXTURES=1) or compare with the recorded answer. */
function fixture(tt: Asserts, name: string, f: Fixture): void {
  const file = join(FIXTURES, name)
  if (RECORD) {
    mkdirSync(FIXTURES, { recursive: true })
    writeFileSync(file, `${JSON.stringify(f, null, 2)}\n`)
    tt.pass(`recorded ${name}`)
    return
  }
  if (!existsSync(file)) {
    tt.fail(`missing fixture ${name}: run with RECORD_FIXTURES=1`)
    return
  }
  const rec = JSON.parse(readFileSync(file, 'utf8')) as Fixture
  tt.equal(f.status, rec.status, `${name}: same status as recorded`)
  if (f.status >= 400) tt.same(f.body, rec.body, `${name}: same error body as recorded`)
  else tt.same(Object.keys(f.body ?? {}).sort(), Object.keys(rec.body ?? {}).sort(), `${name}: same top-level keys as recorded`)
}

const masked = (token: string) => ({ 'X-Auth-Token': token ? '<token>' : '' })

function notificationBody(hostname: string, generatedTime: string, event = 'STOPPED') {
  return {
    notification: {
      type: 'COMPUTE_HOST',
      hostname,
      generated_time: generatedTime,
      payload:
        event === 'STOPPED'
          ? { event: 'STOPPED', cluster_status: 'OFFLINE', host_status: 'NORMAL' }
          : { event: 'STARTED', cluster_status: 'ONLINE', host_status: 'NORMAL' },
    },
  }
}

const base = mkdtempSync(join(tmpdir(), 'e2e-openstack-'))
const log = (m: string) => t.comment(m)

// One stack with duplicate_notification_detection_interval 0 (so duplicates can be counted); the
// 180 s probe restarts its masakari-api with Masakari's default window. Free ports: another run may
// hold the defaults.
const os = await startOpenStack({
  dir: join(base, 'stack'),
  keystonePort: await freePort(),
  masakariPort: await freePort(),
  duplicateInterval: 0,
  log,
})
t.teardown(async () => {
  await os.stop()
  // keep configs and logs when something failed (or when asked to)
  if (!process.env.KEEP_STACK_DIR && t.passing()) rmSync(base, { recursive: true, force: true })
  else t.comment(`stack files and logs kept in ${base}`)
})

// A fresh machine has no /etc/keystone/fernet-keys (nor jws-keys, domains, …): the scratch configs
// must point every such path into the scratch dir. The bring-up refuses configs that do not; this
// checks the detector itself on the config that once slipped through (no [fernet_receipts]).
t.test('scratch configs read no /etc path that a fresh machine lacks', async (t) => {
  const stackDir = join(base, 'stack')
  t.same(etcPathsOf('keystone', join(stackDir, 'keystone.conf')), [], 'keystone.conf')
  t.same(etcPathsOf('masakari', join(stackDir, 'masakari.conf')), [], 'masakari.conf')
  const withoutReceipts = readFileSync(join(stackDir, 'keystone.conf'), 'utf8').replace(/\[fernet_receipts\]\n[^[]*/, '')
  const file = join(base, 'keystone-without-receipts.conf')
  writeFileSync(file, withoutReceipts)
  t.match(etcPathsOf('keystone', file), ['fernet_receipts.key_repository = /etc/keystone/fernet-keys/'])
})

t.test('monitor password token and catalog', async (t) => {
  const req = passwordAuthBody(os.monitor)
  const tok = await passwordToken(os.monitor)
  const r = tok.response
  t.equal(r.status, 201)
  t.ok(r.headers['x-subject-token'], 'X-Subject-Token present')
  t.equal(r.body.token.project.name, 'service')
  t.ok(
    r.body.token.roles.some((x: { name: string }) => x.name === 'admin'),
    'admin role on service',
  )
  t.equal(catalogUrl(tok.catalog, 'instance-ha'), os.masakariUrl)
  t.equal(os.masakariUrl, `http://127.0.0.1:${new URL(os.masakariUrl).port}/v1/${os.ids.serviceProjectId}`)
  for (const iface of ['public', 'internal', 'admin']) t.ok(catalogUrl(tok.catalog, 'instance-ha', iface))
  t.ok(catalogUrl(tok.catalog, 'identity', 'internal'), 'internal identity endpoint')
  fixture(t, 'keystone-token-password.json', {
    request: { method: 'POST', url: `${os.authUrl}/auth/tokens`, body: req },
    note: 'password auth of the monitor user (masakari-consul, admin on project service) against a throwaway Keystone',
    ...r,
  })
})

t.test('keystone 401 on a wrong password', async (t) => {
  const body = passwordAuthBody({ ...os.monitor, password: 'wrong' })
  const r = await httpJson('POST', `${os.authUrl}/auth/tokens`, { body })
  t.equal(r.status, 401)
  fixture(t, 'keystone-401.json', { request: { method: 'POST', url: `${os.authUrl}/auth/tokens`, body }, ...r })
})

t.test('application credential token', async (t) => {
  const mon = await passwordToken(os.monitor)
  const createUrl = `${os.authUrl}/users/${os.ids.monitorUserId}/application_credentials`
  const createBody = { application_credential: { name: 'masakari-consul-monitor', description: 'monitor' } }
  const created = await httpJson('POST', createUrl, { token: mon.token, body: createBody })
  t.equal(created.status, 201)
  const ac = created.body.application_credential
  t.ok(ac.id && ac.secret)
  fixture(t, 'keystone-appcred-create.json', {
    request: { method: 'POST', url: createUrl, headers: masked(mon.token), body: createBody },
    ...created,
  })
  const authBody = { auth: { identity: { methods: ['application_credential'], application_credential: { id: ac.id, secret: ac.secret } } } }
  const r = await httpJson('POST', `${os.authUrl}/auth/tokens`, { body: authBody })
  t.equal(r.status, 201)
  t.ok(r.headers['x-subject-token'])
  t.equal(r.body.token.project.id, os.ids.serviceProjectId, 'scoped to the project the credential was made in')
  t.equal(catalogUrl(r.body.token.catalog, 'instance-ha'), os.masakariUrl)
  fixture(t, 'keystone-token-appcred.json', { request: { method: 'POST', url: `${os.authUrl}/auth/tokens`, body: authBody }, ...r })
  // the same credential by user name + credential name
  const byName = {
    auth: {
      identity: {
        methods: ['application_credential'],
        application_credential: { name: ac.name, user: { name: os.monitor.username, domain: { name: 'Default' } }, secret: ac.secret },
      },
    },
  }
  t.equal((await httpJson('POST', `${os.authUrl}/auth/tokens`, { body: byName })).status, 201, 'by name works too')
  const bad = { auth: { identity: { methods: ['application_credential'], application_credential: { id: ac.id, secret: 'wrong' } } } }
  const r401 = await httpJson('POST', `${os.authUrl}/auth/tokens`, { body: bad })
  t.equal(r401.status, 401)
  fixture(t, 'keystone-401-appcred.json', { request: { method: 'POST', url: `${os.authUrl}/auth/tokens`, body: bad }, ...r401 })
})

t.test('notification stored, unknown host 400, bad token 401', async (t) => {
  const seg = await os.createSegment('e2e-segment')
  await os.addHost(seg, 'os-probe-1')
  const mon = await passwordToken(os.monitor)
  const url = `${catalogUrl(mon.catalog, 'instance-ha')}/notifications`

  const body = notificationBody('os-probe-1', '2026-11-25T18:45:00')
  const r = await httpJson('POST', url, { token: mon.token, body })
  t.equal(r.status, 202, JSON.stringify(r.body))
  t.equal(r.body.notification.status, 'new')
  t.ok(r.body.notification.source_host_uuid, 'the answer names the host by uuid (no hostname field)')
  fixture(t, 'masakari-202.json', { request: { method: 'POST', url, headers: masked(mon.token), body }, ...r })

  const list = await os.listNotifications()
  const found = list.find((n) => n.notification_uuid === r.body.notification.notification_uuid)
  t.ok(found, 'listed')
  t.equal(found?.hostname, 'os-probe-1')
  t.equal(found?.type, 'COMPUTE_HOST')
  t.same(found?.payload, body.notification.payload)
  const listed = await httpJson('GET', url, { token: mon.token })
  t.equal(listed.status, 200)
  fixture(t, 'masakari-notifications-list.json', { request: { method: 'GET', url, headers: masked(mon.token) }, ...listed })

  const unknown = notificationBody('no-such-host', '2026-11-25T18:45:00')
  const r400 = await httpJson('POST', url, { token: mon.token, body: unknown })
  t.equal(r400.status, 400)
  t.match(JSON.stringify(r400.body), /Host with name no-such-host could not be found/)
  fixture(t, 'masakari-400-host-not-found.json', { request: { method: 'POST', url, headers: masked(mon.token), body: unknown }, ...r400 })

  const r401 = await httpJson('POST', url, { token: 'gAAAAAinvalid', body })
  t.equal(r401.status, 401)
  fixture(t, 'masakari-401.json', { request: { method: 'POST', url, headers: { 'X-Auth-Token': 'gAAAAAinvalid' }, body }, ...r401 })
  const noToken = await httpJson('POST', url, { body })
  t.equal(noToken.status, 401, 'no token: 401 too')

  // masakari-api 14 does not validate COMPUTE_HOST payloads at all (the engine ignores bad ones later)
  const incomplete = { notification: { ...body.notification, generated_time: '2026-11-25T18:50:00', payload: { event: 'STOPPED' } } }
  t.equal((await httpJson('POST', url, { token: mon.token, body: incomplete })).status, 202, 'incomplete COMPUTE_HOST payload: accepted')
})

t.test('duplicate window 0: identical posts', async (t) => {
  const seg = await os.createSegment('e2e-dup0')
  await os.addHost(seg, 'os-dup0-1')
  const mon = await passwordToken(os.monitor)
  const url = `${os.masakariUrl}/notifications`
  const same = notificationBody('os-dup0-1', '2026-11-25T18:45:00')
  const a = await httpJson('POST', url, { token: mon.token, body: same })
  const b = await httpJson('POST', url, { token: mon.token, body: same })
  t.comment(`interval 0, same generated_time twice: ${a.status}, ${b.status}`)
  t.equal(a.status, 202)
  const later = notificationBody('os-dup0-1', '2026-11-25T18:45:01')
  const c = await httpJson('POST', url, { token: mon.token, body: later })
  t.comment(`interval 0, one second later: ${c.status}`)
  const earlier = notificationBody('os-dup0-1', '2026-11-25T18:44:59')
  const d = await httpJson('POST', url, { token: mon.token, body: earlier })
  t.comment(`interval 0, one second earlier than stored ones: ${d.status}`)
  // Even with interval 0, a stored notification with the same type, host and payload whose
  // generated_time is >= the new one makes the new one a duplicate (filter: stored >= new - interval).
  t.same([a.status, b.status, c.status, d.status], [202, 409, 202, 409], 'same time: 409; later: 202; earlier: 409')
  fixture(t, 'masakari-duplicate-interval-0.json', {
    request: { method: 'POST', url, headers: masked(mon.token), body: same },
    note: 'duplicate_notification_detection_interval = 0; body.sequence = statuses of: the same body twice, then +1 s, then -1 s',
    status: b.status,
    headers: b.headers,
    body: { sequence: [a.status, b.status, c.status, d.status], second: b.body, earlier: d.body },
  })
})

t.test('403 for a user without the admin role', async (t) => {
  const admin = await os.adminToken()
  const call = async (method: string, path: string, body?: unknown) =>
    (await httpJson(method, `${os.authUrl}${path}`, { token: admin, body })).body
  const memberRole = (await call('GET', '/roles?name=member')).roles[0].id
  const user = (await call('POST', '/users', { user: { name: 'plain-member', password: 'plain-secret', domain_id: 'default' } })).user.id
  await call('PUT', `/projects/${os.ids.serviceProjectId}/users/${user}/roles/${memberRole}`)
  const tok = await passwordToken({ ...os.monitor, username: 'plain-member', password: 'plain-secret' })
  const url = `${catalogUrl(tok.catalog, 'instance-ha')}/notifications`
  const body = notificationBody('os-probe-1', '2026-11-25T18:55:00')
  const r = await httpJson('POST', url, { token: tok.token, body })
  t.equal(r.status, 403, JSON.stringify(r.body))
  fixture(t, 'masakari-403.json', {
    request: { method: 'POST', url, headers: masked(tok.token), body },
    note: 'user with role member (not admin) on project service',
    ...r,
  })
})

t.test('409 host on maintenance', async (t) => {
  const seg = await os.createSegment('e2e-maint')
  await os.addHost(seg, 'os-maint-1')
  await os.setHostMaintenance(seg, 'os-maint-1', true)
  const mon = await passwordToken(os.monitor)
  const url = `${os.masakariUrl}/notifications`
  const body = notificationBody('os-maint-1', '2026-11-25T18:45:00')
  const r = await httpJson('POST', url, { token: mon.token, body })
  t.equal(r.status, 409, JSON.stringify(r.body))
  t.match(JSON.stringify(r.body), /already under maintenance/)
  fixture(t, 'masakari-409-maintenance.json', { request: { method: 'POST', url, headers: masked(mon.token), body }, ...r })
  await os.setHostMaintenance(seg, 'os-maint-1', false)
  const r2 = await httpJson('POST', url, { token: mon.token, body })
  t.equal(r2.status, 202, 'accepted again once maintenance is off')
})

t.test('generated_time formats', async (t) => {
  const seg = await os.createSegment('e2e-formats')
  const mon = await passwordToken(os.monitor)
  const url = `${os.masakariUrl}/notifications`
  const formats = [
    '2026-11-25T18:45:00',
    '2026-11-25T18:45:00Z',
    '2026-11-25T18:45:00.123Z',
    '2026-11-25T18:45:00.123456Z',
    '2026-11-25T18:45:00.123456',
    '2026-11-25T18:45:00+00:00',
    '2026-11-25T19:45:00+01:00',
    '2026-11-25T18:45:00.123+00:00',
    '2026-11-25T18:45:00z',
    '2026-11-25 18:45:00',
    '2026-11-25T18:45',
    '20261125T184500Z',
    '2026-11-25',
    'Wed, 25 Nov 2026 18:45:00 GMT',
    '1795632300',
    'not-a-date',
  ]
  const results: Array<{ generated_time: string; status: number; stored?: string; error?: unknown }> = []
  let i = 0
  for (const f of formats) {
    const host = `os-fmt-${++i}`
    await os.addHost(seg, host)
    const r = await httpJson('POST', url, { token: mon.token, body: notificationBody(host, f) })
    results.push(
      r.status === 202
        ? { generated_time: f, status: r.status, stored: r.body.notification.generated_time }
        : { generated_time: f, status: r.status, error: r.body },
    )
    if (r.status === 400 && f === 'not-a-date') {
      fixture(t, 'masakari-400-generated-time.json', {
        request: { method: 'POST', url, headers: masked(mon.token), body: notificationBody(host, f) },
        ...r,
      })
    }
  }
  for (const r of results) t.comment(`${JSON.stringify(r.generated_time)} -> ${r.status}${r.stored ? ` stored as ${r.stored}` : ''}`)
  const accepted = (f: string) => results.find((r) => r.generated_time === f)?.status === 202
  t.ok(accepted('2026-11-25T18:45:00'), 'naive ISO 8601')
  t.ok(accepted('2026-11-25T18:45:00Z'), 'Z')
  t.ok(accepted('2026-11-25T18:45:00.123Z'), 'milliseconds + Z (what Date#toISOString gives)')
  t.ok(accepted('2026-11-25T18:45:00+00:00'), '+00:00')
  t.notOk(accepted('not-a-date'), 'garbage rejected')
  if (RECORD) {
    writeFileSync(
      join(FIXTURES, 'masakari-generated-time-formats.json'),
      JSON.stringify({ note: 'POST /notifications, COMPUTE_HOST STOPPED, one host per format, masakari-api 14.0.2', results }, null, 2) +
        '\n',
    )
  }
})

t.test('409 duplicate (180 s window)', async (t) => {
  await os.setDuplicateInterval(180)
  const seg = await os.createSegment('e2e-dup180')
  await os.addHost(seg, 'os-dup180-1')
  const mon = await passwordToken(os.monitor)
  const url = `${os.masakariUrl}/notifications`
  const body = notificationBody('os-dup180-1', '2026-11-25T18:45:00')
  const first = await httpJson('POST', url, { token: mon.token, body })
  t.equal(first.status, 202)
  const again = notificationBody('os-dup180-1', '2026-11-25T18:46:00')
  const r = await httpJson('POST', url, { token: mon.token, body: again })
  t.equal(r.status, 409, JSON.stringify(r.body))
  fixture(t, 'masakari-409-duplicate.json', {
    request: { method: 'POST', url, headers: masked(mon.token), body: again },
    note: 'duplicate_notification_detection_interval = 180; same host, type and payload as a notification generated 60 s earlier',
    ...r,
  })
  // a different payload (STARTED) is not a duplicate
  const started = await httpJson('POST', url, { token: mon.token, body: notificationBody('os-dup180-1', '2026-11-25T18:46:30', 'STARTED') })
  t.equal(started.status, 202, 'different payload: accepted')
  // 181 s after the first: outside the window... but the STOPPED of 18:45:00 is still "since"?
  const outside = await httpJson('POST', url, { token: mon.token, body: notificationBody('os-dup180-1', '2026-11-25T18:48:01') })
  t.comment(`same payload 181 s after the first: ${outside.status}`)
  t.equal(outside.status, 202, 'outside the window: accepted')
})

t.test('stop() ends every process', async (t) => {
  t.ok(os.pids.length >= 4, `pids: ${os.pids.join(', ')}`)
  const t1 = Date.now()
  await os.stop()
  t.comment(`stopped in ${((Date.now() - t1) / 1000).toFixed(1)} s`)
  for (const pid of os.pids) t.notOk(isAlive(pid), `pid ${pid} gone`)
  await os.stop() // idempotent
  const r = await httpJson('GET', `${os.authUrl}`).catch((e: Error) => e)
  t.ok(r instanceof Error, 'keystone no longer answers')
})
