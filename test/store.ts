import t from 'tap'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../lib/state/atomic-file.js'
import { LockError, tryLock, withLock } from '../lib/state/lock.js'
import { readSnapshots, writeSnapshot } from '../lib/state/snapshot.js'
import { SnapshotSchema } from '../lib/decide/snapshot-shape.js'
import { StateFileError } from '../lib/state/state-errors.js'
import { localStore } from '../lib/state/store.js'
import { emptyState } from '../lib/decide/state-shape.js'

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

const PROTO_NAMES = ['constructor', 'toString', 'hasOwnProperty', '__proto__']

t.test('prototype-named hosts round-trip through a snapshot, on the fast path and the schema path', async (t) => {
  const dir = t.testdir({})
  const nodes = JSON.parse('{"constructor":"down","toString":"up","hasOwnProperty":"maintenance","__proto__":"down"}')
  await writeSnapshot(dir, { version: 1, network: 'storage', consulIndex: '1', receivedAt: 'x', nodes })
  const fast = (await readSnapshots(dir)).storage!.nodes
  t.same(Object.keys(fast), PROTO_NAMES)
  t.equal(Object.getOwnPropertyDescriptor(fast, '__proto__')?.value, 'down')
  t.equal(JSON.stringify(fast), JSON.stringify(nodes))
  // The schema (which names what is wrong in a bad file) gives the same table.
  const parsed = SnapshotSchema.parse(
    JSON.parse(JSON.stringify({ version: 1, network: 'tenant', consulIndex: '1', receivedAt: 'x', nodes })),
  )
  t.equal(JSON.stringify(parsed.nodes), JSON.stringify(nodes))
  const without = SnapshotSchema.parse({ version: 1, network: 'tenant', consulIndex: '1', receivedAt: 'x', nodes: { cmp1: 'up' } })
  t.equal(without.nodes.constructor, undefined, 'an absent node is absent from the schema output')
  const onlyCmp1 = {
    version: 1 as const,
    network: 'management' as const,
    consulIndex: '1',
    receivedAt: 'x',
    nodes: JSON.parse('{"cmp1":"up"}'),
  }
  await writeSnapshot(dir, onlyCmp1)
  const m = (await readSnapshots(dir)).management!.nodes
  for (const h of PROTO_NAMES) t.equal(m[h], undefined, `${h} absent from a snapshot that does not list it`)
})

t.test('prototype-named hosts round-trip through state.json; an absent one is absent', async (t) => {
  const dir = t.testdir({})
  const store = localStore(dir)
  const empty = await store.read()
  for (const h of PROTO_NAMES) t.equal(empty.ledger[h], undefined, `${h} not in an empty ledger`)
  const ledger = JSON.parse(`{${PROTO_NAMES.map((h) => `"${h}":{"firstSeenAt":"${h}-seen","phase":"recovery"}`).join(',')}}`)
  await store.transact(async (s) => ({ next: { ...s, ledger }, result: undefined }))
  const back = (await store.read()).ledger
  t.same(Object.keys(back), PROTO_NAMES)
  for (const h of PROTO_NAMES) t.equal(Object.getOwnPropertyDescriptor(back, h)?.value?.firstSeenAt, `${h}-seen`, h)
  // And once more through a transaction that rewrites it: nothing lost on the way.
  await store.transact(async (s) => ({ next: { ...s, recoveries: ['r'] }, result: undefined }))
  t.same(Object.keys((await store.read()).ledger), PROTO_NAMES)
})
