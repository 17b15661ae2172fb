// `npm run demo [-- --keep]`: set up on a fresh machine, then run the demo.
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { prepare } from './prepare.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
prepare()
const r = spawnSync(process.execPath, [join(root, 'dist', 'demo.js'), ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' })
process.exit(r.status ?? 1)
