/**
 * Operator commands that read never write (issue 18, Build 7): `status`, `explain`, `outbox`
 * and `validate` create, append to and chmod nothing under the state, log and metrics
 * directories, so that a run as root cannot leave a root-owned decisions.log (or state file)
 * that the runs Consul makes as its own user then cannot write. With the management agent down
 * they show the local view and say so (issue 20, item 5).
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { chmod, copyFile, lstat, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { main as handler } from '../handlers/checks-handler.js'
import { main as evaluate } from '../handlers/operator-cli.js'
import { EXIT } from '../lib/run/cli.js'
import { loadMonitor } from '../lib/run/load-monitor.js'
import { LOCAL_VIEW_WARNING } from '../lib/run/coordination.js'
import { realDeps } from '../lib/commands/runtime.js'
import { emptyState } from '../lib/decide/state-shape.js'
import { configYaml, fakeDeps, payload, response, scriptedFetch } from './helpers.js'

const root = join(import.meta.dirname, '..')

/** Every path under dir (dir included) with what a write, a create or a chmod would change. */
async function listing(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const p of [dir, ...(await readdir(dir, { recursive: true })).map((e) => join(dir, e))]) {
    const s = await lstat(p)
    const type = s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'link' : 'file'
    out[p] = `${type} mode ${(s.mode & 0o7777).toString(8)} uid ${s.uid} gid ${s.gid} size ${s.size} mtime ${s.mtimeMs} ctime ${s.ctimeMs}`
  }
  return out
}

/** The commands that must only read; `validate` last (it also asks Keystone). */
const READERS = [
  ['status'],
  ['status', '--json'],
  ['explain', 'cmp2'],
  ['outbox'],
  ['outbox', '--json'],
  ['replay', '--dry-run'],
  ['validate'],
]

/**
 * A controller's directories as Consul's runs leave them: state (snapshots, state.json with a
 * pending notification, health, wake), an empty log directory (decisions.log not created yet),
 * the metrics textfile; cmp2 just went down on storage (not decided yet: status would send).
 * The password file is 0640, which draws a config warning: a line every command logs.
 */
async function controller(t: Test, extra: Record<string, unknown> = {}) {
  const dir = t.testdir({ var: { log: {}, metrics: {} } })
  const vars = join(dir, 'var')
  const stateDir = join(vars, 'state')
  const logFile = join(vars, 'log', 'decisions.log')
  const config = join(dir, 'config.yaml')
  const password = join(dir, 'password')
  await writeFile(password, 'secret\n')
  await chmod(password, 0o640)
  const auth = {
    username: 'masakari-consul',
    userDomainName: 'Default',
    passwordFile: password,
    projectName: 'service',
    projectDomainName: 'Default',
  }
  const yaml = (more: Record<string, unknown>) =>
    configYaml(stateDir, {
      logFile,
      metrics: { textfile: join(vars, 'metrics', 'masakari.prom') },
      ...more,
      masakari: { auth, ...(more.masakari as object | undefined) },
    })
  // The record is made by this controller alone (no agent to elect a sender), then `extra` applies.
  await writeFile(config, yaml({}))
  const up = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
  for (const n of ['management', 'tenant', 'storage']) await handler(['--network', n, '--config', config], fakeDeps({ stdin: up }))
  await writeFile(
    join(stateDir, 'snapshots', 'storage.json'),
    JSON.stringify({
      version: 1,
      network: 'storage',
      consulIndex: '7',
      receivedAt: '2026-11-25T12:00:00.000Z',
      nodes: { controller: 'up', cmp1: 'down', cmp2: 'up' },
    }),
  )
  // cmp1's STOPPED is recorded and pending (a worker would send it); then cmp2 goes down.
  t.equal(await evaluate(['replay', '--config', config], fakeDeps()), EXIT.ok)
  await writeFile(
    join(stateDir, 'snapshots', 'storage.json'),
    JSON.stringify({
      version: 1,
      network: 'storage',
      consulIndex: '8',
      receivedAt: '2026-11-25T12:00:05.000Z',
      nodes: { controller: 'up', cmp1: 'down', cmp2: 'down' },
    }),
  )
  await writeFile(config, yaml(extra))
  return { dir, vars, stateDir, logFile, config }
}

/** In-process, with the real log appender (it creates the file and its directory) and real file modes. */
function realFileDeps(opts: Parameters<typeof fakeDeps>[0] = {}) {
  const deps = fakeDeps(opts)
  return {
    ...deps,
    appendLog: realDeps().appendLog,
    configEnv: { ...deps.configEnv, fileMode: async (p: string) => (await stat(p)).mode & 0o7777 },
  }
}

t.test('status, explain, outbox and validate change nothing under the state, log and metrics directories', async (t) => {
  const { vars, logFile, config } = await controller(t)
  const before = await listing(vars)
  for (const args of READERS) {
    const deps = realFileDeps()
    const code = await evaluate([...args, '--config', config], deps)
    if (args[0] !== 'validate') t.equal(code, EXIT.ok, `${args.join(' ')} exits 0`, { stderr: deps.rec.stderr })
    if (args[0] !== 'validate')
      t.match(deps.rec.stderr.join('\n'), /holds the Masakari secret/, `${args.join(' ')} logged its warning (to stderr)`)
    t.same(deps.rec.spawned, [], `${args.join(' ')} started no worker`)
    t.same(await listing(vars), before, `${args.join(' ')}: every path as it was`)
  }
  t.notOk(Object.hasOwn(before, logFile), 'decisions.log did not exist before')
  t.notOk(Object.hasOwn(await listing(vars), logFile), 'and was not created')
})

t.test('on a controller with no state directory yet, status, explain, outbox and validate create none', async (t) => {
  const dir = t.testdir({ var: {} })
  const vars = join(dir, 'var')
  const config = join(dir, 'config.yaml')
  const password = join(dir, 'password')
  await writeFile(password, 'secret\n', { mode: 0o640 })
  await chmod(password, 0o640) // a config warning: a line to log
  const auth = {
    username: 'masakari-consul',
    userDomainName: 'Default',
    passwordFile: password,
    projectName: 'service',
    projectDomainName: 'Default',
  }
  await writeFile(config, configYaml(join(vars, 'state'), { logFile: join(vars, 'log', 'decisions.log'), masakari: { auth } }))
  for (const args of [['status'], ['explain', 'cmp1'], ['outbox'], ['validate']]) {
    await evaluate([...args, '--config', config], realFileDeps())
    t.same(await readdir(vars), [], `${args.join(' ')}: no state or log directory created`)
  }
})

/** A Consul agent that holds the sender lock for another controller and the shared record. */
function sharedRecordAgent(rec: ReturnType<typeof fakeDeps>['rec']) {
  const state = emptyState()
  return scriptedFetch(rec, (url, method) => {
    if (method !== 'GET') return response(500, 'test: only reads expected')
    if (url.includes('/v1/kv/masakari-consul/sender'))
      return response(200, [{ Session: 's-other', Value: Buffer.from('{"host":"ctl2"}').toString('base64') }])
    if (url.includes('/v1/kv/masakari-consul/state'))
      return response(200, [{ Value: gzipSync(JSON.stringify(state)).toString('base64'), ModifyIndex: 5 }])
    if (url.endsWith('/v1/status/leader')) return response(200, '"127.0.0.1:8300"')
    return response(404, '')
  })
}

t.test('with several controllers they only read the sender lock and the shared record: no session, no lock', async (t) => {
  const { vars, config } = await controller(t, { consul: { agents: { management: '127.0.0.1:8500' } } })
  const before = await listing(vars)
  const rec = fakeDeps().rec
  const fetch = sharedRecordAgent(rec)
  for (const args of READERS) {
    await evaluate([...args, '--config', config], realFileDeps({ fetch }))
    t.same(await listing(vars), before, `${args.join(' ')}: every path as it was`)
  }
  t.same(
    rec.requests.filter((r) => r.url.startsWith('http://127.0.0.1:8500/') && r.method !== 'GET'),
    [],
    'no session created, no lock acquired, nothing written to Consul',
  )
  t.ok(
    rec.requests.some((r) => r.url.includes('/v1/kv/masakari-consul/state')),
    'the shared record was read',
  )
})

t.test('a read-only monitor refuses to record: its stores and its lock cannot write', async (t) => {
  const { config } = await controller(t, { consul: { agents: { management: '127.0.0.1:8500' } } })
  const rec = fakeDeps().rec
  const monitor = await loadMonitor(config, realFileDeps({ fetch: sharedRecordAgent(rec) }), 'test', { readOnly: true })
  const nothing = async () => ({ result: undefined })
  await t.rejects(monitor.store.transact(nothing), /read-only/)
  await t.rejects(monitor.local.transact(nothing), /read-only/)
  await t.rejects(monitor.coordination!.lock.acquire(), /read-only/)
  t.match(await monitor.coordination!.lock.peek(), { sender: false, holder: 'ctl2' }, 'looking who sends still works')
})

/** The one line a read-only command falling back to the local view writes (README, Logs). */
const localViewWarnings = (stderr: string[]) => stderr.filter((l) => l.includes(LOCAL_VIEW_WARNING))

t.test('management agent down: status, explain and outbox show the local view with a warning line', async (t) => {
  const { vars, config } = await controller(t, { consul: { agents: { management: '127.0.0.1:8500' } } })
  const before = await listing(vars)
  for (const args of [['status'], ['status', '--json'], ['explain', 'cmp2'], ['outbox']]) {
    const deps = realFileDeps() // its fetch refuses every connection
    t.equal(await evaluate([...args, '--config', config], deps), EXIT.ok, `${args.join(' ')} exits 0`, { stderr: deps.rec.stderr })
    const warnings = localViewWarnings(deps.rec.stderr)
    t.equal(warnings.length, 1, `${args.join(' ')}: one warning line`)
    t.match(JSON.parse(warnings[0]!), {
      level: 'warn',
      record: 'Consul KV masakari-consul/state (http://127.0.0.1:8500)',
      error: /ECONNREFUSED/,
    })
    t.same(await listing(vars), before, `${args.join(' ')}: every path as it was`)
  }
  const status = realFileDeps()
  await evaluate(['status', '--config', config], status)
  t.match(status.rec.stdout.join(''), /cmp2\s+up\s+up\s+down/, 'the table from the local snapshots')
  const outbox = realFileDeps()
  await evaluate(['outbox', '--config', config], outbox)
  t.match(outbox.rec.stdout.join(''), /pending \(1\):\n {2}\S+ {2}cmp1 {2}STOPPED/, "the local state.json's outbox")
})

t.test('management agent down: --json of status, explain and outbox says the view is local, and why', async (t) => {
  const { config } = await controller(t, { consul: { agents: { management: '127.0.0.1:8500' } } })
  for (const args of [['status'], ['explain', 'cmp2'], ['outbox']]) {
    const down = realFileDeps()
    t.equal(await evaluate([...args, '--json', '--config', config], down), EXIT.ok)
    t.match(
      JSON.parse(down.rec.stdout.join('')).localView,
      { record: 'Consul KV masakari-consul/state (http://127.0.0.1:8500)', error: /ECONNREFUSED/ },
      `${args.join(' ')} --json: localView`,
    )
    const up = realFileDeps({ fetch: sharedRecordAgent(fakeDeps().rec) })
    t.equal(await evaluate([...args, '--json', '--config', config], up), EXIT.ok)
    t.equal(JSON.parse(up.rec.stdout.join('')).localView, null, `${args.join(' ')} --json: the shared record read, localView null`)
  }
})

t.test('management agent down: it is asked once, not again for the record once the lock could not be read', async (t) => {
  const { config } = await controller(t, { consul: { agents: { management: '127.0.0.1:8500' } } })
  const rec = fakeDeps().rec
  let asked = 0
  const deps = realFileDeps({
    fetch: scriptedFetch(rec, () => {
      asked++
      throw Object.assign(new Error('The operation was aborted'), { name: 'AbortError' })
    }),
  })
  t.equal(await evaluate(['status', '--config', config], deps), EXIT.ok)
  t.same(
    rec.requests.map((r) => r.url).filter((u) => u.includes('/v1/kv/')),
    ['http://127.0.0.1:8500/v1/kv/masakari-consul/sender?consistent'],
    'one question to KV: an agent that hangs costs one timeout, not one per read',
  )
  t.ok(asked >= 1)
  t.match(JSON.parse(localViewWarnings(deps.rec.stderr)[0]!), { error: /no answer within \d+ s/ })
})

t.test('which failures of the management agent fall back to the local view, and which end the command', async (t) => {
  const { config } = await controller(t, { consul: { agents: { management: '127.0.0.1:8500' } } })
  const cases: Array<[string, () => ReturnType<typeof response>, number, boolean]> = [
    ['connection refused', () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:8500')) as never, EXIT.ok, true],
    ['no answer in time', () => Promise.reject(Object.assign(new Error('aborted'), { name: 'AbortError' })) as never, EXIT.ok, true],
    ['500 No cluster leader', () => response(500, 'No cluster leader'), EXIT.ok, true],
    ['503 from a proxy', () => response(503, 'Service Unavailable'), EXIT.ok, true],
    // A token without the policy is the operator's to fix, not an outage to show around.
    ['403 ACL not found', () => response(403, 'ACL not found'), EXIT.consul, false],
  ]
  for (const [what, answer, code, local] of cases) {
    const deps = realFileDeps({ fetch: scriptedFetch(fakeDeps().rec, answer) })
    t.equal(await evaluate(['status', '--config', config], deps), code, `${what}: exit ${code}`, { stderr: deps.rec.stderr })
    t.equal(localViewWarnings(deps.rec.stderr).length, local ? 1 : 0, `${what}: ${local ? 'the local view, said once' : 'no local view'}`)
  }
})

t.test('management agent down: outbox retry refuses (it writes the shared record), exit 69, nothing changed', async (t) => {
  const { stateDir, config } = await controller(t, { consul: { agents: { management: '127.0.0.1:8500' } } })
  // cmp1's STOPPED expired undelivered in the local record: there is something to requeue.
  const state = JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8'))
  const [entry] = state.outbox.splice(0, 1)
  state.ledger.cmp1.unsent = {
    id: entry.id,
    event: 'STOPPED',
    generatedTime: entry.notification.generated_time,
    outcome: 'expired',
    at: '2026-11-25T12:10:00.000Z',
  }
  await writeFile(join(stateDir, 'state.json'), JSON.stringify(state))
  // Only the state directory: retry writes, so its log lines go to logFile as any writer's do.
  const before = await listing(stateDir)
  const deps = realFileDeps()
  t.equal(await evaluate(['outbox', 'retry', '--all', '--config', config], deps), EXIT.consul)
  t.match(
    deps.rec.stderr.join('\n'),
    /evaluate: error: outbox retry writes the shared record in Consul KV, which needs the management agent: .*ECONNREFUSED.*; nothing requeued/,
  )
  t.same(deps.rec.spawned, [], 'no worker started')
  t.same(deps.rec.stdout, [], 'nothing said requeued')
  t.same(await listing(stateDir), before, 'every path in the state directory as it was')
})

/** A loopback port nothing listens on (bound, then closed): Keystone there refuses at once. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  await new Promise((r) => server.close(r))
  return port
}

function runBundle(bundle: string, args: string[], cwd: string) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [bundle, ...args], { cwd, env: { PATH: process.env.PATH ?? '' } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end()
  })
}

t.test('the built dist/evaluate.js: status, explain, outbox and validate leave every path as it was', async (t) => {
  // npm test builds dist/ first (scripts/prepare.mjs); building here would rewrite it under the tests running alongside.
  t.ok(await stat(join(root, 'dist', 'evaluate.js')).catch(() => undefined), 'dist/evaluate.js is built (node build.mjs)')
  const port = await closedPort()
  const { dir, vars, logFile, config } = await controller(t, { masakari: { authUrl: `http://127.0.0.1:${port}/v3` } })
  const cwd = join(dir, 'cwd')
  await mkdir(cwd)
  // A copy: test/bundle.ts rebuilds dist/ while the tests run alongside.
  const bundle = join(dir, 'evaluate.js')
  await copyFile(join(root, 'dist', 'evaluate.js'), bundle)
  const before = await listing(vars)
  for (const args of READERS) {
    const r = await runBundle(bundle, [...args, '--config', config], cwd)
    if (args[0] !== 'validate') t.equal(r.code, EXIT.ok, `${args.join(' ')} exits 0`, { stderr: r.stderr })
    else
      t.match(r.stdout, /✓ state directory .*\n✓ log file .*decisions\.log: does not exist yet/, 'validate checks them', {
        stdout: r.stdout,
      })
    if (args[0] !== 'validate') t.match(r.stderr, /holds the Masakari secret/, `${args.join(' ')} logged its warning (to stderr)`)
    t.same(await listing(vars), before, `${args.join(' ')}: every path as it was`)
  }
  t.notOk(Object.hasOwn(await listing(vars), logFile), 'decisions.log was not created')
})
