/**
 * `npm run bench`: the benchmarks of bench/README.md. Prints a table and writes
 * bench/results.json (date, machine, every figure with its repetitions).
 *
 *   --only cost,scale,mass,latency,versus,controllers,fencing,idle   run some sections (results go to bench/out/results-partial.json)
 *   --no-upstream                    skip the upstream Python monitor's trials
 *   --upstream-default               also upstream at its default 60 s poll (≈ 4 min more)
 *   --trials N   latency trials per mode (default 5)      --runs N   handler-cost runs (default 30)
 *   --reps N     scale repetitions per size (default 7)   --sizes 100,1000,10000
 *   --lone-trials N         trials of each lone-failure-as-deployed latency mode (default: --trials)
 *   --lone-settle S         seconds from such a trial's thaw to the next freeze (default 20)
 *   --compare-dist DIR      an older build's dist/: its handler runs the lone-failure modes too,
 *                           alternating with this checkout's on the same clusters
 *   --versus-trials N       versus: hosts with one trial of ours (hold 0) and one of upstream at 1 s each,
 *                           alternating on one stack (default 9; ours only with --no-upstream)
 *   --first-trials N        versus: fresh installs of ours, the first failure after each (default 3)
 *   --takeover-trials N     controllers: lock holder killed after a compute failure, N times (default 3)
 *   --idle-seconds S        idle: the measuring window (default 300)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort, startOpenStack, type OpenStack } from '../stack/openstack.js'
import { machine } from './common.js'
import { takeover, type TakeoverResult } from './controllers.js'
import { handlerCost, type CostResult } from './cost.js'
import { fencingCost, type FencingResult } from './fencing.js'
import { idleCost, type IdleResult } from './idle.js'
import { detectionLatency, GOSSIP_FAST, LONE_SETTLE_S, type LatencyMode } from './latency.js'
import { massFailure, type MassResult } from './mass.js'
import { pipeline, type PipelineResult } from './pipeline.js'
import { BENCH_DIR, ROOT } from './proc.js'
import { markdown, targets, type Results } from './report.js'
import { scale, type ScaleRow } from './scale.js'
import { versusLatency, type VersusResult } from './versus.js'

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    'no-upstream': { type: 'boolean', default: false },
    'upstream-default': { type: 'boolean', default: false },
    trials: { type: 'string', default: '5' },
    'lone-trials': { type: 'string' },
    'lone-settle': { type: 'string' },
    'compare-dist': { type: 'string' },
    'versus-trials': { type: 'string', default: '9' },
    'first-trials': { type: 'string', default: '3' },
    runs: { type: 'string', default: '30' },
    reps: { type: 'string', default: '7' },
    sizes: { type: 'string', default: '100,1000,10000' },
    keep: { type: 'boolean', default: false },
    'takeover-trials': { type: 'string', default: '3' },
    'fence-pairs': { type: 'string', default: '3' },
    'idle-seconds': { type: 'string', default: '300' },
  },
})
const only = values.only ? new Set(values.only.split(',')) : undefined
const want = (s: string) => !only || only.has(s)
const started = Date.now()
const log = (m: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${m}\n`)

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'masakari-consul-bench-'))
  log(`scratch directory ${dir}`)
  const results: Results = { date: new Date().toISOString(), durationS: 0, machine: machine(), sections: {} }
  // The gossip profile we ship must be a valid agent config with our controller and compute configs.
  results.gossipFastValidates = ['controller', 'compute'].every((role) => {
    try {
      return /valid/i.test(
        execFileSync('consul', ['validate', join(ROOT, 'consul-config', role, 'storage.json'), GOSSIP_FAST], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      )
    } catch {
      return false
    }
  })

  // CPU-bound sections first, with no service running beside them.
  if (want('cost'))
    results.sections.handlerCost = (await handlerCost({ runs: Number(values.runs), dir: join(dir, 'cost'), log })) satisfies CostResult
  if (want('cost'))
    results.sections.pipeline = (await pipeline({
      runs: Math.max(10, Math.round(Number(values.runs) / 2)),
      dir: join(dir, 'pipeline'),
      log,
    })) satisfies PipelineResult
  if (want('scale')) {
    results.sections.scale = (await scale({
      sizes: values.sizes.split(',').map(Number),
      reps: Number(values.reps),
      dir: join(dir, 'scale'),
      log,
    })) satisfies ScaleRow[]
    rmSync(join(dir, 'scale'), { recursive: true, force: true })
  }

  let openstack: OpenStack | undefined
  try {
    if (['mass', 'latency', 'versus', 'controllers', 'idle'].some(want)) {
      log('starting Keystone and masakari-api (duplicate_notification_detection_interval = 0)')
      openstack = await startOpenStack({
        dir: join(dir, 'openstack'),
        keystonePort: await freePort(),
        masakariPort: await freePort(),
        duplicateInterval: 0,
      })
    }
    if (want('mass'))
      results.sections.massFailure = (await massFailure({
        openstack: openstack!,
        dir: join(dir, 'mass'),
        hosts: 100,
        log,
      })) satisfies MassResult
    if (want('latency')) {
      results.sections.latency = (await detectionLatency({
        openstack: openstack!,
        dir: join(dir, 'latency'),
        trials: Number(values.trials),
        loneTrials: Number(values['lone-trials'] ?? values.trials),
        loneSettleS: values['lone-settle'] === undefined ? LONE_SETTLE_S : Number(values['lone-settle']),
        octet: 110,
        upstream: !values['no-upstream'],
        upstreamDefault: values['upstream-default'],
        ...(values['compare-dist'] ? { compareDist: resolve(values['compare-dist']) } : {}),
        log,
      })) satisfies LatencyMode[]
    }
    if (want('versus'))
      results.sections.versus = (await versusLatency({
        openstack: openstack!,
        dir: join(dir, 'versus'),
        trials: Number(values['versus-trials']),
        firstTrials: Number(values['first-trials']),
        settleS: values['lone-settle'] === undefined ? LONE_SETTLE_S : Number(values['lone-settle']),
        octet: 120,
        upstream: !values['no-upstream'],
        log,
      })) satisfies VersusResult
    if (want('controllers'))
      results.sections.takeover = (await takeover({
        openstack: openstack!,
        trials: Number(values['takeover-trials']),
        octet: 190,
        log,
      })) satisfies TakeoverResult
    if (want('fencing'))
      results.sections.fencing = (await fencingCost({
        openstack: openstack!,
        dir: join(dir, 'fencing'),
        pairs: Number(values['fence-pairs']),
        octet: 150,
        log,
      })) satisfies FencingResult
    if (want('idle'))
      results.sections.idle = (await idleCost({
        openstack: openstack!,
        dir: join(dir, 'idle'),
        windowS: Number(values['idle-seconds']),
        // not 200: test/coordination.ts's dev agent binds 127.201.0.1, and a run of it beside the
        // bench talked to our tenant agent (its TTL check and lock made our watch run)
        octet: 220,
        upstream: !values['no-upstream'],
        log,
      })) satisfies IdleResult
  } finally {
    await openstack?.stop()
  }

  results.durationS = Math.round((Date.now() - started) / 1000)
  results.targets = targets(results)
  const file = only ? join(BENCH_DIR, 'out', 'results-partial.json') : join(BENCH_DIR, 'results.json')
  mkdirSync(join(BENCH_DIR, 'out'), { recursive: true })
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`)
  const md = markdown(results)
  writeFileSync(join(BENCH_DIR, 'out', 'results.md'), md)
  process.stdout.write(`\n${md}\n`)
  log(`wrote ${file} and bench/out/results.md in ${results.durationS} s`)
  if (!values.keep) rmSync(dir, { recursive: true, force: true })
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? err}\n`)
    process.exit(1)
  },
)
