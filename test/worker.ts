/** The detached follow-up process: delivery, and a hold that fires with no new Consul event. */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
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
