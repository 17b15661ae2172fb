// Bundles each handler into one self-contained file that runs with `node` alone.
import * as esbuild from 'esbuild'
import { createHash } from 'node:crypto'
import { chmodSync, readFileSync } from 'node:fs'

// `--version` prints the package's version, fixed in the bundle at build time.
/** lib/run/embedded.ts looks for this (keep them the same). */
const FULL_MARKER = '@masakari-consul-full-handler '

const { version } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'))
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  minify: true,
  define: { MASAKARI_CONSUL_VERSION: JSON.stringify(version) },
  logLevel: 'info',
}

// The checks handler's full part, as CommonJS text: dist/checks-handler.js carries it as a
// string and compiles it only for a run that is not quiet (lib/run/embedded.ts, which passes the
// wrapper's `__importMeta`).
const full = await esbuild.build({
  ...common,
  stdin: {
    contents: "export { main } from './handlers/checks-handler.ts'; export { realDeps } from './lib/commands/runtime.ts'",
    resolveDir: import.meta.dirname,
    sourcefile: 'full-handler.ts',
    loader: 'ts',
  },
  format: 'cjs',
  write: false,
  define: { ...common.define, 'import.meta': '__importMeta' },
  logLevel: 'warning',
})
const fullCode = full.outputFiles[0].text
const fullId = createHash('sha256').update(fullCode).digest('hex').slice(0, 16)

const esm = {
  ...common,
  outdir: 'dist',
  format: 'esm',
  sourcemap: 'linked',
  outExtension: { '.js': '.js' },
  // yargs' ESM build calls require() and createRequire(import.meta.url); give the bundle a
  // require under a name esbuild does not use itself.
  banner: { js: "import { createRequire as __mcCreateRequire } from 'node:module'; const require = __mcCreateRequire(import.meta.url);" },
}
// The operator's CLI keeps its bundle name: operators and the package's bin run evaluate.js.
// demo.js is the local demo (npm run demo); it is not installed on monitors.
await esbuild.build({ ...esm, entryPoints: { evaluate: 'handlers/operator-cli.ts', demo: 'scripts/demo.ts' } })
// Its #! line makes it the `masakari-consul` command; esbuild sets the mode only on a new file.
chmodSync('dist/evaluate.js', 0o755)
// The full part rides in a trailing comment, base64 (no "*/" inside): V8 skips a comment
// faster than it scans a string literal, and a quiet run never reads it.
await esbuild.build({
  ...esm,
  entryPoints: { 'checks-handler': 'handlers/checks-handler-entry.ts' },
  footer: { js: `/*${FULL_MARKER}${fullId} ${Buffer.from(fullCode).toString('base64')}*/` },
})
