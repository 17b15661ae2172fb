/**
 * The resident (lib/run/resident.ts, #22): on each new answer of an own agent's blocking query it
 * does what that network's watch run does, and notes the index for watch.sh; it ends, removing
 * its notes, for each of the reasons the module names. Own agents, Keystone and Masakari are
 * recorded stand-ins; the blocking query answers at once when its index is behind, else after a
 * short wait with the same index, as Consul does when its wait runs out.
 */
import t, { type Test } from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { appendFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { heartbeatPath, indexNotePath, runResident } from '../lib/run/resident.js'
import type { Fetch } from '../lib/openstack/masakari.js'
import { check, configYaml, fakeDeps, response, scriptedFetch, type Recorded, recordedFixture } from './helpers.js'

const token = recordedFixture('keystone-token-password')
const accepted = recordedFixture('masakari-202')
const AGENTS = { management: '127.0.0.1:18601', tenant: '127.0.0.1:18602', storage: '127.0.0.1:18603' }
type Status = 'passing' | 'critical'

/** The three clusters as the stand-in agents have them: per network, its index and its nodes' serfHealth. */
class Clusters {
  index = 500
  nodes: Record<string, Status> = { controller: 'passing', cmp1: 'passing', cmp2: 'passing' }
  /** The pulse check on the controller's node, in every answer while true. */
  pulse = true
  refused = false
  /** What a token without node:read gets: an empty list. */
  blind = false
  /** Agents that have refused a request since `refused` was set. */
  refusedBy = new Set<string>()
  set(node: string, status: Status) {
    this.nodes = { ...this.nodes, [node]: status }
    this.index++
  }
  body(): string {
    if (this.blind) return '[]'
    const checks: unknown[] = Object.entries(this.nodes).map(([n, s]) => check(n, s))
    if (this.pulse) checks.push(check('controller', 'passing', 'masakari-consul'))
    return JSON.stringify(checks)
  }
}

function standIns(rec: Recorded, c: Clusters): Fetch {
  return scriptedFetch(rec, async (url) => {
    if (url.endsWith('/auth/tokens')) return response(token.status, token.body, token.headers)
    if (!Object.values(AGENTS).some((a) => url.includes(a))) return response(accepted.status, accepted.body, accepted.headers)
    if (c.refused) {
      c.refusedBy.add(new URL(url).host)
      throw new Error(`connect ECONNREFUSED ${url}`)
    }
    if (url.endsWith('/v1/status/leader')) return response(200, '"127.0.0.1:8300"')
    if (url.endsWith('/v1/agent/members')) return response(200, [])
    if (url.includes('/v1/health/node/')) return response(200, [check(url.split('/').at(-1)!, 'passing')])
    if (url.includes('/v1/health/state/any')) {
      const asked = new URL(url).searchParams.get('index')
      // Consul's wait running out: the same index, after a while (short here).
      for (let i = 0; i < 5 && asked === String(c.index); i++) await new Promise((r) => setTimeout(r, 10))
      return response(200, c.body(), { 'X-Consul-Index': String(c.index) })
    }
    if (url.endsWith('/v1/health/state/critical'))
      return response(
        200,
        Object.entries(c.nodes)
          .filter(([, s]) => s === 'critical')
          .map(([n]) => check(n, 'critical')),
      )
    return response(404, 'not here')
  })
}

async function setup(t: Test) {
  const dir = t.testdir({ 'bundle.js': '// the bundle\n' })
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { consul: { agents: AGENTS, lock: { enabled: false } } }))
  const clusters = new Clusters()
  // Within the recorded token's hour; time moves on with each look at the clock (the agents-gone case).
  let clock = Date.parse(token.body.token.expires_at) - 50 * 60_000
  const deps = fakeDeps({ now: () => new Date(clock) })
  deps.fetch = async () => standIns(deps.rec, clusters)
  // Real but short pauses: the heartbeat and the retries come round quickly.
  deps.sleep = (ms) => new Promise((r) => setTimeout(r, Math.min(ms, 20)))
  const stop = new AbortController()
  const start = () => runResident(config, join(dir, 'bundle.js'), deps, stop.signal)
  const advance = (ms: number) => (clock += ms)
  return { dir, stateDir, config, clusters, deps, stop, start, advance }
}

const until = async (what: string, cond: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : undefined)
const posts = (rec: Recorded) => rec.requests.filter((r) => r.method === 'POST' && r.url.includes('/notifications'))
const logged = (rec: Recorded, msg: string) => rec.logFile.map((l) => JSON.parse(l)).filter((l) => l.msg === msg)

t.test('acts on each new index as the watch run would, notes the index, and not again on the same one', async (t) => {
  const s = await setup(t)
  const done = s.start()
  await until('every network answered once', () => Object.keys(AGENTS).every((n) => read(indexNotePath(s.stateDir, n)) === '500\n'))
  t.match(read(heartbeatPath(s.stateDir)), new RegExp(`^${process.pid}\\n\\d+\\n$`), 'the heartbeat: pid, uptime')
  t.ok(existsSync(join(s.stateDir, 'snapshots', 'storage.json')), "the storage watch run's snapshot, written by the resident")
  s.clusters.set('cmp1', 'critical')
  await until('the STOPPED sent', () => posts(s.deps.rec).length === 1)
  await until('the new index noted', () => Object.keys(AGENTS).every((n) => read(indexNotePath(s.stateDir, n)) === '501\n'))
  const evaluated = logged(s.deps.rec, 'evaluated').length
  // The same index answered again and again (the wait running out): nothing more.
  const asked = s.deps.rec.requests.length
  await until('the agents asked again', () => s.deps.rec.requests.length > asked + 6)
  t.equal(logged(s.deps.rec, 'evaluated').length, evaluated, 'no run on an index already handled')
  t.equal(posts(s.deps.rec).length, 1, 'one STOPPED')
  const decided = logged(s.deps.rec, 'decision').find((l) => l.action === 'STOPPED')
  t.match(decided, { component: /^resident\/(management|tenant|storage)$/, host: 'cmp1' }, "decided by the resident's run")
  s.stop.abort()
  t.equal(await done, 0)
  t.notOk(existsSync(heartbeatPath(s.stateDir)), 'its heartbeat note removed')
  t.notOk(existsSync(indexNotePath(s.stateDir, 'storage')), 'its index notes removed')
  t.match(logged(s.deps.rec, 'resident: ended').at(-1), { why: 'asked to stop' })
})

t.test('a second resident while one runs: it returns at once, leaving the first', async (t) => {
  const s = await setup(t)
  const first = s.start()
  await until('the first heartbeat', () => existsSync(heartbeatPath(s.stateDir)))
  t.equal(await runResident(s.config, join(s.dir, 'bundle.js'), s.deps, new AbortController().signal), 0)
  t.ok(existsSync(heartbeatPath(s.stateDir)), "the first one's heartbeat stays")
  s.stop.abort()
  t.equal(await first, 0)
})

t.test('ends, and says why, when…', async (t) => {
  const cases: Array<[string, (s: Awaited<ReturnType<typeof setup>>) => Promise<void>, RegExp]> = [
    ['the config changed', (s) => appendFile(s.config, '# edited\n'), /config\.yaml changed$/],
    ['the bundle changed (an upgrade)', (s) => appendFile(join(s.dir, 'bundle.js'), '// v2\n'), /bundle\.js changed$/],
    ['its heartbeat note was removed', (s) => rm(heartbeatPath(s.stateDir)), /resident was removed$/],
    ['another resident wrote the heartbeat note', (s) => writeFile(heartbeatPath(s.stateDir), '1\n1\n'), /is another resident's$/],
    [
      'the pulse check is gone from its node (uninstalled)',
      async (s) => {
        s.clusters.pulse = false
        s.clusters.index++
      },
      /^the pulse check masakari-consul is no longer registered on controller \(uninstalled\)$/,
    ],
    [
      'no own agent answered for a minute',
      async (s) => {
        s.clusters.refused = true
        // Once every agent refuses (no answer still on its way), a minute passes.
        await until('every agent refusing', () => s.clusters.refusedBy.size === 3)
        s.advance(61_000)
      },
      /^no own agent answered for 60 s \(\w+: .*ECONNREFUSED/,
    ],
  ]
  for (const [what, cause, why] of cases) {
    const s = await setup(t)
    const done = s.start()
    await until('every network answered once', () => Object.keys(AGENTS).every((n) => existsSync(indexNotePath(s.stateDir, n))))
    // Made again until it ends: a heartbeat written just after the note was looked at puts the
    // note back (the next look sees it), as a real removal racing a heartbeat would.
    let ended = false
    void done.finally(() => {
      ended = true
    })
    while (!ended) {
      await cause(s)
      await new Promise((r) => setTimeout(r, 30))
    }
    t.equal(await done, 0, `${what}: ended, exit 0`)
    t.match(logged(s.deps.rec, 'resident: ended').at(-1), { why }, `${what}: says why`)
    t.notOk(existsSync(join(s.stateDir, 'failed-resident')), `${what}: not a failure`)
  }
})

t.test('a run of its own that fails (a token that cannot read nodes): failed-resident at warning until that run succeeds', async (t) => {
  const s = await setup(t)
  s.clusters.blind = true
  const done = s.start()
  const note = join(s.stateDir, 'failed-resident')
  await until('the failure noted', () => existsSync(note))
  t.match(
    read(note),
    /^warning\nthe resident's \w+ run failed at .* \(tried again every 15 s\): the \w+ watch's payload lists no check at all/,
  )
  await until('every network answered once', () => Object.keys(AGENTS).every((n) => existsSync(indexNotePath(s.stateDir, n))))
  t.ok(existsSync(note), 'it stays while the runs fail (the watch runs go on meanwhile)')
  s.clusters.blind = false
  await until('the note cleared once the runs succeed again', () => !existsSync(note))
  t.ok(existsSync(join(s.stateDir, 'snapshots', 'storage.json')), 'and the run recorded')
  s.stop.abort()
  t.equal(await done, 0)
})

t.test('a fault of its own (here: no HTTP client): it fails, writes failed-resident (warning, with the uptime), exit 70', async (t) => {
  const s = await setup(t)
  s.deps.fetch = async () => {
    throw new Error('cannot load node-fetch')
  }
  t.equal(await s.start(), 70)
  t.match(
    read(join(s.stateDir, 'failed-resident')),
    /^warning\nthe resident failed at .*: following \w+: Error: cannot load node-fetch; .*\n\d+\n$/,
  )
  t.notOk(existsSync(heartbeatPath(s.stateDir)), 'its heartbeat note removed')
})
