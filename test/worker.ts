/** The detached follow-up process: delivery, and a hold that fires with no new Consul event. */
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { configYaml, fakeDeps, payload, readState, response, scriptedFetch, GUARDS_OFF } from './helpers.js'

const fixture = (name: string) => JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'recorded', `${name}.json`), 'utf8'))
const token = fixture('keystone-token-password')
const accepted = fixture('masakari-202')
const allUp = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
const cmp1Down = payload({ controller: 'passing', cmp1: 'critical', cmp2: 'passing' })

t.test('a hold fires with no further Consul event; the worker then delivers and exits', async (t) => {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { guards: { ...GUARDS_OFF, hold: { recovery: 3, back: 3 } } }))
  // the recorded token is valid for an hour from its issue
  let clock = Date.parse(token.body.token.expires_at) - 50 * 60_000
  const now = () => new Date(clock)
  for (const n of ['management', 'tenant', 'storage'])
    t.equal(await main(['--network', n, '--config', config], fakeDeps({ stdin: allUp, now })), 0)
  const handler = fakeDeps({ stdin: cmp1Down, now })
  t.equal(await main(['--network', 'storage', '--config', config], handler), 0)
  const held = JSON.parse((await readState(stateDir))!)
  t.same(held.outbox, [], 'nothing queued during the hold')
  t.ok(held.wakeAt, 'a wake-up is recorded')
  t.same(handler.rec.spawned, [config], 'the worker is started for the hold')

  const worker = fakeDeps({
    now,
    fetch: scriptedFetch(handler.rec, (url) =>
      url.endsWith('/auth/tokens')
        ? response(token.status, token.body, token.headers)
        : response(accepted.status, accepted.body, accepted.headers),
    ),
  })
  worker.sleep = async (ms) => {
    clock += ms
  }
  const startedAt = clock
  t.equal(await main(['--deliver', '--config', config], worker), 0)
  const done = JSON.parse((await readState(stateDir))!)
  t.same(done.outbox, [])
  t.equal(done.wakeAt, undefined)
  t.match(done.ledger.cmp1, { phase: 'recovery', notified: { event: 'STOPPED', outcome: 'accepted' } })
  const posts = handler.rec.requests.filter((r) => r.url.endsWith('/notifications'))
  t.equal(posts.length, 1)
  t.match(posts[0]!.body, { notification: { hostname: 'cmp1', payload: { event: 'STOPPED' } } })
  t.ok(clock - startedAt >= 3000, `the worker waited out the hold (${clock - startedAt} ms)`)
  t.ok(clock - startedAt < 4000)
})

t.test('a STOPPED resent after a crash, answered "on maintenance", is found in Masakari: delivered, and its STARTED goes', async (t) => {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir))
  const clock = Date.parse(token.body.token.expires_at) - 50 * 60_000
  const now = () => new Date(clock)
  const listed = fixture('masakari-notifications-list')
  const held = listed.body.notifications[0]
  // The worker that sent this STOPPED died between Masakari's 202 and its record: the entry is
  // still in the outbox, attempts 0; Masakari's engine has since put the host on maintenance.
  const entry = (id: string, event: 'STOPPED' | 'STARTED', generated: string) => ({
    id,
    host: 'os-probe-1',
    notification: {
      type: 'COMPUTE_HOST',
      hostname: 'os-probe-1',
      generated_time: generated,
      payload: { event, cluster_status: event === 'STOPPED' ? 'OFFLINE' : 'ONLINE', host_status: 'NORMAL' },
    },
    reason: 'test',
    decidedAt: now().toISOString(),
    attempts: 0,
    nextAttemptAt: now().toISOString(),
  })
  const state = {
    version: 1,
    ledger: { 'os-probe-1': { firstSeenAt: now().toISOString(), phase: 'normal' } },
    outbox: [entry('s', 'STOPPED', `${held.generated_time.slice(0, 23)}Z`), entry('b', 'STARTED', now().toISOString())],
  }
  await mkdir(stateDir, { recursive: true })
  await writeFile(join(stateDir, 'state.json'), JSON.stringify(state))
  const maintenance = fixture('masakari-409-maintenance')
  const worker = fakeDeps({
    now,
    fetch: scriptedFetch(fakeDeps().rec, (url, method) => {
      if (url.endsWith('/auth/tokens')) return response(token.status, token.body, token.headers)
      if (method === 'POST') return response(maintenance.status, maintenance.body, maintenance.headers)
      if (url.endsWith('/segments')) return response(200, { segments: [{ uuid: 'seg-a' }] })
      if (url.includes('/hosts?')) return response(200, { hosts: [{ uuid: held.source_host_uuid, name: 'os-probe-1' }] })
      return response(listed.status, listed.body, listed.headers)
    }),
  })
  t.equal(await main(['--deliver', '--config', config], worker), 0, worker.rec.stderr.join('\n'))
  const done = JSON.parse((await readState(stateDir))!)
  t.same(done.outbox, [])
  t.match(done.ledger['os-probe-1'], {
    notified: { id: 's', event: 'STOPPED', outcome: 'duplicate', message: /already holds it/ },
    unsent: { id: 'b', event: 'STARTED', outcome: 'on-maintenance' },
  })
})

t.test('caFile with http Keystone and Masakari: the worker delivers, the TLS agent is kept for https', async (t) => {
  const dir = t.testdir({ 'ca.pem': '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' })
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { masakari: { caFile: 'ca.pem' } }))
  let clock = Date.parse(token.body.token.expires_at) - 50 * 60_000
  const now = () => new Date(clock)
  for (const n of ['management', 'tenant', 'storage']) await main(['--network', n, '--config', config], fakeDeps({ stdin: allUp, now }))
  await main(['--network', 'storage', '--config', config], fakeDeps({ stdin: cmp1Down, now }))
  const tls = { name: 'https agent' }
  const caSeen: Array<string | undefined> = []
  const urls: string[] = []
  const worker = fakeDeps({
    now,
    fetch: async (url, init) => {
      urls.push(url)
      // what node-fetch does with an https Agent on an http: URL
      const agent = typeof init.agent === 'function' ? init.agent(new URL(url)) : init.agent
      if (agent !== undefined && url.startsWith('http:')) throw new TypeError('Protocol "http:" not supported. Expected "https:"')
      return url.endsWith('/auth/tokens') ? response(token.status, token.body, token.headers) : response(accepted.status, accepted.body)
    },
  })
  worker.sleep = async (ms) => {
    clock += ms
  }
  worker.tlsAgent = async (ca) => {
    caSeen.push(ca)
    return tls
  }
  t.equal(await main(['--deliver', '--config', config], worker), 0, worker.rec.stderr.join('\n'))
  t.match(caSeen, [/BEGIN CERTIFICATE/], 'the agent is built from the caFile read at config load')
  t.equal(urls.length, 2)
  t.match(JSON.parse((await readState(stateDir))!).ledger.cmp1, { notified: { event: 'STOPPED', outcome: 'accepted' } })
})

t.test('a worker whose lock is taken over stops with one error line and exit 75; the answer it had is recorded', async (t) => {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir))
  const clock = Date.parse(token.body.token.expires_at) - 50 * 60_000
  const now = () => new Date(clock)
  for (const n of ['management', 'tenant', 'storage']) await main(['--network', n, '--config', config], fakeDeps({ stdin: allUp, now }))
  await main(['--network', 'storage', '--config', config], fakeDeps({ stdin: cmp1Down, now }))
  const lock = join(stateDir, 'deliverer.lock')
  const worker = fakeDeps({
    now,
    fetch: async (url) => {
      if (url.endsWith('/auth/tokens')) return response(token.status, token.body, token.headers)
      // While the POST is in flight, another worker judged us stale and took the lock (a fresh
      // directory, a new mtime); the heartbeat (every 5 s) then finds it is not ours.
      await rmdir(lock)
      await mkdir(lock)
      await new Promise((r) => setTimeout(r, 5500))
      return response(accepted.status, accepted.body)
    },
  })
  const code = await main(['--deliver', '--config', config], worker)
  t.equal(code, 75)
  const errors = worker.rec.stderr.filter((l) => /"level":"error"|error:/.test(l))
  t.equal(errors.length, 1, errors.join('\n'))
  t.match(errors[0], /worker lock taken over by another process/)
  t.match(JSON.parse((await readState(stateDir))!).ledger.cmp1, { notified: { event: 'STOPPED', outcome: 'accepted' } })
  t.ok(existsSync(lock), "the other worker's lock is left alone")
})
