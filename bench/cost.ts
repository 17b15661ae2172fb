/**
 * Section 2, handler cost: one handler run with nothing to decide (a state directory already
 * holding the same snapshots) against `node -e 0`, alternating; bare bundle load (`--help`);
 * what each dependency costs to load alone; where an in-process run spends its time.
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { HANDLER, offlineConfig } from './common.js'
import { checksPayload } from './payloads.js'
import { BENCH_DIR, ROOT, run, runOk } from './proc.js'
import { round, summarize, type Summary } from './stats.js'

export interface CostResult {
  runs: number
  payload: { hosts: number; checks: number; bytes: number }
  bareNodeMs: Summary
  handlerMs: Summary
  helpMs: Summary
  /** handler / `node -e 0`, per alternating pair. */
  ratio: Summary
  helpRatio: Summary
  bundleBytes: number
  /** Each dependency bundled alone (minified ESM like dist/), wall time over `node -e 0`. */
  dependencies: Array<{ name: string; bytes: number; ms: Summary; ratio: Summary }>
  /** In-process stage timings of one cold run (bench/stages.ts), medians over runs. */
  stages: Record<string, Summary>
}

// Each as the handler uses it: zod with one small schema (the namespace object of classic zod
// keeps all of it; zod/mini tree-shakes to what is used), yargs with its helpers, etc.
const SCHEMA = '.object({ Node: z.string(), Status: z.enum(["passing", "critical"]) })'
const DEPS: Array<{ name: string; code: string }> = [
  {
    name: 'zod (classic), one schema',
    code: `import { z } from 'zod'; globalThis.__dep = z${SCHEMA}.parse({ Node: 'a', Status: 'passing' })`,
  },
  {
    name: 'zod/mini, one schema',
    code: `import * as z from 'zod/mini'; globalThis.__dep = z${SCHEMA}.parse({ Node: 'a', Status: 'passing' })`,
  },
  {
    name: 'yargs + helpers',
    code: "import yargs from 'yargs'; import { hideBin } from 'yargs/helpers'; globalThis.__dep = [yargs, hideBin]",
  },
  { name: 'yaml', code: "import { parse } from 'yaml'; globalThis.__dep = parse('a: 1')" },
  { name: 'proper-lockfile', code: "import l from 'proper-lockfile'; globalThis.__dep = l" },
  { name: 'node-fetch', code: "import f from 'node-fetch'; globalThis.__dep = f" },
]

async function buildDeps(outDir: string): Promise<Array<{ name: string; file: string; bytes: number }>> {
  const esbuild = await import('esbuild')
  mkdirSync(outDir, { recursive: true })
  const out = []
  for (const [i, dep] of DEPS.entries()) {
    const file = join(outDir, `dep-${i}.mjs`)
    await esbuild.build({
      stdin: { contents: dep.code, resolveDir: ROOT, loader: 'js' },
      outfile: file,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      minify: true,
      banner: {
        js: "import { createRequire as __mcCreateRequire } from 'node:module'; const require = __mcCreateRequire(import.meta.url);",
      },
      logLevel: 'error',
    })
    out.push({ name: dep.name, file, bytes: statSync(file).size })
  }
  return out
}

export async function handlerCost(opts: { runs: number; dir: string; log: (m: string) => void }): Promise<CostResult> {
  const { dir, log } = opts
  mkdirSync(dir, { recursive: true })
  const config = offlineConfig(join(dir, 'monitor'))
  const hosts = 10
  const text = checksPayload({ hosts, servicesPerHost: 10 })
  const payload = join(dir, 'payload.json')
  writeFileSync(payload, text)
  // The state directory holds the same snapshots: every measured run decides nothing new.
  for (const network of ['management', 'tenant', 'storage']) {
    await runOk(process.execPath, [HANDLER, '--network', network, '--config', config], { pipeFile: payload })
  }
  const handlerArgs = [HANDLER, '--network', 'storage', '--config', config]
  // Warm the page cache for node and the bundle before anything is timed.
  for (let i = 0; i < 3; i++) {
    await runOk(process.execPath, ['-e', '0'])
    await runOk(process.execPath, handlerArgs, { pipeFile: payload })
  }
  const bare: number[] = []
  const handler: number[] = []
  const help: number[] = []
  log(`handler cost: ${opts.runs} alternating runs each of node -e 0, the handler (no change), --help`)
  for (let i = 0; i < opts.runs; i++) {
    bare.push((await runOk(process.execPath, ['-e', '0'], { pipeFile: payload })).ms)
    handler.push((await runOk(process.execPath, handlerArgs, { pipeFile: payload })).ms)
    // --help prints the usage, then the handler exits 64 (--network missing): only the time counts.
    const h = await run(process.execPath, [HANDLER, '--help'])
    if (!/--network/.test(h.stdout + h.stderr)) throw new Error(`checks-handler.js --help printed no usage: ${h.stderr}`)
    help.push(h.ms)
  }
  const ratio = handler.map((h, i) => h / bare[i]!)
  const helpRatio = help.map((h, i) => h / bare[i]!)

  log('handler cost: each dependency bundled alone')
  const deps = await buildDeps(join(BENCH_DIR, 'out', 'deps'))
  const dependencies = []
  const depRuns = Math.max(10, Math.round(opts.runs / 2))
  for (const dep of deps) {
    const ms: number[] = []
    const base: number[] = []
    for (let i = 0; i < depRuns; i++) {
      base.push((await runOk(process.execPath, ['-e', '0'])).ms)
      ms.push((await runOk(process.execPath, [dep.file])).ms)
    }
    dependencies.push({
      name: dep.name,
      bytes: dep.bytes,
      ms: summarize(ms, 1),
      ratio: summarize(
        ms.map((m, i) => m / base[i]!),
        2,
      ),
    })
  }

  log('handler cost: in-process stages')
  const stageRuns: Array<Record<string, number>> = []
  for (let i = 0; i < Math.min(opts.runs, 10); i++) {
    const r = await runOk(process.execPath, [join(BENCH_DIR, 'out', 'stages.js'), '--config', config, '--payload', payload])
    stageRuns.push(JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, number>)
  }
  const stages: Record<string, Summary> = {}
  for (const key of Object.keys(stageRuns[0] ?? {}))
    stages[key] = summarize(
      stageRuns.map((s) => s[key]!),
      2,
    )

  return {
    runs: opts.runs,
    payload: { hosts: hosts + 1, checks: (hosts + 1) * 11, bytes: text.length },
    bareNodeMs: summarize(bare, 1),
    handlerMs: summarize(handler, 1),
    helpMs: summarize(help, 1),
    ratio: summarize(ratio, 2),
    helpRatio: summarize(helpRatio, 2),
    bundleBytes: statSync(HANDLER).size,
    dependencies,
    stages,
  }
}

export { round }
