/**
 * The worker (lib/run/worker.ts) run for real on a state directory, with recording side effects and a
 * fake clock: delivery until done, backoff and expiry, a hold that fires with no new Consul event,
 * the worker lock, and work queued while it runs.
 */
import t, { type Test } from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { main as evaluate } from '../handlers/operator-cli.js'
import { tryLock } from '../lib/state/lock.js'
import type { HttpResponse } from '../lib/openstack/masakari.js'
import { runWorker } from '../lib/run/worker.js'
import {
  configYaml,
  fakeDeps,
  GUARDS_OFF,
  parsePrometheusText,
  payload,
  readState,
  response,
  scriptedFetch,
  type Recorded,
  recordedFixture,
} from './helpers.js'

const fixture = recordedFixture
const token = fixture('keystone-token-password')
const accepted = fixture('masakari-202')
const ok = () => response(accepted.status, accepted.body, accepted.headers)
const unavailable = () => response(503, '<html>Service Unavailable</html>')

const allUp = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
const cmp1Down = payload({ controller: 'passing', cmp1: 'critical', cmp2: 'passing' })
const bothDown = payload({ controller: 'passing', cmp1: 'critical', cmp2: 'critical' })

/** A fake minute is plenty for every scenario here: a worker still running after ten has lost its way. */
const RUNAWAY_MS = 10 * 60_000

/**
 * A state directory with every network seen all up, a fake clock (the recorded token is valid
 * for an hour from its issue) and the worker's recording side effects. `answer` plays Masakari
 * for each notification POST; Keystone always issues the recorded token.
 */
async function setup(t: Test, answer: (nth: number, body: unknown) => HttpResponse | Promise<HttpResponse>, extra = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(
    config,
    configYaml(stateDir, {
      // The handler leaves every attempt to the worker: these tests are about the worker.
      masakari: { delivery: { initialBackoff: 1, maxBackoff: 8, expiry: 60, concurrency: 4, firstAttemptBudget: 0 } },
      ...extra,
    }),
  )
  let clock = Date.parse(token.body.token.expires_at) - 50 * 60_000
  const start = clock
  const now = () => new Date(clock)
  const handler = async (stdin: string) => {
    const deps = fakeDeps({ stdin, now })
    t.equal(await main(['--network', 'storage', '--config', config], deps), 0, 'handler run')
    return deps
  }
  for (const n of ['management', 'tenant', 'storage'])
    t.equal(await main(['--network', n, '--config', config], fakeDeps({ stdin: allUp, now })), 0)
  const rec: Recorded = { stdout: [], stderr: [], spawned: [], logFile: [], requests: [] }
  /** Each notification POST: host, event and the fake time it was sent at. */
  const posts: Array<{ host: string; event: string; at: number }> = []
  let nth = 0
  const fetch = scriptedFetch(rec, async (url) => {
    if (url.endsWith('/auth/tokens')) return response(token.status, token.body, token.headers)
    const body = rec.requests.at(-1)!.body as { notification: { hostname: string; payload: { event: string } } }
    posts.push({ host: body.notification.hostname, event: body.notification.payload.event, at: clock })
    return answer(nth++, body)
  })
  const worker = fakeDeps({ now, fetch })
  const sleeps: Array<() => Promise<void>> = []
  worker.sleep = async (ms) => {
    clock += ms
    if (clock - start > RUNAWAY_MS) throw new Error(`the worker is still running after ${RUNAWAY_MS} fake ms`)
    await sleeps.shift()?.()
  }
  const state = async () => JSON.parse((await readState(stateDir)) ?? 'null')
  const logged = (msg: string) => worker.rec.logFile.map((l) => JSON.parse(l)).filter((l) => l.msg === msg)
  return {
    stateDir,
    config,
    handler,
    worker,
    posts,
    requests: rec.requests,
    state,
    logged,
    /** Runs once, at the worker's next sleep. */
    atNextSleep: (fn: () => Promise<void>) => sleeps.push(fn),
    elapsed: () => clock - start,
  }
}

t.test('delivers the outbox, then exits and frees its lock', async (t) => {
  const h = await setup(t, () => ok())
  await h.handler(cmp1Down)
  t.equal((await h.state()).outbox.length, 1, 'one STOPPED queued')
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(
    h.posts.map((p) => `${p.host}:${p.event}`),
    ['cmp1:STOPPED'],
  )
  const s = await h.state()
  t.same(s.outbox, [])
  t.match(s.ledger.cmp1, { notified: { event: 'STOPPED', outcome: 'accepted' } })
  t.notOk(existsSync(join(h.stateDir, 'worker.lock')), 'the worker lock is released')
})

t.test('retries with backoff until accepted; every retry byte-identical', async (t) => {
  const h = await setup(t, (n) => (n === 0 ? unavailable() : n === 1 ? Promise.reject(new Error('connect ECONNREFUSED')) : ok()))
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  t.equal(h.posts.length, 3)
  const bodies = h.requests.filter((r) => r.url.endsWith('/notifications')).map((r) => JSON.stringify(r.body))
  t.equal(new Set(bodies).size, 1, 'same body, generated_time included')
  t.ok(h.posts[1]!.at - h.posts[0]!.at >= 1000, 'first retry after the initial backoff (1 s)')
  t.ok(h.posts[2]!.at - h.posts[1]!.at >= 2000, 'second retry after twice that')
  t.equal(h.logged('notification not delivered, will retry').length, 2)
  t.match((await h.state()).ledger.cmp1, { notified: { outcome: 'accepted' } })
})

t.test('the metrics textfile after delivery: the notification and its retries counted, the outbox empty', async (t) => {
  const h = await setup(t, (n) => (n < 2 ? unavailable() : ok()), { metrics: { textfile: 'metrics/mc.prom' } })
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  const text = readFileSync(join(h.config, '..', 'metrics', 'mc.prom'), 'utf8')
  const series = new Map(parsePrometheusText(text).samples.map((s) => [`${s.name}${JSON.stringify(s.labels)}`, s.value]))
  t.equal(series.get('masakari_consul_decisions_total{"action":"STOPPED"}'), 1)
  t.equal(series.get('masakari_consul_notifications_total{"outcome":"accepted"}'), 1)
  t.equal(series.get('masakari_consul_notification_retries_total{}'), 2)
  t.equal(series.get('masakari_consul_outbox_entries{}'), 0)
  t.same((await h.state()).counters, { decisions: { STOPPED: 1 }, notifications: { accepted: 1 }, retries: 2 }, 'kept in the record')
})

t.test('gives up after the expiry, loudly, and exits', async (t) => {
  const h = await setup(t, () => response(500, { computeFault: { message: 'boom', code: 500 } }))
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  const s = await h.state()
  t.same(s.outbox, [])
  t.match(s.ledger.cmp1.unsent, { outcome: 'expired', message: /Masakari answered 500: boom/ })
  t.ok(h.posts.length >= 5 && h.posts.length <= 15, `retried ${h.posts.length} times in 60 s with the backoff capped at 8 s`)
  t.match(h.logged('notification expired undelivered'), [{ level: 'error', host: 'cmp1' }])
})

t.test('waits out a hold with no further Consul event, then re-evaluates and delivers', async (t) => {
  const h = await setup(t, () => ok(), { guards: { ...GUARDS_OFF, hold: { recovery: 3, back: 3 } } })
  const run = await h.handler(cmp1Down)
  const held = await h.state()
  t.same(held.outbox, [], 'nothing queued during the hold')
  t.ok(held.wakeAt, 'a wake-up is recorded')
  t.same(run.rec.spawned, [h.config], 'the worker is started for the hold')
  t.equal(await runWorker(h.config, h.worker), 0)
  const done = await h.state()
  t.same(done.outbox, [])
  t.equal(done.wakeAt, undefined)
  t.match(done.ledger.cmp1, { phase: 'recovery', notified: { event: 'STOPPED', outcome: 'accepted' } })
  t.same(
    h.posts.map((p) => `${p.host}:${p.event}`),
    ['cmp1:STOPPED'],
  )
  t.ok(h.posts[0]!.at - Date.parse(held.wakeAt) >= 0, 'sent once the hold was over')
  t.ok(h.elapsed() < 4000, `and not much later (${h.elapsed()} ms after the decision)`)
})

t.test('leaves the outbox to the worker that holds the lock', async (t) => {
  const h = await setup(t, () => ok())
  await h.handler(cmp1Down)
  const release = await tryLock(join(h.stateDir, 'worker.lock'), () => {})
  t.ok(release, 'another worker holds the lock')
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(h.requests, [], 'nothing sent')
  t.equal((await h.state()).outbox.length, 1, 'the outbox is left as it was')
  await release!()
})

t.test('work queued during a delivery is delivered before the worker exits', async (t) => {
  let queued: Awaited<ReturnType<typeof h.handler>> | undefined
  const h = await setup(t, async () => {
    // While cmp1's STOPPED is in flight, cmp2 fails too: the handler queues it and starts a
    // worker, which would find the lock held.
    queued ??= await h.handler(bothDown)
    return ok()
  })
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(queued?.rec.spawned, [h.config], 'the handler started a worker of its own')
  t.same(
    h.posts.map((p) => `${p.host}:${p.event}`),
    ['cmp1:STOPPED', 'cmp2:STOPPED'],
  )
  t.same((await h.state()).outbox, [])
})

t.test('work queued while the worker waits for a retry wakes it before the wait is over', async (t) => {
  const h = await setup(t, (n) => (n === 0 ? unavailable() : ok()))
  await h.handler(cmp1Down)
  h.atNextSleep(async () => {
    await h.handler(bothDown)
  })
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(
    h.posts.map((p) => `${p.host}:${p.event}`),
    ['cmp1:STOPPED', 'cmp2:STOPPED', 'cmp1:STOPPED'],
    "cmp2's STOPPED went out during cmp1's backoff",
  )
  t.ok(h.posts[1]!.at - h.posts[0]!.at < 1000, `cmp2 sent ${h.posts[1]!.at - h.posts[0]!.at} ms after cmp1's 503, within its 1 s backoff`)
  t.same((await h.state()).outbox, [])
})

t.test('--worker runs the worker from either bundle; --deliver, its former name, still does', async (t) => {
  const h = await setup(t, () => ok())
  const steps: Array<[string, (argv: string[], deps: typeof h.worker) => Promise<number>, string, string]> = [
    [cmp1Down, main, '--worker', 'cmp1:STOPPED'],
    [allUp, evaluate, '--worker', 'cmp1:STARTED'],
    [payload({ controller: 'passing', cmp1: 'passing', cmp2: 'critical' }), main, '--deliver', 'cmp2:STOPPED'],
  ]
  for (const [stdin, entry, flag, sent] of steps) {
    await h.handler(stdin)
    t.equal(await entry([flag, '--config', h.config], h.worker), 0, `${flag}: exit 0`)
    t.equal(h.posts.map((p) => `${p.host}:${p.event}`).at(-1), sent, `${flag}: ${sent} delivered`)
  }
  t.equal(h.posts.length, 3)
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
  await writeFile(config, configYaml(stateDir, { masakari: { delivery: { firstAttemptBudget: 0 } } }))
  const clock = Date.parse(token.body.token.expires_at) - 50 * 60_000
  const now = () => new Date(clock)
  for (const n of ['management', 'tenant', 'storage']) await main(['--network', n, '--config', config], fakeDeps({ stdin: allUp, now }))
  await main(['--network', 'storage', '--config', config], fakeDeps({ stdin: cmp1Down, now }))
  const lock = join(stateDir, 'worker.lock')
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
