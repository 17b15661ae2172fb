// `npm run bench [-- --only cost,scale …]`: set a fresh clone up (npm packages, Consul,
// Keystone, masakari-api, the bundles: scripts/prepare.mjs), then the upstream Python monitor
// for the comparison, then bundle bench/*.ts and run it. Node builtins only.
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { prepare } from '../scripts/prepare.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)

function step(title, cmd, argv) {
  process.stderr.write(`[bench] ${title}…\n`)
  const r = spawnSync(cmd, argv, { cwd: join(here, '..'), stdio: 'inherit' })
  if (r.status !== 0) {
    process.stderr.write(`[bench] FAILED: ${title}\n`)
    process.exit(r.status ?? 1)
  }
}

prepare()
if (!args.includes('--no-upstream')) step('upstream masakari-host-monitor (Debian)', 'bash', [join(here, 'setup-upstream.sh')])
step('bundle bench/ (esbuild)', process.execPath, [join(here, 'build.mjs')])
const r = spawnSync(process.execPath, [join(here, 'out', 'bench.js'), ...args], { cwd: join(here, '..'), stdio: 'inherit' })
process.exit(r.status ?? 1)
