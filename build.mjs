// Bundles each handler into one self-contained file that runs with `node` alone.
import * as esbuild from 'esbuild'
import { readFileSync } from 'node:fs'

// `--version` prints the package's version, fixed in the bundle at build time.
const { version } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'))

await esbuild.build({
  // demo.js is the local demo (npm run demo); it is not installed on monitors.
  entryPoints: { 'checks-handler': 'handlers/checks-handler.ts', evaluate: 'handlers/evaluate.ts', demo: 'scripts/demo.ts' },
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: true,
  sourcemap: 'linked',
  outExtension: { '.js': '.js' },
  // yargs' ESM build calls require() and createRequire(import.meta.url); give the bundle a
  // require under a name esbuild does not use itself.
  banner: { js: "import { createRequire as __mcCreateRequire } from 'node:module'; const require = __mcCreateRequire(import.meta.url);" },
  define: { MASAKARI_CONSUL_VERSION: JSON.stringify(version) },
  logLevel: 'info',
})
