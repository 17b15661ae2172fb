/**
 * The built bundles, copied to a directory with no node_modules, run by `node` alone.
 */
import t, { type Test } from 'tap'
import { execFile, spawn } from 'node:child_process'
import { chmod, chown, copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { crc32 } from 'node:zlib'
import { configYaml, killProcessesWith, payload } from './helpers.js'
import FULL_MARKER from '../lib/run/full-marker.json' with { type: 'json' }

const root = join(import.meta.dirname, '..')
const run = promisify(execFile)

function runBundle(cwd: string, file: string, args: string[], stdin = '', env: Record<string, string> = {}, prefix: string[] = []) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const [command, ...rest] = [...prefix, process.execPath, file, ...args]
    const child = spawn(command!, rest, { cwd, env: { PATH: process.env.PATH ?? '', ...env } })
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

/** Consul runs the handler as its own user; `nobody` here, through setpriv (util-linux). */
const NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups']
const asRoot = process.getuid?.() === 0

t.test(
  "as Consul's user, a logFile under a directory it may not write (issue #14: /var/log): the run is made, exit 74, the health note says why",
  { skip: asRoot ? false : 'needs root to run the handler as nobody' },
  async (t) => {
    await run(process.execPath, [join(root, 'build.mjs')], { cwd: root })
    const dir = t.testdir({ bin: {}, log: {} })
    await chmod(dir, 0o755)
    await copyFile(join(root, 'dist', 'checks-handler.js'), join(dir, 'bin', 'checks-handler.js'))
    const stateDir = join(dir, 'state')
    await mkdir(stateDir, { mode: 0o750 })
    const { uid, gid } = await nobody()
    await chown(stateDir, uid, gid)
    await chmod(join(dir, 'log'), 0o755) // root's, as /var/log is
    const config = join(dir, 'config.yaml')
    await writeFile(config, configYaml(stateDir, { logFile: join(dir, 'log', 'masakari-consul.log') }), { mode: 0o644 })
    const handler = join(dir, 'bin', 'checks-handler.js')
    const up = payload({ controller: 'passing', cmp1: 'passing' })
    const r = await runBundle(dir, handler, ['--network', 'storage', '--config', config], up, {}, NOBODY)
    t.equal(r.code, 74, r.stderr)
    t.match(r.stderr, /"level":"error","msg":"cannot append to logFile; logging to stderr only".*EACCES/)
    t.match(r.stderr, /"msg":"evaluated"/, 'every line still on stderr')
    t.match(r.stderr, /checks-handler: error: decisions were recorded, but: cannot append to logFile/)
    t.ok(await readFile(join(stateDir, 'snapshots', 'storage.json'), 'utf8'), 'the snapshot is written')
    t.match(await readFile(join(stateDir, 'health'), 'utf8'), /^warning\n.*cannot append to logFile .*masakari-consul\.log \(EACCES/m)
  },
)

t.test(
  "as Consul's user, a read-only runtime dir (no quiet note, no code cache can be written): the full runs exit 0 (issue #18, 7)",
  { skip: asRoot ? false : 'needs root to run the handler as nobody' },
  async (t) => {
    await run(process.execPath, [join(root, 'build.mjs')], { cwd: root })
    const dir = t.testdir({ bin: {}, runtime: {} })
    await chmod(dir, 0o755)
    await copyFile(join(root, 'dist', 'checks-handler.js'), join(dir, 'bin', 'checks-handler.js'))
    const { uid, gid } = await nobody()
    const stateDir = join(dir, 'state')
    await mkdir(stateDir, { mode: 0o750 })
    await chown(stateDir, uid, gid)
    await chmod(join(dir, 'runtime'), 0o755)
    const own = join(dir, 'runtime', `masakari-consul-${uid}`)
    await mkdir(own)
    await chown(own, uid, gid)
    await chmod(own, 0o500) // nobody's own, closed to others: trusted, and read-only
    const config = join(dir, 'config.yaml')
    await writeFile(config, configYaml(stateDir, { masakari: { authUrl: 'http://127.0.0.1:1/v3' } }), { mode: 0o644 })
    await new Promise((r) => setTimeout(r, 2100)) // settled: a note would be written if it could
    const handler = join(dir, 'bin', 'checks-handler.js')
    const env = { XDG_RUNTIME_DIR: join(dir, 'runtime') }
    for (const network of ['management', 'tenant', 'storage', 'storage']) {
      const r = await runBundle(dir, handler, ['--network', network, '--config', config], payload({ controller: 'passing' }), env, NOBODY)
      t.equal(r.code, 0, r.stderr)
    }
    t.same(await readdir(own), [], 'nothing written there')
  },
)

async function nobody(): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run('id', ['-u', 'nobody'])
  const { stdout: g } = await run('getent', ['group', 'nogroup'])
  return { uid: Number(stdout.trim()), gid: Number(g.split(':')[2]) }
}

t.test('the built handler: a quiet run writes nothing; a damaged copy says so', async (t) => {
  await run(process.execPath, [join(root, 'build.mjs')], { cwd: root })
  const dir = t.testdir({ bin: {}, runtime: {} })
  const handler = join(dir, 'bin', 'checks-handler.js')
  await copyFile(join(root, 'dist', 'checks-handler.js'), handler)
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { masakari: { authUrl: 'http://127.0.0.1:1/v3' } }))
  // A file changed in the 2 s before a full run started leaves no quiet note (its ctime counts
  // too, and utimes cannot set that back): wait as a config installed before the watches run.
  await new Promise((r) => setTimeout(r, 2100))
  const env = { XDG_RUNTIME_DIR: join(dir, 'runtime') }
  const up = payload({ controller: 'passing', cmp1: 'passing' })
  for (const network of ['management', 'tenant', 'storage']) {
    const r = await runBundle(dir, handler, ['--network', network, '--config', config], up, env)
    t.equal(r.code, 0, r.stderr)
  }
  const log = async () => readFile(join(stateDir, 'decisions.log'), 'utf8')
  const before = await log()
  const quiet = await runBundle(dir, handler, ['--network', 'storage', '--config', config], up, env)
  t.equal(quiet.code, 0, quiet.stderr)
  t.equal(quiet.stderr, '', 'a quiet run says nothing')
  t.equal(await log(), before, 'and writes nothing')
  const changed = await runBundle(
    dir,
    handler,
    ['--network', 'storage', '--config', config],
    payload({ controller: 'passing', cmp1: 'critical' }),
    env,
  )
  t.equal(changed.code, 0, changed.stderr)
  t.not(await log(), before, 'a change is a full run')
  // Its STOPPED waits in the outbox with a detached worker (Masakari at 127.0.0.1:1 never
  // answers): stopped here, or it writes into the test directory while tap removes it (ENOTEMPTY).
  await killProcessesWith(config)

  const text = await readFile(handler, 'utf8')
  await writeFile(handler, text.slice(0, text.indexOf(`/*${FULL_MARKER} `)))
  const damaged = await runBundle(dir, handler, ['--help'], '', env)
  t.equal(damaged.code, 1)
  t.match(damaged.stderr, /checks-handler: error: .*checks-handler\.js: no full handler inside \(a damaged or partial copy/)
})

/**
 * A full run that fails with a plain Error in lib/ (consul.lock.enabled true and no agent for the
 * lock's network: lib/run/coordination.ts throws one), so the handler prints its stack trace;
 * `files` are copied from dist/ next to each other first.
 */
async function crashSetup(t: Test, files: string[]) {
  await run(process.execPath, [join(root, 'build.mjs')], { cwd: root })
  const dir = t.testdir({ dist: {}, runtime: {} })
  for (const f of files) await copyFile(join(root, 'dist', f), join(dir, 'dist', f))
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(join(dir, 'state'), { consul: { lock: { enabled: true } } }))
  const env = { XDG_RUNTIME_DIR: join(dir, 'runtime') }
  const crash = async () => {
    const r = await runBundle(dir, join(dir, 'dist', 'checks-handler.js'), ['--network', 'storage', '--config', config], payload({}), env)
    t.equal(r.code, 1, r.stderr)
    t.match(r.stderr, /^checks-handler: error: consul\.lock\.enabled is true but no agent for management/)
    return r.stderr.split('\n').filter((l) => l.startsWith('    at '))
  }
  return { dir, crash }
}

/** The frame's file, line and column, as `    at name (file:line:column)` or `    at file:line:column` gives them. */
function place(frame: string | undefined): { file: string; line: number; column: number } | undefined {
  const m = /^ {4}at (?:.* \()?(.+):(\d+):(\d+)\)?$/.exec(frame ?? '')
  return m ? { file: m[1]!, line: Number(m[2]), column: Number(m[3]) } : undefined
}

t.test(
  "a crash in the full part: its stack trace names the TypeScript file and line of each frame, through the build's source map (#19)",
  async (t) => {
    const h = await crashSetup(t, ['checks-handler.js', 'checks-handler.full.js.map'])
    const source = async (file: string, line: number) => (await readFile(join(root, file), 'utf8')).split('\n')[line - 1] ?? ''
    // The first run compiles the code; the second takes V8's code cache the first wrote.
    for (const which of ['no code cache', 'from the code cache']) {
      const frames = await h.crash()
      t.notMatch(frames.join('\n'), /\(full handler\)/, `${which}: no frame left in the bundle's code`)
      // The map's sources are ../lib/….ts, relative to the map: the source tree beside dist/.
      const top = place(frames[0])
      t.equal(top?.file, join(h.dir, 'lib', 'run', 'coordination.ts'), `${which}: the throw is in lib/run/coordination.ts`)
      const thrown = await source('lib/run/coordination.ts', top?.line ?? 0)
      t.equal(thrown.slice((top?.column ?? 0) - 1), 'new Error(', `${which}: at its line and column (${top?.line}:${top?.column})`)
      const caller = place(frames[1])
      t.equal(caller?.file, join(h.dir, 'lib', 'run', 'load-monitor.ts'), `${which}: called from lib/run/load-monitor.ts`)
      t.match(
        await source('lib/run/load-monitor.ts', caller?.line ?? 0),
        /await coordination\(config, deps\)/,
        `${which}: at the call's line`,
      )
    }
  },
)

t.test(
  'a crash in the full part without its source map, or with one of another build: the frames name the code, the run ends the same',
  async (t) => {
    const h = await crashSetup(t, ['checks-handler.js'])
    const unmapped = (frames: string[], which: string) => {
      t.match(frames[0], / \(.*\/dist\/checks-handler\.js \(full handler\):\d+:\d+\)$/, `${which}: the throw's frame names the code`)
      t.notMatch(frames.join('\n'), /\.ts:\d+/, `${which}: no frame names a source`)
    }
    unmapped(await h.crash(), 'no map')
    const map = JSON.parse(await readFile(join(root, 'dist', 'checks-handler.full.js.map'), 'utf8'))
    await writeFile(join(h.dir, 'dist', 'checks-handler.full.js.map'), JSON.stringify({ ...map, x_masakari_consul_id: '0123456789abcdef' }))
    unmapped(await h.crash(), "another build's map")
  },
)

/** A built handler, a config and a runtime dir of its own: dry runs, each a full run that uses the code cache. */
async function cacheSetup(t: Test) {
  await run(process.execPath, [join(root, 'build.mjs')], { cwd: root })
  const dir = t.testdir({ bin: {}, runtime: {} })
  const handler = join(dir, 'bin', 'checks-handler.js')
  await copyFile(join(root, 'dist', 'checks-handler.js'), handler)
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(join(dir, 'state'), { masakari: { authUrl: 'http://127.0.0.1:1/v3' } }))
  const env = { XDG_RUNTIME_DIR: join(dir, 'runtime') }
  const cacheDir = join(dir, 'runtime', `masakari-consul-${process.getuid?.() ?? 0}`)
  const stdin = payload({ controller: 'passing', cmp1: 'critical' })
  const dryRun = () => runBundle(dir, handler, ['--network', 'storage', '--config', config, '--dry-run'], stdin, env)
  const cacheFile = async () => {
    const files = (await readdir(cacheDir)).filter((f) => f.includes('.code-cache'))
    return files.length === 1 ? join(cacheDir, files[0]!) : `(${files.length} cache files: ${files.join(', ')})`
  }
  return { dryRun, cacheFile, cacheDir }
}

/** What a cache file must be to be used: our header (magic, length, crc32 of the data), then V8's data. */
function validCache(bytes: Buffer): boolean {
  if (bytes.length < 16 || bytes.subarray(0, 4).toString('latin1') !== 'MCCC') return false
  const data = bytes.subarray(16)
  return bytes.readUInt32LE(8) === data.length && bytes.readUInt32LE(12) === crc32(data)
}

for (const [what, damage] of [
  [
    'one byte flipped in the middle',
    (b: Buffer) => {
      b[b.length >> 1]! ^= 0xff
      return b
    },
  ],
  ['its tail zeroed (power loss)', (b: Buffer) => b.fill(0, Math.floor(b.length * 0.75))],
  ['truncated', (b: Buffer) => b.subarray(0, b.length >> 1)],
] as const) {
  t.test(`a code cache with ${what}: the next run is a clean one and replaces it`, async (t) => {
    const h = await cacheSetup(t)
    const clean = await h.dryRun()
    t.equal(clean.code, 0, clean.stderr)
    const path = await h.cacheFile()
    const good = await readFile(path)
    t.ok(validCache(good), 'the first run wrote a cache')
    const bad = damage(Buffer.from(good))
    await writeFile(path, bad)
    const after = await h.dryRun()
    t.equal(after.code, 0, after.stderr)
    t.equal(after.stdout, clean.stdout, 'the same decisions')
    t.notMatch(after.stderr, /TypeError|fatal|Segmentation|checks-handler: error/)
    const replaced = await readFile(await h.cacheFile())
    t.ok(validCache(replaced), 'replaced by a valid one')
    t.not(Buffer.compare(replaced, bad), 0)
    // V8 accepted it: a cache V8 rejects is written again (a new inode).
    const { ino } = await stat(await h.cacheFile())
    t.equal((await h.dryRun()).code, 0)
    t.equal((await stat(await h.cacheFile())).ino, ino, 'the next run used it as it is')
  })
}

t.test("the cache is named for the code, node's version and the architecture; former ones are removed", async (t) => {
  const h = await cacheSetup(t)
  await mkdir(h.cacheDir, { recursive: true, mode: 0o700 })
  const former = ['checks-handler-0123456789abcdef.code-cache', 'checks-handler-0123456789abcdef-v18.0.0-x64.code-cache']
  for (const f of former) await writeFile(join(h.cacheDir, f), 'old')
  t.equal((await h.dryRun()).code, 0)
  t.match(
    await h.cacheFile(),
    new RegExp(`/checks-handler-[0-9a-f]+-${process.version.replaceAll('.', '\\.')}-${process.arch}\\.code-cache$`),
  )
})

t.test('a cache that cannot be written (a directory in its place): the runs are clean all the same', async (t) => {
  const h = await cacheSetup(t)
  const clean = await h.dryRun()
  const path = await h.cacheFile()
  await rm(path)
  await mkdir(path)
  for (let i = 0; i < 2; i++) {
    const r = await h.dryRun()
    t.equal(r.code, 0, r.stderr)
    t.equal(r.stdout, clean.stdout)
  }
})
