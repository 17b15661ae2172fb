// Everything a fresh clone needs before tests or the demo: npm packages, the real stack's
// Debian packages (Consul 1.8.7, Keystone, masakari-api), and the bundles. Idempotent.
// Node builtins only: it runs before node_modules exists.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

function step(title, cmd, args, opts = {}) {
  const started = Date.now()
  process.stderr.write(`[prepare] ${title}…\n`)
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...opts })
  if (r.status !== 0) {
    process.stderr.write(`[prepare] FAILED: ${title} (${cmd} ${args.join(' ')} exited ${r.status ?? r.signal})\n`)
    process.exit(1)
  }
  process.stderr.write(`[prepare] ${title}: done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
}

export function prepare({ stack = true } = {}) {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const installed = existsSync(join(root, 'node_modules', '.package-lock.json'))
  step(installed ? 'npm packages (checking)' : 'npm packages (installing)', npm, ['install', '--no-audit', '--no-fund', '--loglevel=error'])
  if (stack)
    step('Consul, Keystone, masakari-api, fence-agents and ipmi_sim from Debian', 'bash', [join(root, 'scripts', 'install-stack.sh')])
  step('bundles (esbuild)', process.execPath, [join(root, 'build.mjs')])
}

if (process.argv[1] === fileURLToPath(import.meta.url)) prepare()
