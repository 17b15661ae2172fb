import t from 'tap'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../lib/atomic-file.js'
import { LockError, tryLock, withLock } from '../lib/lock.js'
import { readSnapshots, writeSnapshot } from '../lib/snapshot.js'
import { StateFileError } from '../lib/state-errors.js'
import { emptyState, localStore } from '../lib/store.js'

t.test('atomic write leaves no temp files and sets the mode', async (t) => {
  const dir = t.testdir({})
  await writeFileAtomic(join(dir, 'a', 'f.json'), 'one', 0o600)
  await writeFileAtomic(join(dir, 'a', 'f.json'), 'two', 0o600)
  t.equal(await readFile(join(dir, 'a', 'f.json'), 'utf8'), 'two')
  t.same(await readdir(join(dir, 'a')), ['f.json'])
  t.equal((await stat(join(dir, 'a', 'f.json'))).mode & 0o777, 0o600)
})

t.test('snapshots round-trip; a corrupt one is named', async (t) => {
  const dir = t.testdir({})
  await writeSnapshot(dir, {
    version: 1,
    network: 'storage',
    consulIndex: '42',
    receivedAt: '2026-11-25T12:00:00.000Z',
    nodes: { cmp1: 'down' },
  })
  t.same(Object.keys(await readSnapshots(dir)), ['storage'])
  await writeFile(join(dir, 'snapshots', 'tenant.json'), '{"version":1,"network":"tenant"')
  await t.rejects(readSnapshots(dir), { name: 'StateFileError', message: /tenant\.json: not valid JSON/ })
  await writeFile(
    join(dir, 'snapshots', 'tenant.json'),
    '{"version":1,"network":"tenant","consulIndex":"1","receivedAt":"x","nodes":{"a":"sideways"}}',
  )
  await t.rejects(readSnapshots(dir), StateFileError)
})

t.test('store: empty at first, transact persists, a throwing transaction writes nothing', async (t) => {
  const dir = t.testdir({})
  const store = localStore(dir)
  t.same(await store.read(), emptyState())
  await store.transact(async (s) => ({ next: { ...s, ledger: { cmp1: { firstSeenAt: 'x', phase: 'normal' } } }, result: 1 }))
  t.match(await store.read(), { ledger: { cmp1: { phase: 'normal' } } })
  const before = await readFile(join(dir, 'state.json'), 'utf8')
  await t.rejects(
    store.transact(async () => {
      throw new Error('boom')
    }),
    /boom/,
  )
  t.equal(await readFile(join(dir, 'state.json'), 'utf8'), before)
  t.equal((await stat(join(dir, 'state.json'))).mode & 0o777, 0o600)
})

t.test('transactions never interleave', async (t) => {
  const dir = t.testdir({})
  const store = localStore(dir)
  const bump = () =>
    store.transact(async (s) => {
      const n = Object.keys(s.ledger).length
      await new Promise((r) => setTimeout(r, 5))
      return { next: { ...s, ledger: { ...s.ledger, [`h${n}`]: { firstSeenAt: 'x' } } }, result: undefined }
    })
  await Promise.all(Array.from({ length: 8 }, bump))
  t.equal(Object.keys((await store.read()).ledger).length, 8, 'no lost update')
})

t.test('lock: times out with a clear error; tryLock says when held', async (t) => {
  const dir = t.testdir({})
  const lock = join(dir, 'x.lock')
  const release = await tryLock(lock, () => {})
  t.ok(release)
  t.equal(await tryLock(lock, () => {}), undefined)
  await t.rejects(
    withLock(lock, async () => 1, 200),
    LockError,
  )
  await release!()
  t.equal(await withLock(lock, async () => 2, 200), 2)
})

t.test('two different locks held by one process are both released', async (t) => {
  const dir = t.testdir({})
  const outer = await tryLock(join(dir, 'worker.lock'), () => {})
  t.ok(outer)
  await withLock(join(dir, 'state.lock'), async () => {}, 200)
  await outer!()
  t.same(await readdir(dir), [], 'no lock directory left behind')
  const again = await tryLock(join(dir, 'worker.lock'), () => {})
  t.ok(again, 'free again at once')
  await again!()
})
