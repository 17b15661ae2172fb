// `node scripts/repeat.mjs FILE N`: run one end-to-end test file N times, each on fresh clusters
// (every run of the file starts its own stack), and print one line per run and a summary.
// `npm test` runs each scenario once; the issues that ask for repetitions name this script.
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { prepare } from './prepare.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const [file, countText = '5'] = process.argv.slice(2)
const count = Number(countText)
if (!file || !Number.isInteger(count) || count < 1) {
  process.stderr.write('usage: node scripts/repeat.mjs test/e2e/FILE.ts [N, default 5]\n')
  process.exit(2)
}
prepare()
const tap = join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs')
const runs = []
for (let i = 1; i <= count; i++) {
  const started = Date.now()
  const r = spawnSync(process.execPath, [tap, '--reporter=tap', '--disable-coverage', file], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  })
  const out = `${r.stdout}${r.stderr}`
  const failed = [...out.matchAll(/^\s*not ok \d+ - (.*)$/gm)].map((m) => m[1])
  const notes = [...out.matchAll(/^\s*# (declared failed.*|Consul's detection.*)$/gm)].map((m) => m[1])
  const passed = r.status === 0 && failed.length === 0
  runs.push({ run: i, passed, seconds: Math.round((Date.now() - started) / 1000), failed, notes })
  process.stdout.write(
    `run ${i}/${count}: ${passed ? 'passed' : `FAILED (${failed.join('; ')})`} in ${runs.at(-1).seconds} s${notes.length ? `; ${notes.join('; ')}` : ''}\n`,
  )
}
const ok = runs.filter((r) => r.passed).length
process.stdout.write(`\n${file}: ${ok} of ${count} runs passed (${new Date().toISOString()})\n`)
process.exit(ok === count ? 0 : 1)
