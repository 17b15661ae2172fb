/**
 * Operator commands that read never write (issue 18, Build 7): `status`, `explain`, `outbox`
 * and `validate` create, append to and chmod nothing under the state, log and metrics
 * directories, so that a run as root cannot leave a root-owned decisions.log (or state file)
 * that the runs Consul makes as its own user then cannot write. With the management agent down
 * they show the local view and say so (issue 20, item 5).
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { chmod, copyFile, lstat, mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { main as handler } from '../handlers/checks-handler.js'
import { main as evaluate } from '../handlers/operator-cli.js'
import { EXIT } from '../lib/run/cli.js'
import { loadMonitor } from '../lib/run/load-monitor.js'
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

t.test('management agent down: status, explain and outbox show the local view with a warning line', async (t) => {
  const { vars, config } = await controller(t, { consul: { agents: { management: '127.0.0.1:8500' } } })
  const before = await listing(vars)
  for (const args of [['status'], ['status', '--json'], ['explain', 'cmp2'], ['outbox']]) {
    const deps = realFileDeps() // its fetch refuses every connection
    t.equal(await evaluate([...args, '--config', config], deps), EXIT.ok, `${args.join(' ')} exits 0`, { stderr: deps.rec.stderr })
    const warnings = deps.rec.stderr.filter((l) => /management agent .*cannot be reached.*local view/.test(l))
    t.equal(warnings.length, 1, `${args.join(' ')}: one warning line`)
    t.match(warnings[0], /ECONNREFUSED/)
    t.same(await listing(vars), before, `${args.join(' ')}: every path as it was`)
  }
  const status = realFileDeps()
  await evaluate(['status', '--config', config], status)
  t.match(status.rec.stdout.join(''), /cmp2\s+up\s+up\s+down/, 'the table from the local snapshots')
  const outbox = realFileDeps()
  await evaluate(['outbox', '--config', config], outbox)
  t.match(outbox.rec.stdout.join(''), /pending \(1\):\n {2}\S+ {2}cmp1 {2}STOPPED/, "the local state.json's outbox")
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
