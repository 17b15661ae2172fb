/** The state lock under faults: a long wait, no permission, a frozen holder, a clock stepped back. */
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { exitCodeFor, EXIT } from '../lib/run/cli.js'
import { LockError, tryLock, withLock } from '../lib/state/lock.js'
import { localStore } from '../lib/state/store.js'

const repo = join(import.meta.dirname, '..')

t.test('a held lock is waited for the stated time, not twice as long', async (t) => {
  const lock = join(t.testdir({}), 'state.lock')
  const release = (await tryLock(lock, () => {}))!
  t.teardown(release)
  const started = Date.now()
  const err = await withLock(lock, async () => 1, 1000).catch((e) => e)
  const waited = Date.now() - started
  t.type(err, LockError)
  t.match(err.message, /within 1000 ms/)
  t.ok(waited >= 1000 && waited < 1250, `waited ${waited} ms for a 1000 ms budget`)
  t.equal(exitCodeFor(err), EXIT.lock)
})

t.test(
  'no permission to create the lock: fails at once naming the path and the user, not a lock timeout',
  { skip: !existsSync('/sys') && 'no /sys' },
  async (t) => {
    // mkdir under /sys is refused even to root (EPERM; EACCES for others).
    for (const lock of ['/sys/masakari-consul-test.lock', '/sys/masakari-consul-test/state.lock']) {
      const started = Date.now()
      const err = await withLock(lock, async () => 1, 5000).catch((e) => e)
      t.ok(Date.now() - started < 500, `${lock}: at once (${Date.now() - started} ms)`)
      t.notOk(err instanceof LockError, 'not reported as a lock timeout')
      t.match(err.message, new RegExp(`cannot create the lock ${lock} as user \\S+ \\(uid \\d+\\): permission denied \\((EPERM|EACCES)\\)`))
      t.equal(exitCodeFor(err), EXIT.stateFile)
      t.notMatch(err.message, /\n/, 'one line')
    }
  },
)

t.test('a frozen holder taken over while stalled stops cleanly: one-line error, nothing written, no uncaught error', async (t) => {
  const dir = t.testdir({})
  const store = localStore(dir, 1000, 2000)
  await store.transact(async (s) => ({ next: { ...s, recoveries: ['before'] }, result: undefined }))
  const before = await readFile(join(dir, 'state.json'), 'utf8')
  // Another process waits for our lock to go stale, takes it, holds it a while.
  const other = spawn(
    process.execPath,
    [
      '-e',
      `const lf = require('proper-lockfile'); const p = ${JSON.stringify(join(dir, 'state.lock'))};
       (async () => { for (;;) { try { const r = await lf.lock(p, { lockfilePath: p, realpath: false, stale: 2000 }); console.log('took'); await new Promise((s) => setTimeout(s, 1500)); await r(); return } catch { await new Promise((s) => setTimeout(s, 50)) } } })()`,
    ],
    { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] },
  )
  let out = ''
  other.stdout.on('data', (d) => (out += d))
  const exited = new Promise((r) => other.on('exit', r))
  const err = await store
    .transact(async (s) => {
      // Frozen (SIGSTOP, a starved VM) for longer than the stale time: the heartbeat cannot run.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3500)
      return { next: { ...s, recoveries: ['after'] }, result: undefined }
    })
    .catch((e) => e)
  t.type(err, LockError)
  t.match(err.message, /lost the lock .*state\.lock: .*stalled.*; nothing written$/)
  t.notMatch(err.message, /\n/)
  t.equal(exitCodeFor(err), EXIT.lock)
  t.equal(await readFile(join(dir, 'state.json'), 'utf8'), before, 'state.json as it was')
  await exited
  t.equal(out.trim(), 'took', 'the other process did take the lock over')
  // proper-lockfile's heartbeat notices the takeover on its next timer; it must not throw.
  await new Promise((r) => setTimeout(r, 1200))
})

t.test('a lock dated in the future beyond the skew is stale; one just ahead is respected', async (t) => {
  const dir = t.testdir({})
  const lock = join(dir, 'state.lock')
  await mkdir(lock)
  const inAnHour = new Date(Date.now() + 3600_000)
  await utimes(lock, inAnHour, inAnHour)
  const started = Date.now()
  t.equal(await withLock(lock, async () => 'ran', 2000), 'ran')
  t.ok(Date.now() - started < 500, 'taken at once')
  t.notOk(existsSync(lock), 'and released')
  await mkdir(lock)
  const soon = new Date(Date.now() + 2000)
  await utimes(lock, soon, soon)
  await t.rejects(
    withLock(lock, async () => 'ran', 300),
    LockError,
  )
})

t.test('a write through assertHeld is refused once the lock is lost', async (t) => {
  const dir = t.testdir({})
  const err = await withLock(
    join(dir, 'x.lock'),
    async (lock) => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1200)
      await lock.assertHeld()
      await writeFile(join(dir, 'written'), 'x')
    },
    1000,
    { staleMs: 2000 },
  ).catch((e) => e)
  t.type(err, LockError)
  t.notOk(existsSync(join(dir, 'written')))
})

t.test('the lock directory is 0750 whatever the umask: nobody else can fill it and keep it from being removed', async (t) => {
  const before = process.umask(0)
  t.teardown(() => {
    process.umask(before)
  })
  const lock = join(t.testdir({}), 'state', 'state.lock')
  const mode = await withLock(lock, async () => (await stat(lock)).mode & 0o777, 1000)
  t.equal(mode, 0o750)
  t.equal((await stat(join(lock, '..'))).mode & 0o777, 0o750, 'and the state directory it created')
})
