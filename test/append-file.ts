/** Appended files: no symlinks followed, explicit modes, worker.stderr capped. */
import t, { type Test } from 'tap'
import { closeSync, writeSync } from 'node:fs'
import { readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openAppend, openWorkerStderr, rotateIfOver, SymlinkError, WORKER_STDERR_MAX } from '../lib/state/append-file.js'

function withUmask(t: Test, mask: number) {
  const before = process.umask(mask)
  t.teardown(() => {
    process.umask(before)
  })
}

const append = (path: string, text: string) => {
  const fd = openAppend(path)
  writeSync(fd, text)
  closeSync(fd)
}

t.test('a symlink in place of the log is refused; nothing is written through it', async (t) => {
  const dir = t.testdir({ 'target.txt': 'precious\n' })
  await symlink(join(dir, 'target.txt'), join(dir, 'decisions.log'))
  t.throws(() => openAppend(join(dir, 'decisions.log')), {
    name: 'SymlinkError',
    message: /decisions\.log is a symlink: not written through it/,
  })
  t.throws(() => openAppend(join(dir, 'decisions.log')), SymlinkError)
  t.equal(await readFile(join(dir, 'target.txt'), 'utf8'), 'precious\n')
})

for (const mask of [0o000, 0o077]) {
  t.test(`created with mode 0640 and its directory 0750 under umask ${mask.toString(8).padStart(3, '0')}`, async (t) => {
    withUmask(t, mask)
    const dir = t.testdir({})
    append(join(dir, 'logs', 'deep', 'decisions.log'), 'one\n')
    append(join(dir, 'logs', 'deep', 'decisions.log'), 'two\n')
    t.equal(await readFile(join(dir, 'logs', 'deep', 'decisions.log'), 'utf8'), 'one\ntwo\n')
    t.equal((await stat(join(dir, 'logs', 'deep', 'decisions.log'))).mode & 0o777, 0o640)
    t.equal((await stat(join(dir, 'logs'))).mode & 0o777, 0o750)
    t.equal((await stat(join(dir, 'logs', 'deep'))).mode & 0o777, 0o750)
  })
}

t.test('an existing log keeps the mode the operator gave it', async (t) => {
  const dir = t.testdir({})
  await writeFile(join(dir, 'decisions.log'), 'old\n', { mode: 0o644 })
  append(join(dir, 'decisions.log'), 'new\n')
  t.equal((await stat(join(dir, 'decisions.log'))).mode & 0o777, 0o644)
  t.equal(await readFile(join(dir, 'decisions.log'), 'utf8'), 'old\nnew\n')
})

t.test('rotateIfOver moves a file over the limit to .1 (replacing the older one) and leaves others', async (t) => {
  const dir = t.testdir({ big: 'x'.repeat(11), small: 'x'.repeat(10), 'big.1': 'oldest' })
  t.equal(rotateIfOver(join(dir, 'big'), 10), true)
  t.equal(rotateIfOver(join(dir, 'small'), 10), false)
  t.equal(rotateIfOver(join(dir, 'absent'), 10), false)
  t.same((await readdir(dir)).sort(), ['big.1', 'small'])
  t.equal(await readFile(join(dir, 'big.1'), 'utf8'), 'x'.repeat(11))
})

t.test("worker.stderr: rotated at a worker's start once over 1 MiB, so it cannot grow without limit", async (t) => {
  const dir = t.testdir({})
  const path = join(dir, 'worker.stderr')
  await writeFile(path, 'a'.repeat(WORKER_STDERR_MAX))
  const first = openWorkerStderr(dir)
  t.ok(first.fd !== undefined)
  writeSync(first.fd!, 'b')
  closeSync(first.fd!)
  t.equal((await stat(path)).size, WORKER_STDERR_MAX + 1, 'at the limit: appended to')
  const second = openWorkerStderr(dir)
  writeSync(second.fd!, 'crash trace\n')
  closeSync(second.fd!)
  t.equal(await readFile(path, 'utf8'), 'crash trace\n', 'over it: a fresh file')
  t.equal((await stat(`${path}.1`)).size, WORKER_STDERR_MAX + 1, 'the previous one kept as .1')
  t.equal(WORKER_STDERR_MAX, 1 << 20)
})

t.test('worker.stderr as a symlink: a warning, the worker runs without it, nothing written through it', async (t) => {
  const dir = t.testdir({ 'target.txt': 'precious\n' })
  await symlink(join(dir, 'target.txt'), join(dir, 'worker.stderr'))
  const { fd, warning } = openWorkerStderr(dir)
  t.equal(fd, undefined)
  t.match(warning, /worker's stderr is discarded: .*worker\.stderr is a symlink/)
  t.equal(await readFile(join(dir, 'target.txt'), 'utf8'), 'precious\n')
})
