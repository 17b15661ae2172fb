// Bundles the benchmark (bench/*.ts) into bench/out/ (git-ignored), the way build.mjs bundles
// the handlers: one file per entry point that runs with `node` alone.
import * as esbuild from 'esbuild'
import { copyFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
await esbuild.build({
  entryPoints: { bench: join(here, 'bench.ts'), stages: join(here, 'stages.ts') },
  outdir: join(here, 'out'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: 'linked',
  banner: { js: "import { createRequire as __mcCreateRequire } from 'node:module'; const require = __mcCreateRequire(import.meta.url);" },
  external: ['esbuild'],
  logLevel: 'warning',
})
// stack/openstack.ts looks for its Python helpers beside the bundle that contains it.
for (const py of ['masakari-api-launcher.py', 'etc-paths.py']) copyFileSync(join(here, '..', 'stack', py), join(here, 'out', py))
