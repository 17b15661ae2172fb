/** Atomic writes: leftovers of a killed write are cleaned up; modes never follow the umask. */
import t, { type Test } from 'tap'
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../lib/state/atomic-file.js'

function withUmask(t: Test, mask: number) {
  const before = process.umask(mask)
  t.teardown(() => {
    process.umask(before)
  })
}

t.test("a killed write's temp files are removed at the next write there: only ours, only when a minute old", async (t) => {
  const dir = t.testdir({
    'state.json': '{}',
    '.state.json.4242.0badc0de.tmp': 'killed mid-write',
    '.management.json.77.deadbeef.tmp': 'killed mid-write too',
    '.state.json.4243.12345678.tmp': 'a write in progress elsewhere',
    '.other.tmp': 'not ours',
    'notes.4242.0badc0de.tmp': 'not ours either (no leading dot)',
  })
  const old = new Date(Date.now() - 120_000)
  for (const name of ['.state.json.4242.0badc0de.tmp', '.management.json.77.deadbeef.tmp', '.other.tmp', 'notes.4242.0badc0de.tmp'])
    await utimes(join(dir, name), old, old)
  await writeFileAtomic(join(dir, 'state.json'), '{"n":1}', 0o600)
  t.same((await readdir(dir)).sort(), ['.other.tmp', '.state.json.4243.12345678.tmp', 'notes.4242.0badc0de.tmp', 'state.json'])
  t.equal(await readFile(join(dir, 'state.json'), 'utf8'), '{"n":1}')
})

for (const mask of [0o000, 0o077]) {
  t.test(`modes under umask ${mask.toString(8).padStart(3, '0')}: files as asked, new directories 0750`, async (t) => {
    withUmask(t, mask)
    const dir = t.testdir({})
    await writeFileAtomic(join(dir, 'state', 'state.json'), '{}', 0o600)
    await writeFileAtomic(join(dir, 'state', 'snapshots', 'storage.json'), '{}')
    t.equal((await stat(join(dir, 'state', 'state.json'))).mode & 0o777, 0o600)
    t.equal((await stat(join(dir, 'state', 'snapshots', 'storage.json'))).mode & 0o777, 0o640, 'snapshots: 0640 by default')
    t.equal((await stat(join(dir, 'state'))).mode & 0o777, 0o750)
    t.equal((await stat(join(dir, 'state', 'snapshots'))).mode & 0o777, 0o750)
  })
}

t.test('an existing state directory keeps its mode', async (t) => {
  const dir = t.testdir({ state: {} })
  const { chmod } = await import('node:fs/promises')
  await chmod(join(dir, 'state'), 0o700)
  await writeFile(join(dir, 'state', 'x'), '')
  await writeFileAtomic(join(dir, 'state', 'state.json'), '{}', 0o600)
  t.equal((await stat(join(dir, 'state'))).mode & 0o777, 0o700)
})
