/** evaluate.js `replay` in-process: the table, --json, --explain, --dry-run. */
import t, { type Test } from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main as handler } from '../handlers/checks-handler.js'
import { main as evaluate } from '../handlers/operator-cli.js'
import { EXIT } from '../lib/run/cli.js'
import { configYaml, fakeDeps, payload, readState, GUARDS_OFF } from './helpers.js'

async function setup(t: Test, guards: object = GUARDS_OFF) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { guards }))
  const up = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
  for (const n of ['management', 'tenant']) await handler(['--network', n, '--config', config], fakeDeps({ stdin: up }))
  // storage arrives with cmp1 down, through the handler's dry run: nothing recorded yet
  await handler(['--network', 'storage', '--config', config], fakeDeps({ stdin: up }))
  return { stateDir, config }
}

t.test('replay: table and JSON without --dry-run act like a handler run', async (t) => {
  const { stateDir, config } = await setup(t)
  await writeFile(
    join(stateDir, 'snapshots', 'storage.json'),
    JSON.stringify({
      version: 1,
      network: 'storage',
      consulIndex: '99',
      receivedAt: '2026-11-25T12:00:00.000Z',
      nodes: { controller: 'up', cmp1: 'down', cmp2: 'up' },
    }),
  )
  const dry = fakeDeps()
  const before = await readState(stateDir)
  t.equal(await evaluate(['replay', '--config', config, '--dry-run'], dry), 0)
  const table = dry.rec.stdout.join('')
  t.match(table, /HOST\s+MANAGEMENT\s+TENANT\s+STORAGE\s+ROW\s+ACTION/)
  t.match(table, /cmp1\s+up\s+up\s+down\s+1\s+would send STOPPED/)
  t.match(table, /notifications that would be sent \(dry run: nothing sent or changed\)/)
  t.equal(await readState(stateDir), before, 'dry run changed nothing')
  t.same(dry.rec.spawned, [])

  const live = fakeDeps()
  t.equal(await evaluate(['replay', '--config', config, '--json'], live), 0)
  const report = JSON.parse(live.rec.stdout.join(''))
  t.match(report, {
    dryRun: false,
    snapshots: { storage: { consulIndex: '99', nodes: 3 } },
    notifications: [{ hostname: 'cmp1', payload: { event: 'STOPPED' } }],
  })
  t.match(
    report.hosts.find((h: { host: string }) => h.host === 'cmp1'),
    { row: 1, action: 'STOPPED', guard: null, pending: [{ event: 'STOPPED', attempts: 0 }] },
  )
  t.same(live.rec.spawned, [config], 'the worker is started as a handler would')
  t.equal(JSON.parse((await readState(stateDir))!).outbox.length, 1)
})

t.test('replay --explain HOST: states with time and index, rows, the guard and until when', async (t) => {
  const { stateDir, config } = await setup(t, { ...GUARDS_OFF, hold: { recovery: 30, back: 5 } })
  await writeFile(
    join(stateDir, 'snapshots', 'storage.json'),
    JSON.stringify({
      version: 1,
      network: 'storage',
      consulIndex: '99',
      receivedAt: '2026-11-25T12:00:00.000Z',
      nodes: { controller: 'up', cmp1: 'down', cmp2: 'up' },
    }),
  )
  await evaluate(['replay', '--config', config], fakeDeps())
  const text = fakeDeps()
  t.equal(await evaluate(['replay', '--config', config, '--dry-run', '--explain', 'cmp1'], text), 0)
  const out = text.rec.stdout.join('')
  t.match(out, /storage\s+down\s+\(snapshot of 2026-11-25T12:00:00.000Z, consul index 99, down since 2026-11-25T12:00:00.000Z\)/)
  t.match(out, /→ row 1: \[up, up, down\] recovery\s+\(matches\)/)
  t.match(out, /held back by: hold until 2026-11-25T12:00:30.000Z/)
  t.match(out, /self-isolation guard: not tripped/)
  const json = fakeDeps()
  await evaluate(['replay', '--config', config, '--dry-run', '--explain', 'cmp1', '--json'], json)
  t.match(JSON.parse(json.rec.stdout.join('')), {
    host: 'cmp1',
    decision: { action: 'none', guard: { kind: 'hold' } },
    rows: [{ row: 1, matches: true }],
  })
  const unknown = fakeDeps()
  t.equal(await evaluate(['replay', '--config', config, '--explain', 'nosuch'], unknown), EXIT.usage)
  t.match(unknown.rec.stderr.join(''), /no host named "nosuch".*hosts: cmp1, cmp2, controller/)
})

t.test('bad config for evaluate.js', async (t) => {
  const dir = t.testdir({ 'config.yaml': 'masakari: {}\n' })
  const deps = fakeDeps()
  t.equal(await evaluate(['--config', join(dir, 'config.yaml')], deps), EXIT.config)
  t.match(deps.rec.stderr.join(''), /evaluate: error: invalid config .*masakari\.authUrl/s)
})

t.test('--config without a value: usage error', async (t) => {
  const deps = fakeDeps()
  t.equal(await evaluate(['--dry-run', '--config'], deps), EXIT.usage)
  t.match(deps.rec.stderr.join(''), /Not enough arguments following: config/)
})
