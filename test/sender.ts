/**
 * The sender lock's adoption, with a recording fetch: when acquiring fails and the lock is
 * held by a session whose value names our host, it is ours only if Consul says that session
 * belongs to our own node (test/coordination.ts runs the lock against a real agent).
 */
import t, { type Test } from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { consulAgent } from '../lib/consul/consul-api.js'
import { LockSchema, senderLock } from '../lib/consul/sender.js'
import { fakeDeps, response, scriptedFetch } from './helpers.js'

const config = LockSchema.parse({})
const held = (session: string, host: string) => [
  { Key: 'masakari-consul/sender', Session: session, Value: Buffer.from(JSON.stringify({ host, since: 'x' })).toString('base64') },
]

/**
 * Our session file holds `mine` (on node `ourNode`); the lock is held by `theirs` (on node
 * `theirNode`) with host `ctl` in its value, as a racing run of ours or a namesake controller
 * would leave it. Our acquire answers false.
 */
async function race(t: Test, theirNode: string | undefined) {
  const stateDir = t.testdir({})
  await writeFile(join(stateDir, 'session.json'), JSON.stringify({ id: 'mine' }))
  const rec = fakeDeps().rec
  const nodes: Record<string, string | undefined> = { mine: 'ctl-a', theirs: theirNode }
  const fetch = scriptedFetch(rec, (url, method) => {
    const path = url.replace('http://127.0.0.1:8500', '')
    if (path.startsWith('/v1/kv/masakari-consul/sender?acquire=') && method === 'PUT') return response(200, 'false')
    if (path === '/v1/kv/masakari-consul/sender?consistent') return response(200, held('theirs', 'ctl'))
    const info = /^\/v1\/session\/info\/(\w+)$/.exec(path)
    if (info) {
      const node = nodes[info[1]!]
      return response(200, node === undefined ? [] : [{ ID: info[1], Node: node, Checks: ['serfHealth'] }])
    }
    return response(404, 'no')
  })
  const agent = consulAgent('127.0.0.1:8500', { ssl: false, sslVerify: true }, fetch, undefined, 1)
  const role = await senderLock(agent, config, 'ctl', stateDir).acquire()
  const file = JSON.parse(await readFile(join(stateDir, 'session.json'), 'utf8')) as { id: string }
  return { role, file, asked: rec.requests.map((r) => `${r.method} ${r.url.replace('http://127.0.0.1:8500', '')}`) }
}

t.test('a lock held by a session of our own node (two runs here raced) is adopted', async (t) => {
  const { role, file, asked } = await race(t, 'ctl-a')
  t.same(role, { sender: true, session: 'theirs', taken: true })
  t.equal(file.id, 'theirs', 'the session file now names it')
  t.ok(asked.includes('GET /v1/session/info/theirs') && asked.includes('GET /v1/session/info/mine'), asked.join(', '))
})

t.test('a lock held by another node whose value names the same host (a namesake controller) is not adopted', async (t) => {
  const { role, file } = await race(t, 'ctl-b')
  t.match(role, { sender: false, holder: 'ctl', why: /ctl holds the sender lock/ })
  t.equal(file.id, 'mine', 'our session file is left as it was')
})

t.test('a lock whose session Consul no longer knows is not adopted', async (t) => {
  const { role } = await race(t, undefined)
  t.match(role, { sender: false })
})
