/**
 * The worker (lib/worker.ts) run for real on a state directory, with recording side effects and a
 * fake clock: delivery until done, backoff and expiry, a hold that fires with no new Consul event,
 * the worker lock, and work queued while it runs.
 */
import t, { type Test } from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { main as evaluate } from '../handlers/evaluate.js'
import { tryLock } from '../lib/lock.js'
import type { HttpResponse } from '../lib/masakari.js'
import { runWorker } from '../lib/worker.js'
import { configYaml, fakeDeps, GUARDS_OFF, payload, readState, response, scriptedFetch, type Recorded } from './helpers.js'

const fixture = (name: string) => JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'recorded', `${name}.json`), 'utf8'))
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
    configYaml(stateDir, { masakari: { delivery: { initialBackoff: 1, maxBackoff: 8, expiry: 60, concurrency: 4 } }, ...extra }),
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
