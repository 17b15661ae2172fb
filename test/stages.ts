/**
 * The bench's stage timestamps (issue #22): off unless MASAKARI_CONSUL_STAGES names a file, and
 * then one JSON line per run with every stage from the bundle's entry to the POST's answer.
 */
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { installStages, STAGES_ENV, stage, uninstallStages } from '../lib/base/stages.js'
import type { Fetch } from '../lib/base/http.js'
import { stagesToFile, type StagesFileDeps } from '../lib/run/stages-file.js'
import { configYaml, fakeDeps, payload, recordedFixture, response } from './helpers.js'

t.afterEach(() => uninstallStages())

/** What stagesToFile is given, recording what it does. */
function fileDeps(env: Record<string, string>, append: StagesFileDeps['append'] = () => {}) {
  const exits: Array<() => void> = []
  const written: Array<[string, string]> = []
  const deps: StagesFileDeps = {
    env,
    append: (file, text) => {
      append(file, text)
      written.push([file, text])
    },
    onExit: (fn) => exits.push(fn),
    origin: () => 1_700_000_000_000.123,
    node: () => ({ nodeStart: 1.5, bootstrapComplete: 20.25 }),
    argv: ['--network', 'storage'],
  }
  return { deps, exits, written }
}

t.test('not asked: no recorder, nothing noted, nothing written at exit', async (t) => {
  const { deps, exits } = fileDeps({})
  t.equal(stagesToFile(deps), false)
  stage('config loaded')
  t.same(exits, [], 'no exit handler')
  t.same(installStages().marks, [], 'the mark before was dropped')
})

t.test('asked: each stage noted in order, one JSON line appended at exit', async (t) => {
  const { deps, exits, written } = fileDeps({ [STAGES_ENV]: '/tmp/stages.jsonl' })
  t.equal(stagesToFile(deps), true)
  stage('config loaded')
  stage('POST answered')
  t.equal(exits.length, 1)
  exits[0]!()
  t.equal(written.length, 1)
  const [file, text] = written[0]!
  t.equal(file, '/tmp/stages.jsonl')
  t.ok(text.endsWith('\n'))
  const line = JSON.parse(text)
  t.match(line, { origin: 1_700_000_000_000.12, argv: ['--network', 'storage'], node: { start: 1.5, bootstrapComplete: 20.25 } })
  t.same(
    line.stages.map(([name]: [string]) => name),
    ['config loaded', 'POST answered'],
  )
  const [a, b] = line.stages.map(([, ms]: [string, number]) => ms)
  t.ok(a > 0 && b >= a, 'ms since the time origin, in order')
})

t.test('a line that cannot be written is dropped: the run is not failed by it', async (t) => {
  const { deps, exits } = fileDeps({ [STAGES_ENV]: '/nonexistent/dir/stages' }, () => {
    throw new Error('ENOENT')
  })
  stagesToFile(deps)
  t.doesNotThrow(() => exits[0]!())
})

t.test('a lone failure sent by the handler: every stage from config to the POST, in order', async (t) => {
  const token = recordedFixture('keystone-token-password')
  const accepted = recordedFixture('masakari-202')
  const now = () => new Date(Date.parse(token.body.token.expires_at) - 50 * 60_000)
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { masakari: { lookupHosts: false } }))
  const allUp = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
  for (const n of ['management', 'tenant', 'storage'])
    t.equal(await main(['--network', n, '--config', config], fakeDeps({ stdin: allUp, now })), 0)
  const fetch: Fetch = async (url) =>
    url.endsWith('/auth/tokens')
      ? response(token.status, token.body, token.headers)
      : response(accepted.status, accepted.body, accepted.headers)
  const recorder = installStages()
  const down = payload({ controller: 'passing', cmp1: 'critical', cmp2: 'passing' })
  t.equal(await main(['--network', 'storage', '--config', config], fakeDeps({ stdin: down, now, fetch })), 0)
  const names = recorder.marks.map(([name]) => name)
  t.same(names, [
    'config loaded',
    'payload parsed',
    'state.json read',
    'evaluated',
    'own agents, servers, host list answered',
    'state.json written',
    'recorded',
    'notes written',
    'worker lock taken',
    'state.json read',
    'outbox read',
    'Keystone token',
    'POST answered',
    'state.json read',
    'state.json written',
    'handed off',
  ])
  const times = recorder.marks.map(([, ms]) => ms)
  t.same(
    times,
    [...times].sort((a, b) => a - b),
    'in time order',
  )
})
