/**
 * The built bundles, copied to a directory with no node_modules, run by `node` alone.
 */
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { copyFile, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { configYaml, payload } from './helpers.js'

const root = join(import.meta.dirname, '..')
const run = promisify(execFile)

function runBundle(cwd: string, file: string, args: string[], stdin = '', env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [file, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(stdin)
  })
}

t.test('bundles run from a directory without node_modules', async (t) => {
  await run(process.execPath, [join(root, 'build.mjs')], { cwd: root })
  const dir = t.testdir({ bin: {}, elsewhere: {} })
  for (const f of ['checks-handler.js', 'evaluate.js']) await copyFile(join(root, 'dist', f), join(dir, 'bin', f))
  const handler = join(dir, 'bin', 'checks-handler.js')
  const evaluate = join(dir, 'bin', 'evaluate.js')
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  // Port 1 on loopback refuses at once: the worker retries and gives up after 2 s.
  await writeFile(
    config,
    configYaml(stateDir, { masakari: { authUrl: 'http://127.0.0.1:1/v3', delivery: { initialBackoff: 0.2, maxBackoff: 0.5, expiry: 2 } } }),
  )
  const cwd = join(dir, 'elsewhere')

  // No package.json next to the copy: the version was fixed in the bundle at build time.
  const version = await runBundle(cwd, evaluate, ['--version'])
  t.equal(version.stdout.trim(), JSON.parse(await readFile(join(root, 'package.json'), 'utf8')).version, version.stderr)

  const up = payload({ controller: 'passing', cmp1: 'passing' })
  for (const network of ['management', 'tenant', 'storage']) {
    const r = await runBundle(cwd, handler, ['--network', network, '--config', config], up, { CONSUL_INDEX: '12' })
    t.equal(r.code, 0, r.stderr)
  }
  const snap = JSON.parse(await readFile(join(stateDir, 'snapshots', 'storage.json'), 'utf8'))
  t.match(snap, { network: 'storage', consulIndex: '12', nodes: { controller: 'up', cmp1: 'up' } })

  const bad = await runBundle(cwd, handler, ['--network', 'storage', '--config', config], '{"truncated": ')
  t.equal(bad.code, 65)
  t.match(bad.stderr, /checks-handler: error: stdin is not valid JSON/)

  const down = await runBundle(
    cwd,
    handler,
    ['--network', 'storage', '--config', config],
    payload({ controller: 'passing', cmp1: 'critical' }),
    { CONSUL_INDEX: '13' },
  )
  t.equal(down.code, 0, down.stderr)
  t.match(down.stderr, /"msg":"decision".*"host":"cmp1".*"action":"STOPPED"/)

  const dry = await runBundle(cwd, evaluate, ['--config', config, '--dry-run', '--json'])
  t.equal(dry.code, 0, dry.stderr)
  const report = JSON.parse(dry.stdout)
  t.match(report, { dryRun: true, strategy: { sequence: ['management', 'tenant', 'storage'] } })
  t.match(
    report.hosts.find((h: { host: string }) => h.host === 'cmp1'),
    { vector: { storage: 'down' }, action: 'none' },
  )

  // The detached worker outlives the handler, retries against the refused port, then gives up.
  const deadline = Date.now() + 20_000
  let state: { outbox: unknown[]; ledger: Record<string, { unsent?: unknown }> }
  for (;;) {
    state = JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8'))
    if (state.outbox.length === 0 || Date.now() > deadline) break
    await new Promise((r) => setTimeout(r, 200))
  }
  t.same(state.outbox, [], 'the worker emptied the outbox')
  t.match(state.ledger.cmp1?.unsent, { event: 'STOPPED', outcome: 'expired', message: /ECONNREFUSED/ })
  const log = await readFile(join(stateDir, 'decisions.log'), 'utf8')
  t.match(log, /notification not delivered, will retry/)
  t.match(log, /notification expired undelivered/)
  const workerStderr = await readFile(join(stateDir, 'worker.stderr'), 'utf8')
  const nonJson = workerStderr
    .trim()
    .split('\n')
    .filter((l) => {
      try {
        JSON.parse(l)
        return false
      } catch {
        return true
      }
    })
  t.same(nonJson, [], 'the worker did not crash: its stderr holds only log lines')
  t.match(workerStderr, /"component":"worker"/)

  const table = await runBundle(cwd, evaluate, ['--config', config, '--dry-run'])
  t.match(table.stdout, /HOST\s+MANAGEMENT\s+TENANT\s+STORAGE/)
  t.match(table.stdout, /cmp1\s+up\s+up\s+down/)
})
