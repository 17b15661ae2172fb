/** evaluateAndRecord: what a run writes, and when. */
import t from 'tap'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { LockError } from '../lib/lock.js'
import { evaluateAndRecord, loadMonitor } from '../lib/monitor.js'
import { writeSnapshot } from '../lib/snapshot.js'
import { localStore } from '../lib/store.js'
import { configYaml, fakeDeps, readState } from './helpers.js'

t.test('a run that loses the state lock while stalled writes neither the snapshot nor state.json', async (t) => {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { consul: { agents: { storage: '127.0.0.1:1' } } }))
  // The own-agent question comes between reading the state and writing: stall there (a frozen
  // process) for longer than the lock's stale time.
  const deps = fakeDeps({
    fetch: async () => {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1300)
      throw new Error('connect ECONNREFUSED')
    },
  })
  for (const network of ['management', 'tenant'] as const)
    await writeSnapshot(stateDir, {
      version: 1,
      network,
      consulIndex: '1',
      receivedAt: deps.now().toISOString(),
      nodes: { cmp1: 'up', controller: 'up' },
    })
  const before = (await readdir(join(stateDir, 'snapshots'))).sort()
  const monitor = await loadMonitor(config, deps, 'test')
  monitor.store = localStore(stateDir, 1000, 2000)
  const nodes = Object.assign(Object.create(null), { cmp1: 'down', controller: 'up' })
  const incoming = { version: 1 as const, network: 'storage' as const, consulIndex: '1', receivedAt: deps.now().toISOString(), nodes }
  const err = await evaluateAndRecord(monitor, deps, { dryRun: false, incoming: [incoming] }).catch((e) => e)
  t.type(err, LockError)
  t.match(err.message, /lost the lock/)
  t.equal(await readState(stateDir), undefined, 'no state.json')
  t.same((await readdir(join(stateDir, 'snapshots'))).sort(), before, 'no storage snapshot')
})
