/**
 * The quiet run (lib/run/quiet-run.ts): a watch run with nothing new ends before anything is
 * loaded; every doubt makes a full run.
 */
import t, { type Test } from 'tap'
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { isQuietRun, notePath, ownRuntimeDir, payloadDigest, rememberRun, seenPath } from '../lib/run/quiet-run.js'
import { check, configYaml, fakeDeps, payload } from './helpers.js'

const allUp = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
const cmp1Down = payload({ controller: 'passing', cmp1: 'critical', cmp2: 'passing' })
const bytes = (text: string) => Buffer.from(text)
const STRATEGY = 'sequence: [storage]\nmatrix:\n  - { health: [down], action: [recovery] }\n'
/**
 * A full run's clock, a minute ahead: the files written just now are, to it, a minute old, as
 * a config is when the watches run (a file changed in the 2 s before a run started leaves no
 * note, and utimes cannot set a ctime back).
 */
const aMinuteAhead = () => new Date(Date.now() + 60_000)

/** A config and strategy, a runtime dir of our own, three full runs done. */
async function setup(t: Test, extra: Record<string, unknown> = {}, files: Record<string, string> = {}) {
  const dir = t.testdir(files)
  const runtime = join(dir, 'runtime')
  const saved = process.env.XDG_RUNTIME_DIR
  process.env.XDG_RUNTIME_DIR = runtime
  t.teardown(() => {
    if (saved === undefined) delete process.env.XDG_RUNTIME_DIR
    else process.env.XDG_RUNTIME_DIR = saved
  })
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  const strategy = join(dir, 'matrix.yaml')
  writeFileSync(strategy, STRATEGY)
  writeFileSync(config, configYaml(stateDir, { strategy, ...extra }))
  const full = async (network: string, stdin: string, now = aMinuteAhead) => {
    const deps = fakeDeps({ stdin, now })
    t.equal(await main(['--network', network, '--config', config], deps), 0, deps.rec.stderr.join('\n'))
  }
  for (const n of ['management', 'tenant', 'storage']) await full(n, allUp)
  const dirOf = ownRuntimeDir(join(runtime, `masakari-consul-${process.getuid?.() ?? 0}`))!
  const quiet = (stdin: string, network = 'storage') => isQuietRun(network, config, bytes(stdin), dirOf)
  t.ok(quiet(allUp), 'set up: the same payload again is quiet')
  return { dir, stateDir, config, strategy, full, quiet, runtime: dirOf }
}

t.test('the same payload again is quiet; a node that changed is not', async (t) => {
  const h = await setup(t)
  t.ok(h.quiet(allUp), 'same payload: quiet')
  t.notOk(h.quiet(cmp1Down), 'cmp1 down: a full run')
  t.ok(existsSync(seenPath(h.stateDir, 'storage')))
})

t.test('only what the monitor looks at counts: a service check is not, its own check is', async (t) => {
  const h = await setup(t)
  const base = JSON.parse(allUp) as unknown[]
  const serviceOutput = JSON.stringify(base.map((c) => ({ ...(c as object), Output: 'changed' })))
  t.ok(h.quiet(serviceOutput), 'outputs changed: quiet')
  const serviceCritical = JSON.stringify([...base, check('cmp1', 'critical', 'service:nova-compute')])
  t.ok(h.quiet(serviceCritical), 'a service check critical: quiet (liveness is serfHealth)')
  const maintenance = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' }, ['cmp2'])
  t.notOk(h.quiet(maintenance), 'maintenance on cmp2: a full run')
  const ownCheck = JSON.stringify([...base, check('controller', 'critical', 'masakari-consul')])
  t.notOk(h.quiet(ownCheck), "the monitor's own check (the sender lock's) changed: a full run")
})

t.test('a changed config or strategy file is never trusted', async (t) => {
  const h = await setup(t)
  writeFileSync(h.config, `${configYaml(h.stateDir, { strategy: h.strategy })}# edited\n`)
  t.notOk(h.quiet(allUp), 'config edited: a full run')
  await h.full('storage', allUp)
  t.ok(h.quiet(allUp), 'after one full run with it: quiet again')
  writeFileSync(h.strategy, 'sequence: [storage]\nmatrix:\n  - { health: [down], action: [] }\n')
  t.notOk(h.quiet(allUp), 'strategy edited: a full run')
})

t.test('a file changed just before a full run started leaves no note to trust', async (t) => {
  const h = await setup(t)
  const note = readFileSync(notePath(h.runtime, h.config), 'utf8')
  writeFileSync(h.config, `${configYaml(h.stateDir, { strategy: h.strategy })}# edited\n`)
  await h.full('storage', allUp, () => new Date()) // started just after the edit
  t.equal(readFileSync(notePath(h.runtime, h.config), 'utf8'), note, 'no note for the new file')
  t.notOk(h.quiet(allUp), 'and the former one is not trusted')
})

t.test('a file changed while a full run read it (after it started) leaves no note, however long the run took', async (t) => {
  const h = await setup(t)
  const startedAt = Date.now()
  writeFileSync(h.strategy, STRATEGY.replace('recovery', 'recovery ')) // after the run read it
  await new Promise((r) => setTimeout(r, 2100)) // the run is slow: the change has settled by its end
  rmSync(notePath(h.runtime, h.config))
  await rememberRun({
    configPath: h.config,
    files: [h.strategy],
    startedAt,
    stateDir: h.stateDir,
    lockCheck: 'masakari-consul',
    localRecord: true,
  })
  t.notOk(existsSync(notePath(h.runtime, h.config)), 'the run read the former strategy: no note')
})

t.test('work waiting (the wake file) makes every run full', async (t) => {
  const h = await setup(t)
  writeFileSync(join(h.stateDir, 'wake'), `${Math.ceil(Date.now() / 1000) + 30}\n`)
  t.notOk(h.quiet(allUp))
})

t.test('a full run forgets what it saw until it has succeeded', async (t) => {
  const h = await setup(t)
  // A state.json that cannot be read: the run fails after it has forgotten the digest.
  chmodSync(h.stateDir, 0o755)
  writeFileSync(join(h.stateDir, 'state.json'), '{ torn')
  const deps = fakeDeps({ stdin: allUp })
  t.not(await main(['--network', 'storage', '--config', h.config], deps), 0, 'the run fails')
  t.notOk(existsSync(seenPath(h.stateDir, 'storage')), 'nothing seen')
  t.notOk(h.quiet(allUp), 'so the next run is full too')
})

t.test('anything the full run would refuse is a full run: it says what is wrong', async (t) => {
  const h = await setup(t)
  for (const [what, stdin] of [
    ['empty array', '[]'],
    ['not JSON', '[{'],
    ['bad status', JSON.stringify([check('cmp1', 'bogus')])],
    ['not UTF-8', '\uFFFD'],
  ] as const)
    t.notOk(h.quiet(stdin), what)
  t.notOk(isQuietRun('storage', h.config, Buffer.from([0xff, 0xfe]), h.runtime), 'invalid UTF-8')
})

t.test('a runtime directory others can write is not trusted', async (t) => {
  const h = await setup(t)
  chmodSync(h.runtime, 0o777)
  t.equal(ownRuntimeDir(h.runtime), undefined)
  chmodSync(h.runtime, 0o700)
  t.equal(ownRuntimeDir(h.runtime), h.runtime)
  mkdirSync(join(h.dir, 'not-a-dir-parent'))
  writeFileSync(join(h.dir, 'not-a-dir-parent', 'file'), '')
  t.equal(ownRuntimeDir(join(h.dir, 'not-a-dir-parent', 'file')), undefined, 'a file in its place')
  t.match(notePath(h.runtime, h.config), /%2F.*config\.yaml\.json$/, 'one note per config path')
})

t.test('the digest is exact: one line per looked-at check, in payload order', async (t) => {
  const checks = [check('a', 'passing'), check('a', 'passing', 'service:x'), check('b', 'critical', 'masakari-consul')]
  const parsed = JSON.parse(JSON.stringify(checks))
  t.equal(payloadDigest(parsed, 'masakari-consul'), 'a\tserfHealth\tpassing\nb\tmasakari-consul\tcritical\n')
  t.equal(payloadDigest(parsed, 'other'), 'a\tserfHealth\tpassing\n')
})

/** The note's content, as a full run wrote it: planted elsewhere, it would make the run quiet. */
function plantNote(h: Awaited<ReturnType<typeof setup>>, planted: string): void {
  mkdirSync(planted, { recursive: true })
  copyFileSync(notePath(h.runtime, h.config), notePath(planted, h.config))
}

t.test('a runtime directory others may write is not trusted on read either (issue #18, 3)', async (t) => {
  const h = await setup(t)
  const planted = join(h.dir, 'planted')
  plantNote(h, planted)
  chmodSync(planted, 0o700)
  t.ok(isQuietRun('storage', h.config, bytes(allUp), planted), 'ours, 0700: trusted')
  chmodSync(planted, 0o777)
  t.notOk(isQuietRun('storage', h.config, bytes(allUp), planted), 'mode 0777: a full run')
  chmodSync(planted, 0o750)
  t.notOk(isQuietRun('storage', h.config, bytes(allUp), planted), 'group bits: a full run')
})

t.test(
  'a runtime directory another user made is not trusted on read',
  { skip: process.getuid?.() === 0 ? false : 'needs root to chown' },
  async (t) => {
    const h = await setup(t)
    const planted = join(h.dir, 'planted')
    plantNote(h, planted)
    chmodSync(planted, 0o700)
    chownSync(planted, 65534, 65534)
    t.notOk(isQuietRun('storage', h.config, bytes(allUp), planted), 'owned by uid 65534: a full run')
  },
)

t.test('a symlink in the runtime directory’s place is not trusted; a missing one is not made', async (t) => {
  const h = await setup(t)
  const link = join(h.dir, 'link')
  symlinkSync(h.runtime, link)
  t.notOk(isQuietRun('storage', h.config, bytes(allUp), link), 'a symlink to our own directory: a full run')
  const missing = join(h.dir, 'missing')
  t.notOk(isQuietRun('storage', h.config, bytes(allUp), missing))
  t.notOk(existsSync(missing), 'the read path makes no directory')
})

t.test('a strategy replaced in place with the same size and mtime (cp -p) is seen: its ctime moved', async (t) => {
  const h = await setup(t)
  // A whole second: utimes keeps it exactly, as cp -p does the source's.
  utimesSync(h.strategy, 1_700_000_000, 1_700_000_000)
  await h.full('storage', allUp)
  t.ok(h.quiet(allUp))
  const before = statSync(h.strategy)
  writeFileSync(h.strategy, STRATEGY.replace('recovery', 'RECOVERY'))
  utimesSync(h.strategy, 1_700_000_000, 1_700_000_000)
  const after = statSync(h.strategy)
  t.same([after.ino, after.size, after.mtimeMs], [before.ino, before.size, before.mtimeMs], 'only ctime differs')
  t.notOk(h.quiet(allUp), 'a full run')
})

const UPSTREAM = '[DEFAULT]\nhostname = controller\n\n[consul]\nmatrix_config_file = upstream-matrix.yaml\n'

t.test('upstreamConfig, and the matrix it names, are files the quiet run checks', async (t) => {
  const files = { 'masakarimonitors.conf': UPSTREAM, 'upstream-matrix.yaml': STRATEGY }
  const h = await setup(t, { upstreamConfig: 'masakarimonitors.conf', strategy: undefined }, files)
  const [upstream, matrix] = [join(h.dir, 'masakarimonitors.conf'), join(h.dir, 'upstream-matrix.yaml')]
  const note = JSON.parse(readFileSync(notePath(h.runtime, h.config), 'utf8'))
  t.same(
    note.files.map((f: { path: string }) => f.path),
    [h.config, matrix, upstream],
    'config, the matrix (config.strategy), upstreamConfig',
  )
  writeFileSync(upstream, UPSTREAM.replace('controller', 'controller-2'))
  t.notOk(h.quiet(allUp), 'upstreamConfig edited: a full run')
  await h.full('storage', allUp)
  t.ok(h.quiet(allUp), 'after one full run with it: quiet again')
  writeFileSync(matrix, STRATEGY.replace('[recovery]', '[]'))
  t.notOk(h.quiet(allUp), 'its matrix_config_file edited: a full run')
})

t.test('a note of the former format (version 1) is not trusted', async (t) => {
  const h = await setup(t)
  const note = JSON.parse(readFileSync(notePath(h.runtime, h.config), 'utf8'))
  const v1 = { version: 1, config: note.files[0].id, strategy: note.files[1], stateDir: note.stateDir, lockCheck: note.lockCheck }
  writeFileSync(notePath(h.runtime, h.config), JSON.stringify(v1))
  t.notOk(h.quiet(allUp))
})

t.test('a quiet note that cannot be written fails nothing: the full run exits 0 (issue #18, 7)', async (t) => {
  const h = await setup(t)
  // A directory where the note goes: its rename fails (EISDIR), as a read-only dir would (EROFS).
  rmSync(notePath(h.runtime, h.config))
  mkdirSync(notePath(h.runtime, h.config))
  await h.full('storage', cmp1Down)
  await h.full('storage', allUp)
  t.notOk(h.quiet(allUp), 'and no run is quiet meanwhile')
})

t.test('a deleted snapshot, with the digest left beside it, is not quiet', async (t) => {
  const h = await setup(t)
  rmSync(join(h.stateDir, 'snapshots', 'storage.json'))
  t.ok(existsSync(seenPath(h.stateDir, 'storage')), 'the digest remains')
  t.notOk(h.quiet(allUp))
})

t.test('a deleted state.json, with the digest left, is not quiet', async (t) => {
  const h = await setup(t)
  rmSync(join(h.stateDir, 'state.json'))
  t.notOk(h.quiet(allUp))
})

t.test('with the record in Consul KV (several controllers), state.json is not asked for: runs stay quiet', async (t) => {
  const h = await setup(t)
  rmSync(join(h.stateDir, 'state.json'))
  const path = notePath(h.runtime, h.config)
  writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf8')), localRecord: false }))
  t.ok(h.quiet(allUp), 'quiet without state.json: the record is not there')
})

t.test('a snapshot replaced by another (a stale run, a restore) is not the one the digest names', async (t) => {
  const h = await setup(t)
  const snapshot = join(h.stateDir, 'snapshots', 'storage.json')
  const other = `${snapshot}.other`
  writeFileSync(other, readFileSync(snapshot))
  renameSync(other, snapshot)
  t.notOk(h.quiet(allUp), 'same content, another file: a full run')
  await h.full('storage', allUp)
  t.ok(h.quiet(allUp), 'the next full run names it: quiet again')
})

t.test('a digest torn at a line boundary (a crash while writing it) is not trusted', async (t) => {
  const h = await setup(t)
  const text = readFileSync(seenPath(h.stateDir, 'storage'), 'utf8')
  const lines = text.split('\n')
  writeFileSync(seenPath(h.stateDir, 'storage'), `${lines.slice(0, 2).join('\n')}\n`)
  // The payload that digest would describe: the first node alone.
  const first = payload({ controller: 'passing' })
  t.equal(`${lines[1]}\n`, payloadDigest(JSON.parse(first), 'masakari-consul'), 'the torn digest is a whole one of a smaller payload')
  t.notOk(h.quiet(first))
})
