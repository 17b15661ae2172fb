/**
 * One handler run in-process, with the time of each stage (for bench section 2's breakdown):
 * `node bench/out/stages.js --config FILE --payload FILE [--network storage]`. Prints one JSON
 * line of milliseconds. Same library code as dist/checks-handler.js, without the CLI layer.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { nodeStates } from '../lib/consul/checks-payload.js'
import { parseChecks } from '../lib/consul/consul-input.js'
import { loadMonitor } from '../lib/run/load-monitor.js'
import { recordRun } from '../lib/run/record-run.js'
import type { Network } from '../lib/base/networks.js'
import { realDeps } from '../lib/commands/runtime.js'
import { writeSnapshot } from '../lib/state/snapshot.js'

const loaded = performance.now()
const { values } = parseArgs({
  options: { config: { type: 'string' }, payload: { type: 'string' }, network: { type: 'string', default: 'storage' } },
})
const deps = { ...realDeps(), spawnWorker: () => {}, stderr: () => {} }
const network = values.network as Network
const marks: Record<string, number> = { 'node start + bundle load': loaded }
let t = performance.now()
const lap = (name: string) => {
  const now = performance.now()
  marks[name] = now - t
  t = now
}
const monitor = await loadMonitor(values.config!, deps, `checks-handler/${network}`)
lap('config + strategy')
const text = readFileSync(values.payload!, 'utf8')
lap('read payload')
const nodes = nodeStates(parseChecks(text))
lap('validate + reduce checks')
await writeSnapshot(monitor.config.stateDir, { version: 1, network, consulIndex: '1', receivedAt: new Date().toISOString(), nodes })
lap('write snapshot (fsync)')
await recordRun(monitor, deps)
lap('lock + read state/snapshots + evaluate + log')
marks.total = performance.now()
process.stdout.write(`${JSON.stringify(marks)}\n`)
