// `npm test`: set everything up, type-check, run the unit tests, then the end-to-end tests
// on the real stack (one file at a time: they start real services on 2 cores).
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { prepare } from './prepare.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const started = Date.now()
prepare()

function run(title, args) {
  process.stderr.write(`\n[test] ${title}\n`)
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) {
    process.stderr.write(`[test] FAILED: ${title}\n`)
    process.exit(r.status ?? 1)
  }
}

const tap = join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs')
// Run by `npm run test:controllers`, not here: on 2 shared cores their three-server clusters
// have failed a leader election or an ACL start-up now and then (see the README).
const SEPARATE = ['controllers-stack.ts', 'controllers-acl.ts']
const files = (dir) =>
  readdirSync(join(root, dir))
    .filter((f) => f.endsWith('.ts') && !['helpers.ts', 'fake-fence-agent.ts', 'harness.ts', 'scenarios.ts', ...SEPARATE].includes(f))
    .map((f) => join(dir, f))
const only = process.argv.slice(2)

run('format and lint (biome ci)', [join(root, 'node_modules', '@biomejs', 'biome', 'bin', 'biome'), 'ci', '.'])
// The architecture's rules (.dependency-cruiser.cjs): no import cycle, lib/decide/ pure, imports point down.
run('dependency rules (depcruise)', [
  join(root, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs'),
  'lib',
  'handlers',
  '--config',
  '.dependency-cruiser.cjs',
])
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
run('type check (tsc --noEmit, strict)', [tsc, '--noEmit'])
run('type check of the bench (tsc --noEmit -p bench)', [tsc, '--noEmit', '-p', join(root, 'bench')])
if (only.length > 0) run(`tap ${only.join(' ')}`, [tap, ...only])
else {
  run('unit tests', [tap, ...files('test')])
  run('end-to-end tests on the real stack', [tap, '--jobs=1', ...files('test/e2e')])
}
process.stderr.write(`\n[test] all passed in ${((Date.now() - started) / 1000).toFixed(0)} s\n`)
