/**
 * The pulse's deep look makes ready what a failure's first POST would wait for (issue #22,
 * lib/run/warm-up.ts): the Keystone token and Masakari's host list, renewed ahead of need, best
 * effort, nothing kept thrown away when Keystone or Masakari does not answer.
 */
import t, { type Test } from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import type { Fetch, HttpResponse } from '../lib/base/http.js'
import { HOST_LIST_TTL_S } from '../lib/decide/host-list.js'
import { loadMonitor } from '../lib/run/load-monitor.js'
import { warmUp } from '../lib/run/warm-up.js'
import { hostListPath } from '../lib/state/paths.js'
import { configYaml, fakeDeps, recordedFixture, response } from './helpers.js'

const token = recordedFixture('keystone-token-password')
const ENDPOINT = 'http://127.0.0.1:15868/v1/proj'
/** Minutes before the recorded token's expiry (it is issued for an hour). */
const before = (minutes: number) => () => new Date(Date.parse(token.body.token.expires_at) - minutes * 60_000)

/** Keystone and a Masakari with one segment holding cmp1; `down`: both answer 503. */
function cloud(requests: string[], opts: { down?: boolean } = {}): Fetch {
  return async (url: string): Promise<HttpResponse> => {
    requests.push(url.replace(ENDPOINT, '…'))
    if (opts.down) return response(503, 'Service Unavailable')
    if (url.endsWith('/auth/tokens')) return response(token.status, token.body, token.headers)
    if (url.endsWith('/segments')) return response(200, { segments: [{ uuid: 's1', id: 1 }] })
    if (url.includes('/segments?marker')) return response(200, { segments: [] })
    if (url.endsWith('/segments/s1/hosts')) return response(200, { hosts: [{ uuid: 'h1', name: 'cmp1', id: 1 }] })
    return response(200, { hosts: [] })
  }
}

async function setup(t: Test, masakari: Record<string, unknown> = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { masakari: { endpoint: ENDPOINT, ...masakari } }))
  const warm = async (now: () => Date, fetch: Fetch) => {
    const deps = fakeDeps({ now, fetch })
    const warmed = await warmUp(await loadMonitor(config, deps, 'test'), deps)
    return { warmed, lines: deps.rec.stderr.map((l) => JSON.parse(l) as { level: string; msg: string }) }
  }
  const kept = async () => JSON.parse(await readFile(join(stateDir, 'token.json'), 'utf8')) as { token: string; expiresAt: string }
  return { stateDir, config, warm, kept }
}

t.test('no token kept: one is had and kept; then, good past the next deep look, it is kept as it is', async (t) => {
  const h = await setup(t, { lookupHosts: false })
  const first: string[] = []
  t.same((await h.warm(before(50), cloud(first))).warmed, { token: 'renewed' })
  t.same(first, ['http://127.0.0.1:35000/v3/auth/tokens'])
  t.equal((await h.kept()).token, token.headers['X-Subject-Token'] ?? token.headers['x-subject-token'])
  const second: string[] = []
  t.same((await h.warm(before(45), cloud(second))).warmed, { token: 'kept' })
  t.same(second, [], '45 min left: no Keystone request')
})

t.test('a token that would expire before the next deep look is renewed, while still good', async (t) => {
  const h = await setup(t, { lookupHosts: false })
  await h.warm(before(50), cloud([]))
  const requests: string[] = []
  t.same((await h.warm(before(35), cloud(requests))).warmed, { token: 'renewed' })
  t.same(requests, ['http://127.0.0.1:35000/v3/auth/tokens'], '35 min left: renewed')
})

t.test('Keystone does not answer: said, and the kept token stays for the failure to use', async (t) => {
  const h = await setup(t, { lookupHosts: false })
  await h.warm(before(50), cloud([]))
  const keptBefore = await h.kept()
  const { warmed, lines } = await h.warm(before(35), cloud([], { down: true }))
  t.same(warmed, { token: 'failed' })
  t.match(
    lines.filter((l) => l.level === 'warn'),
    [{ msg: /cannot renew the Keystone token ahead of need/ }],
  )
  t.same(await h.kept(), keptBefore, 'token.json unchanged')
})

t.test('the host list: asked when none is kept or it is past its TTL, not when fresh', async (t) => {
  const h = await setup(t)
  const first: string[] = []
  t.same((await h.warm(before(50), cloud(first))).warmed, { token: 'renewed', hostList: 'renewed' })
  t.ok(first.includes('…/segments/s1/hosts'), 'every segment asked')
  t.same(JSON.parse(await readFile(hostListPath(h.stateDir), 'utf8')).hosts, ['cmp1'])
  const fresh: string[] = []
  t.same((await h.warm(before(49), cloud(fresh))).warmed, { token: 'kept', hostList: 'kept' })
  t.same(fresh, [], 'a list a minute old: Masakari not asked')
  const old: string[] = []
  const past = before(50 - HOST_LIST_TTL_S / 60 - 1)
  t.same((await h.warm(past, cloud(old))).warmed, { token: 'kept', hostList: 'renewed' })
  t.ok(old.includes('…/segments'), 'past its TTL: asked again')
})

t.test('Masakari does not answer: said, and the kept host list stays', async (t) => {
  const h = await setup(t)
  await h.warm(before(50), cloud([]))
  const listBefore = await readFile(hostListPath(h.stateDir), 'utf8')
  const past = before(50 - HOST_LIST_TTL_S / 60 - 1)
  const down = cloud([], { down: true })
  const { warmed, lines } = await h.warm(past, down)
  t.same(warmed, { token: 'kept', hostList: 'failed' })
  t.match(
    lines.filter((l) => l.level === 'warn'),
    [{ msg: /cannot look up Masakari's hosts ahead of need/ }],
  )
  t.equal(await readFile(hostListPath(h.stateDir), 'utf8'), listBefore)
})

t.test("the pulse's deep look warms up and says so in its line", async (t) => {
  const h = await setup(t, { lookupHosts: false })
  const deps = fakeDeps({ now: before(50), fetch: cloud([]) })
  t.equal(await main(['--pulse', '--config', h.config], deps), 0)
  const line = deps.rec.stderr.map((l) => JSON.parse(l)).find((l) => l.msg === 'pulse: deep look')
  t.match(line, { level: 'info', warmed: { token: 'renewed' } })
  t.ok((await h.kept()).token)
  // pulse.sh takes a deep look while this note is missing (right after an install).
  const note = JSON.parse(await readFile(join(h.stateDir, 'warmed'), 'utf8'))
  t.same(note, { at: before(50)().toISOString(), warmed: { token: 'renewed' } }, 'the warmed note says when and what')
})
