/**
 * The handler's own first delivery attempt (lib/run/first-attempt.ts): the run that records a
 * notification sends it, within its budget, and leaves only what is left to a worker.
 */
import t, { type Test } from 'tap'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import type { Fetch, HttpResponse } from '../lib/base/http.js'
import { configYaml, fakeDeps, payload, readState, response, scriptedFetch, type Recorded, recordedFixture } from './helpers.js'

const fixture = recordedFixture
const token = fixture('keystone-token-password')
const accepted = fixture('masakari-202')

const allUp = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
const cmp1Down = payload({ controller: 'passing', cmp1: 'critical', cmp2: 'passing' })
/** A time at which the recorded token is valid. */
const now = () => new Date(Date.parse(token.body.token.expires_at) - 50 * 60_000)

/** A state directory with every network seen all up; `masakari` plays Masakari's answer to each POST. */
async function setup(t: Test, masakari: (init: Parameters<Fetch>[1]) => Promise<HttpResponse>, delivery: Record<string, number> = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { masakari: { delivery: { initialBackoff: 1, ...delivery } } }))
  for (const n of ['management', 'tenant', 'storage'])
    t.equal(await main(['--network', n, '--config', config], fakeDeps({ stdin: allUp, now })), 0)
  const rec: Recorded = { stdout: [], stderr: [], spawned: [], logFile: [], requests: [] }
  const keystoneOrMasakari = scriptedFetch(rec, async () => response(0, ''))
  const fetch: Fetch = async (url, init) => {
    await keystoneOrMasakari(url, init)
    return url.endsWith('/auth/tokens') ? response(token.status, token.body, token.headers) : masakari(init)
  }
  const run = async () => {
    const deps = fakeDeps({ stdin: cmp1Down, now, fetch })
    const code = await main(['--network', 'storage', '--config', config], deps)
    return { code, deps }
  }
  const posts = () => rec.requests.filter((r) => r.url.endsWith('/notifications'))
  const state = async () => JSON.parse((await readState(stateDir)) ?? 'null')
  return { stateDir, run, posts, state }
}

const ok = async () => response(accepted.status, accepted.body, accepted.headers)

t.test('Masakari accepts: the handler delivers it itself and starts no worker', async (t) => {
  const h = await setup(t, ok)
  const { code, deps } = await h.run()
  t.equal(code, 0)
  t.equal(h.posts().length, 1, 'one POST, from the handler')
  t.same(deps.rec.spawned, [], 'nothing left for a worker')
  const s = await h.state()
  t.same(s.outbox, [])
  t.match(s.ledger.cmp1, { notified: { event: 'STOPPED', outcome: 'accepted' } })
  t.notOk(existsSync(join(h.stateDir, 'worker.lock')), 'worker.lock released')
  t.notOk(existsSync(join(h.stateDir, 'wake')), 'nothing waits: no wake note for the pulse check')
  const [status, reason, writtenAt, rest] = readFileSync(join(h.stateDir, 'health'), 'utf8').split('\n')
  t.same([status, rest], ['passing', ''], 'the health note says so')
  t.match(reason, /^0 notification\(s\) pending/)
  // pulse.sh tells the note's age from this line and /proc/uptime, starting no process.
  const up = Number(readFileSync('/proc/uptime', 'utf8').split('.')[0])
  t.ok(Number(writtenAt) <= up && Number(writtenAt) >= up - 5, `its third line is the uptime when written (${writtenAt}, now ${up})`)
})

t.test('Masakari does not answer: the handler gives up at its budget and leaves the retry to a worker', async (t) => {
  let aborted = 0
  const hang = (init: Parameters<Fetch>[1]) =>
    new Promise<HttpResponse>((_resolve, reject) =>
      init.signal.addEventListener('abort', () => {
        // The host lookup's GETs (masakari.lookupHosts) hang too, and are given up at their own timeout.
        if (init.method === 'POST') aborted++
        reject(Object.assign(new Error('The operation was aborted.'), { name: 'AbortError' }))
      }),
    )
  const h = await setup(t, hang, { firstAttemptBudget: 0.2 })
  const { code, deps } = await h.run()
  t.equal(code, 0, 'the decision is recorded: the run succeeded')
  t.equal(aborted, 1, 'the POST was given up')
  t.same(deps.rec.spawned.length, 1, 'a worker retries it')
  const s = await h.state()
  t.equal(s.outbox.length, 1, 'still in the outbox')
  t.match(s.outbox[0], { host: 'cmp1', attempts: 1, lastError: /timed out after 0.2 s/ })
})

t.test('Masakari answers 503: recorded as a failed attempt; a worker retries it', async (t) => {
  const h = await setup(t, async () => response(503, '<html>Service Unavailable</html>'))
  const { code, deps } = await h.run()
  t.equal(code, 0)
  t.equal(h.posts().length, 1)
  t.equal(deps.rec.spawned.length, 1)
  t.match((await h.state()).outbox, [{ host: 'cmp1', attempts: 1, lastError: /503/ }])
})

t.test('a worker holds worker.lock: the handler sends nothing and leaves it to that worker', async (t) => {
  const h = await setup(t, ok)
  mkdirSync(join(h.stateDir, 'worker.lock'))
  const { code, deps } = await h.run()
  t.equal(code, 0)
  t.equal(h.posts().length, 0, 'no POST beside the running worker')
  t.same(deps.rec.spawned, [], 'the running worker sees the new entry')
  t.match((await h.state()).outbox, [{ host: 'cmp1', attempts: 0 }])
})

t.test('firstAttemptBudget 0: every attempt is the worker’s', async (t) => {
  const h = await setup(t, ok, { firstAttemptBudget: 0 })
  const { code, deps } = await h.run()
  t.equal(code, 0)
  t.equal(h.posts().length, 0)
  t.equal(deps.rec.spawned.length, 1)
})
