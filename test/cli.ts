/** The masakari-consul command in-process: status (the default), explain, replay, outbox, validate, the colour rule. */
import t, { type Test } from 'tap'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { main as handler } from '../handlers/checks-handler.js'
import { main as evaluate } from '../handlers/operator-cli.js'
import { EXIT } from '../lib/run/cli.js'
import { outboxView, refusal, requeue } from '../lib/commands/outbox-command.js'
import { colourWanted, paint } from '../lib/decide/report.js'
import { emptyState, type StoreState } from '../lib/decide/state-shape.js'
import { type CheckLine, formatCheckLine, checkLogFile, checkMetricsFile, checkStateDir, validateExit } from '../lib/commands/validate.js'
import { check, configYaml, fakeDeps, payload, response, scriptedFetch, keystoneAnswer } from './helpers.js'

/** Three networks with cmp1 down on storage, recorded by the handler; nothing decided yet. */
async function setup(t: Test, extra: Record<string, unknown> = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, extra))
  const up = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
  for (const n of ['management', 'tenant', 'storage']) await handler(['--network', n, '--config', config], fakeDeps({ stdin: up }))
  const down = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'critical' })
  return { dir, stateDir, config, down }
}

/** Every file under dir with its bytes and mtime: what "changed nothing" means. */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const path = join(e.parentPath, e.name)
    const s = await stat(path)
    out[path] = `${s.mtimeMs} ${e.isFile() ? await readFile(path, 'utf8') : 'dir'}`
  }
  return out
}

t.test('status is read-only: the table of a decision to come, nothing recorded, no worker', async (t) => {
  const { stateDir, config, down } = await setup(t)
  // storage reports cmp2 down, written by the handler's dry run: the snapshot only.
  await writeFile(
    join(stateDir, 'snapshots', 'storage.json'),
    JSON.stringify({
      version: 1,
      network: 'storage',
      consulIndex: '7',
      receivedAt: '2026-11-25T12:00:00.000Z',
      nodes: { controller: 'up', cmp1: 'up', cmp2: 'down' },
    }),
  )
  t.ok(down)
  const before = await tree(stateDir)
  const deps = fakeDeps()
  t.equal(await evaluate(['status', '--config', config], deps), EXIT.ok)
  t.match(deps.rec.stdout.join(''), /cmp2\s+up\s+up\s+down\s+1\s+would send STOPPED/)
  t.notOk(deps.rec.stdout.join('').includes('\x1b['), 'no colour when stdout is not a terminal')
  t.same(deps.rec.spawned, [], 'no worker started')
  t.same(deps.rec.logFile, [], 'nothing logged')
  t.same(await tree(stateDir), before, 'the state directory is byte for byte and mtime for mtime as it was')

  const json = fakeDeps()
  t.equal(await evaluate(['status', '--json', '--config', config], json), EXIT.ok)
  t.match(JSON.parse(json.rec.stdout.join('')), { dryRun: true, notifications: [{ hostname: 'cmp2' }] })

  const coloured = fakeDeps()
  t.equal(await evaluate(['status', '--color', 'always', '--config', config], coloured), EXIT.ok)
  t.ok(coloured.rec.stdout.join('').includes('\x1b[31mdown\x1b[0m'), 'down in red')
  t.same(await tree(stateDir), before)
})

/** setup() with cmp2 just reported down on storage: a replay would record a STOPPED and start a worker. */
async function cmp2Down(t: Test) {
  const s = await setup(t)
  await writeFile(
    join(s.stateDir, 'snapshots', 'storage.json'),
    JSON.stringify({
      version: 1,
      network: 'storage',
      consulIndex: '7',
      receivedAt: '2026-11-25T12:00:00.000Z',
      nodes: { controller: 'up', cmp1: 'up', cmp2: 'down' },
    }),
  )
  return s
}

t.test('the bare command is status: it records nothing and starts no worker', async (t) => {
  const { stateDir, config } = await cmp2Down(t)
  const before = await tree(stateDir)
  const deps = fakeDeps()
  t.equal(await evaluate(['--config', config], deps), EXIT.ok)
  t.match(deps.rec.stdout.join(''), /cmp2\s+up\s+up\s+down\s+1\s+would send STOPPED/, 'the table, as status shows it')
  t.same(deps.rec.spawned, [], 'no worker started')
  t.same(deps.rec.logFile, [], 'nothing logged to logFile')
  t.same(await tree(stateDir), before, 'the state directory as it was: no decision recorded')
})

t.test('old command lines (--dry-run, --dry-run --explain HOST) show status and explain, read-only', async (t) => {
  const { stateDir, config } = await cmp2Down(t)
  const before = await tree(stateDir)
  const json = fakeDeps()
  t.equal(await evaluate(['--config', config, '--dry-run', '--json'], json), EXIT.ok)
  t.match(JSON.parse(json.rec.stdout.join('')), { dryRun: true, notifications: [{ hostname: 'cmp2' }] })
  const explain = fakeDeps()
  t.equal(await evaluate(['--config', config, '--dry-run', '--explain', 'cmp2'], explain), EXIT.ok)
  t.match(explain.rec.stdout.join(''), /^host cmp2\n/)
  const bare = fakeDeps()
  t.equal(await evaluate(['--config', config, '--explain', 'cmp2'], bare), EXIT.ok, '--explain without --dry-run: still read-only')
  t.same([...json.rec.spawned, ...explain.rec.spawned, ...bare.rec.spawned], [], 'no worker started')
  t.same(await tree(stateDir), before)
})

t.test('replay records and starts the worker when it is named', async (t) => {
  const { stateDir, config } = await cmp2Down(t)
  const replay = fakeDeps()
  t.equal(await evaluate(['replay', '--config', config], replay), EXIT.ok)
  t.same(replay.rec.spawned, [config])
  t.match(JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8')), { outbox: [{ host: 'cmp2' }] })
})

t.test('explain HOST is the read-only --explain; an unknown host is a usage error', async (t) => {
  const { stateDir, config } = await setup(t)
  const before = await tree(stateDir)
  const deps = fakeDeps()
  t.equal(await evaluate(['explain', 'cmp1', '--config', config], deps), EXIT.ok)
  t.match(deps.rec.stdout.join(''), /^host cmp1\n/)
  t.same(await tree(stateDir), before)
  const missing = fakeDeps()
  t.equal(await evaluate(['explain', '--config', config], missing), EXIT.usage)
  const unknown = fakeDeps()
  t.equal(await evaluate(['explain', 'nosuch', '--config', config], unknown), EXIT.usage)
  t.match(unknown.rec.stderr.join(''), /no host named "nosuch"/)
})

t.test('--worker (and its former name --deliver) still runs the worker, whatever the default command', async (t) => {
  for (const flag of ['--worker', '--deliver']) {
    const { stateDir, config } = await setup(t)
    // A notification long past its expiry: only a worker's delivery pass gives it up.
    const state = emptyState()
    state.outbox.push({
      id: 'old',
      host: 'cmp1',
      notification: {
        type: 'COMPUTE_HOST',
        hostname: 'cmp1',
        generated_time: '2026-11-25T10:00:00.000Z',
        payload: { event: 'STOPPED', cluster_status: 'OFFLINE', host_status: 'NORMAL' },
      },
      reason: 'test',
      decidedAt: '2026-11-25T10:00:00.000Z',
      attempts: 0,
      nextAttemptAt: '2026-11-25T10:00:00.000Z',
    })
    await writeFile(join(stateDir, 'state.json'), JSON.stringify(state))
    t.equal(await evaluate([flag, '--config', config], fakeDeps()), EXIT.ok)
    const after = JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8'))
    t.same(after.outbox, [], `${flag}: the worker ran its delivery pass`)
    t.match(after.ledger.cmp1, { unsent: { id: 'old', outcome: 'expired' } })
  }
})

t.test('an unknown command is a usage error', async (t) => {
  const deps = fakeDeps()
  t.equal(await evaluate(['statuz'], deps), EXIT.usage)
  t.match(deps.rec.stderr.join(''), /Unknown argument: statuz/)
})

t.test('colour: a terminal and NO_COLOR unset or empty', async (t) => {
  const table: Array<[boolean | undefined, Record<string, string>, boolean]> = [
    [true, {}, true],
    [true, { NO_COLOR: '' }, true],
    [true, { NO_COLOR: '1' }, false],
    [false, {}, false],
    [undefined, {}, false],
  ]
  for (const [tty, env, want] of table) t.equal(colourWanted(tty, env), want, `${tty} ${JSON.stringify(env)}`)
  t.equal(paint('down   ', true), '\x1b[31mdown\x1b[0m   ', 'padding stays outside the colour')
  t.equal(paint('would send STOPPED ', true), '\x1b[1;31mwould send STOPPED\x1b[0m ')
  t.equal(paint('1  ', true), '1  ')
  t.equal(paint('down', false), 'down')
})

const NOW = new Date('2026-11-25T12:00:00.000Z')

function expiredState(phase: 'recovery' | 'normal', event: 'STOPPED' | 'STARTED' = 'STOPPED'): StoreState {
  const s = emptyState()
  s.ledger.cmp1 = {
    firstSeenAt: '2026-11-25T10:00:00.000Z',
    phase,
    vector: 'management=up tenant=up storage=down',
    ...(event === 'STARTED'
      ? {
          notified: {
            id: 'n0',
            event: 'STOPPED',
            outcome: 'accepted',
            at: '2026-11-25T10:30:00.000Z',
            generatedTime: '2026-11-25T10:29:59.000Z',
          },
        }
      : {}),
    unsent: {
      id: 'n1',
      event,
      outcome: 'expired',
      at: '2026-11-25T11:10:00.000Z',
      generatedTime: '2026-11-25T11:00:00.000Z',
      message: 'ECONNREFUSED',
    },
  }
  return s
}

t.test('outbox retry: which expired notifications may go again', async (t) => {
  const queued = requeue(expiredState('recovery'), ['n1'], NOW)
  t.same(queued.requeued, ['n1 (cmp1 STOPPED)'])
  t.same(queued.refused, [])
  t.match(queued.next.outbox, [
    {
      id: 'n1',
      host: 'cmp1',
      decidedAt: NOW.toISOString(),
      nextAttemptAt: NOW.toISOString(),
      attempts: 0,
      notification: {
        hostname: 'cmp1',
        generated_time: '2026-11-25T11:00:00.000Z',
        payload: { event: 'STOPPED', cluster_status: 'OFFLINE' },
      },
    },
  ])
  t.equal(queued.next.ledger.cmp1?.unsent, undefined, 'no longer listed as expired')
  t.same(outboxView(queued.next, NOW, 600).expired, [])

  const back = requeue(expiredState('normal'), ['n1'], NOW)
  t.same(back.requeued, [])
  t.match(back.refused, [/no longer in a recovery row.*would evacuate a running host/])
  t.same(back.next.outbox, [])

  t.equal(refusal(expiredState('normal', 'STARTED').ledger.cmp1!, 'STARTED', []), undefined, 'a STARTED after a held STOPPED, host back')
  t.match(refusal(expiredState('recovery', 'STARTED').ledger.cmp1!, 'STARTED', []), /not back to all-up/)
  const noStopped = { ...expiredState('normal', 'STARTED').ledger.cmp1!, notified: undefined }
  t.match(refusal(noStopped, 'STARTED', []), /no STOPPED/)
  const newer = requeue(queued.next, ['n1'], NOW)
  t.same(newer.requeued, [], 'nothing expired left to requeue')
})

t.test('outbox lists pending (with expiry) and expired; retry requeues under the lock and starts the worker', async (t) => {
  const { stateDir, config } = await setup(t)
  const state = expiredState('recovery')
  state.outbox.push({
    id: 'p1',
    host: 'cmp2',
    notification: {
      type: 'COMPUTE_HOST',
      hostname: 'cmp2',
      generated_time: '2026-11-25T11:55:00.000Z',
      payload: { event: 'STOPPED', cluster_status: 'OFFLINE', host_status: 'NORMAL' },
    },
    reason: 'matched row 1',
    decidedAt: '2026-11-25T11:55:00.000Z',
    attempts: 3,
    nextAttemptAt: '2026-11-25T12:00:10.000Z',
    lastError: 'GET … 503',
  })
  await writeFile(join(stateDir, 'state.json'), JSON.stringify(state))
  const list = fakeDeps()
  t.equal(await evaluate(['outbox', '--config', config], list), EXIT.ok)
  const text = list.rec.stdout.join('')
  t.match(
    text,
    /pending \(1\):\n {2}p1 {2}cmp2 {2}STOPPED {2}decided 2026-11-25T11:55:00.000Z, 3 attempts, next 2026-11-25T12:00:10.000Z, expires 2026-11-25T12:05:00.000Z; last error: GET … 503/,
  )
  t.match(text, /expired undelivered \(1\):\n {2}n1 {2}cmp1 {2}STOPPED {2}expired 2026-11-25T11:10:00.000Z: ECONNREFUSED/)
  const json = fakeDeps()
  await evaluate(['outbox', '--json', '--config', config], json)
  t.match(JSON.parse(json.rec.stdout.join('')), { pending: [{ id: 'p1', overdue: false }], expired: [{ id: 'n1', host: 'cmp1' }] })

  const usage = fakeDeps()
  t.equal(await evaluate(['outbox', 'retry', '--config', config], usage), EXIT.usage, 'neither an ID nor --all')
  const wrong = fakeDeps()
  t.equal(await evaluate(['outbox', 'retry', 'nosuch', '--config', config], wrong), EXIT.usage)
  t.match(wrong.rec.stderr.join(''), /no expired notification nosuch \(expired: n1\)/)

  const retry = fakeDeps()
  t.equal(await evaluate(['outbox', 'retry', 'n1', '--config', config], retry), EXIT.ok)
  t.match(retry.rec.stdout.join(''), /requeued n1 \(cmp1 STOPPED\)/)
  t.same(retry.rec.spawned, [config], 'the worker is started to deliver it')
  t.match(retry.rec.logFile.join(''), /notification requeued by outbox retry/)
  const after = JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8'))
  t.same(
    after.outbox.map((e: { id: string }) => e.id),
    ['p1', 'n1'],
  )
})

t.test('outbox retry refuses a STOPPED for a host that is back (exit 65) and changes nothing', async (t) => {
  const { stateDir, config } = await setup(t)
  await writeFile(join(stateDir, 'state.json'), JSON.stringify(expiredState('normal')))
  const before = await readFile(join(stateDir, 'state.json'), 'utf8')
  const deps = fakeDeps()
  t.equal(await evaluate(['outbox', 'retry', '--all', '--config', config], deps), EXIT.badInput)
  t.match(deps.rec.stdout.join(''), /not requeued n1 \(cmp1 STOPPED\): .*running host/)
  t.same(deps.rec.spawned, [])
  t.equal(await readFile(join(stateDir, 'state.json'), 'utf8'), before)
})

t.test('validate: one ✓ line each when everything answers; the token is not written', async (t) => {
  // The textfile's directory: any this user may write to (validate writes nothing there).
  const metrics = { textfile: join(tmpdir(), 'masakari-consul-validate.prom') }
  const { stateDir, config } = await setup(t, { consul: { agents: { management: '127.0.0.1:8500' }, lock: { enabled: false } }, metrics })
  const rec = fakeDeps().rec
  const fetch = scriptedFetch(rec, (url) => {
    if (url.endsWith('/v1/status/leader')) return response(200, '"127.0.0.1:8300"')
    if (url.endsWith('/v1/health/node/controller')) return response(200, [check('controller', 'passing')])
    if (url.endsWith('/auth/tokens')) return keystoneAnswer()
    if (url.endsWith('/segments')) return response(200, { segments: [{ uuid: 's1' }, { uuid: 's2' }] })
    return response(404, 'no')
  })
  const deps = fakeDeps({ fetch })
  t.equal(await evaluate(['validate', '--config', config], deps), EXIT.ok, deps.rec.stdout.join(''))
  const lines = deps.rec.stdout.join('').trim().split('\n')
  t.match(lines, [
    /^✓ config .*config\.yaml: valid$/,
    /^✓ strategy: built-in default/,
    /^✓ state directory .*state: \S+ \(uid \d+\) can create, read and write in it$/,
    /^✓ log file .*decisions\.log: /,
    /^✓ metrics textfile .*masakari-consul-validate\.prom: \S+ \(uid \d+\) can write it/,
    /^✓ consul management agent 127\.0\.0\.1:8500: answers; cluster leader 127\.0\.0\.1:8300; sees this controller's node controller$/,
    /^✓ keystone http:\/\/127\.0\.0\.1:35000\/v3: authenticated/,
    /^✓ masakari http:\/\/127\.0\.0\.1:15868\/v1\/p: answers; 2 failover segments$/,
  ])
  t.equal(lines.length, 8)
  t.notOk((await readdir(stateDir)).includes('token.json'), 'validate records nothing')
})

t.test('validate: each failure is a ✗ line with its reason, and a non-zero exit', async (t) => {
  const { config } = await setup(t, { consul: { agents: { storage: '127.0.0.1:8501' }, lock: { enabled: false } } })
  const rec = fakeDeps().rec
  const fetch = scriptedFetch(rec, (url) => {
    if (url.endsWith('/v1/status/leader')) return response(200, '""')
    if (url.endsWith('/auth/tokens')) return keystoneAnswer()
    return response(403, { forbidden: { message: 'Policy does not allow' } })
  })
  const deps = fakeDeps({ fetch })
  t.equal(await evaluate(['validate', '--config', config], deps), EXIT.consul)
  const out = deps.rec.stdout.join('')
  t.match(out, /✗ consul storage agent 127\.0\.0\.1:8501: answers, but its cluster has no leader/)
  t.match(out, /✗ masakari http:\/\/127\.0\.0\.1:15868\/v1\/p: GET .*\/segments answered 403/)

  const refused = fakeDeps()
  t.equal(await evaluate(['validate', '--config', config], refused), EXIT.consul)
  t.match(refused.rec.stdout.join(''), /✗ keystone .*ECONNREFUSED.*\n✗ masakari: not asked: no Keystone token/)

  const badStrategy = await setup(t, { strategy: 'nosuch.yaml' })
  const s = fakeDeps()
  t.equal(await evaluate(['validate', '--config', badStrategy.config], s), EXIT.config)
  t.match(s.rec.stdout.join(''), /✗ strategy .*nosuch\.yaml: .*ENOENT/)

  const dir = t.testdir({ 'config.yaml': 'masakari: {}\n' })
  const bad = fakeDeps()
  t.equal(await evaluate(['validate', '--config', join(dir, 'config.yaml')], bad), EXIT.config)
  t.match(bad.rec.stdout.join(''), /^✗ config .*masakari\.authUrl/)
})

t.test('validate: an own agent whose answer cannot see nodes (ACLs) is a ✗ naming the rule, and a non-zero exit', async (t) => {
  const { config } = await setup(t, { consul: { agents: { storage: '127.0.0.1:8501' }, lock: { enabled: false } } })
  const rec = fakeDeps().rec
  // A token without node:read: 200 and an empty list, as Consul answers under default_policy deny.
  const fetch = scriptedFetch(rec, (url) => {
    if (url.endsWith('/v1/status/leader')) return response(200, '"127.0.0.1:8300"')
    if (url.endsWith('/v1/health/node/controller')) return response(200, [])
    if (url.endsWith('/auth/tokens')) return keystoneAnswer()
    return response(200, { segments: [] })
  })
  const deps = fakeDeps({ fetch })
  t.equal(await evaluate(['validate', '--config', config], deps), EXIT.consul)
  t.match(
    deps.rec.stdout.join(''),
    /✗ consul storage agent 127\.0\.0\.1:8501: its answer does not show this controller's own node controller .*node_prefix "" \{ policy = "read" \}/,
  )
})

/** validate's answers when everything is reachable (the lines about files and agents are not what these tests look at). */
function everythingAnswers() {
  return scriptedFetch(fakeDeps().rec, (url) => {
    if (url.endsWith('/auth/tokens')) return keystoneAnswer()
    if (url.endsWith('/segments')) return response(200, { segments: [] })
    return response(404, 'no')
  })
}

t.test('validate: one ✗ line per problem of the config, each with its path', async (t) => {
  const dir = t.testdir({ 'config.yaml': 'stateDir: 7\nguards: {hold: {recovery: -1}}\nmasakari: {}\n' })
  const deps = fakeDeps()
  t.equal(await evaluate(['validate', '--config', join(dir, 'config.yaml')], deps), EXIT.config)
  const lines = deps.rec.stdout.join('').trim().split('\n')
  t.ok(lines.length >= 3, lines.join('\n'))
  for (const l of lines) t.match(l, /^✗ config \S+config\.yaml: [\w.]+: /, 'one problem, its path first')
  t.ok(lines.some((l) => l.includes(': stateDir: ')))
  t.ok(lines.some((l) => l.includes(': guards.hold.recovery: ')))
  t.ok(lines.some((l) => l.includes(': masakari.authUrl: ')))
})

t.test('validate: one ✗ line per problem of the strategy, each with its row', async (t) => {
  const { dir, config } = await setup(t, { strategy: 'strategy.yaml' })
  await writeFile(
    join(dir, 'strategy.yaml'),
    'sequence: [manage, storage]\nmatrix:\n  - {health: [up, up], action: [recovery]}\n  - {health: [down, gone], action: []}\n',
  )
  const deps = fakeDeps({ fetch: everythingAnswers() })
  t.equal(await evaluate(['validate', '--config', config], deps), EXIT.config)
  const lines = deps.rec.stdout
    .join('')
    .split('\n')
    .filter((l) => l.startsWith('✗ strategy'))
  t.match(lines, [
    /: matrix row 1 \(health \[up, up\]\): .*up on every network/,
    /: matrix row 2 \(health \[down, gone\]\): health\[1\] is "gone"/,
  ])
  t.equal(lines.length, 2)
})

t.test('validate: a config warning is a ! line of its own and leaves the exit as it is', async (t) => {
  const { config } = await setup(t, {
    masakari: {
      auth: { username: 'm', userDomainName: 'Default', passwordFile: 'password', projectName: 's', projectDomainName: 'Default' },
    },
  })
  await writeFile(join(config, '..', 'password'), 'secret\n')
  const plain = fakeDeps({ fetch: everythingAnswers() })
  const deps = { ...plain, configEnv: { ...plain.configEnv, fileMode: async () => 0o644 } }
  t.equal(await evaluate(['validate', '--config', config], deps), EXIT.ok, plain.rec.stdout.join(''))
  const lines = plain.rec.stdout.join('').split('\n')
  t.match(lines, [
    /^✓ config .*config\.yaml: valid$/,
    /^! config .*config\.yaml: .*password holds the Masakari secret and its group and others can read it/,
  ])
})

t.test('validate --json: every check with its result, and the exit it gives', async (t) => {
  const { dir, config } = await setup(t, { strategy: 'strategy.yaml' })
  await writeFile(join(dir, 'strategy.yaml'), 'sequence: [storage]\nmatrix:\n  - {health: [up], action: [recovery]}\n')
  const deps = fakeDeps({ fetch: everythingAnswers() })
  t.equal(await evaluate(['validate', '--json', '--config', config], deps), EXIT.config)
  const out = JSON.parse(deps.rec.stdout.join(''))
  t.equal(out.exit, EXIT.config)
  t.match(out.checks, [
    { what: /^config .*config\.yaml$/, result: 'pass', reason: 'valid' },
    { what: /^strategy .*strategy\.yaml$/, result: 'fail', reason: /matrix row 1 .*up on every network/, exit: EXIT.config },
  ])
  t.ok(
    out.checks.every((c: { result: string }) => ['pass', 'warn', 'fail'].includes(c.result)),
    'each check passes, warns or fails',
  )
})

t.test('validate: the line of a check and the exit of a run, pure', async (t) => {
  const ok = { what: 'a', ok: true, reason: 'fine', code: 0 }
  const warning = { what: 'b', ok: true, reason: 'hm', code: 0, warning: true }
  const config = { what: 'c', ok: false, reason: 'bad', code: EXIT.config }
  const agent = { what: 'd', ok: false, reason: 'gone', code: EXIT.consul }
  const lines: Array<[CheckLine, string]> = [
    [ok, '✓ a: fine\n'],
    [warning, '! b: hm\n'],
    [config, '✗ c: bad\n'],
  ]
  for (const [c, line] of lines) t.equal(formatCheckLine(c), line)
  const exits: Array<[CheckLine[], number]> = [
    [[], EXIT.ok],
    [[ok, warning], EXIT.ok],
    [[ok, agent, config], EXIT.consul],
    [[config, agent], EXIT.config],
  ]
  for (const [checks, exit] of exits) t.equal(validateExit(checks), exit, checks.map((c) => c.what).join(','))
})

t.test('validate: the state directory and log file as this user needs them', async (t) => {
  const dir = t.testdir({ state: { 'state.json': '{}' }, logs: {} })
  t.match(await checkStateDir(join(dir, 'state'), 'me'), { ok: true })
  t.match(await checkStateDir(join(dir, 'new', 'state'), 'me'), { ok: true, reason: /does not exist yet; me may create it in .*/ })
  t.match(await checkLogFile(join(dir, 'logs', 'decisions.log'), 'me'), { ok: true, reason: /does not exist yet/ })
  // A file root left behind that this user cannot write is the case that matters; as root it
  // cannot be made here: test/package.ts runs validate as nobody against a root-owned file.
})

t.test('validate: the metrics textfile needs its directory, writable by this user (a new file and a rename)', async (t) => {
  const dir = t.testdir({ collector: {}, 'a-file': '' })
  t.match(await checkMetricsFile(join(dir, 'collector', 'masakari.prom'), 'me'), { ok: true, reason: /me can write it/ })
  t.match(await checkMetricsFile(join(dir, 'missing', 'masakari.prom'), 'me'), {
    ok: false,
    code: 74,
    reason: /its directory .*missing does not exist/,
  })
  t.match(await checkMetricsFile(join(dir, 'a-file', 'masakari.prom'), 'me'), { ok: false, reason: /does not exist/ })
})
