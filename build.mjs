// Bundles each handler into one self-contained file that runs with `node` alone.
import * as esbuild from 'esbuild'
import { createHash } from 'node:crypto'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'

const readJson = (path) => JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8'))
// `--version` prints the package's version, fixed in the bundle at build time.
const { version } = readJson('./package.json')
// What opens the trailing comment that carries the full handler; lib/run/embedded.ts, which
// reads it, imports the same file. (A JSON file: this script and the TypeScript both read it as
// it is, with no build step; read here, not imported, as node < 20.10 knows no `with`.)
const FULL_MARKER = readJson('./lib/run/full-marker.json')
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  minify: true,
  define: { MASAKARI_CONSUL_VERSION: JSON.stringify(version) },
  logLevel: 'info',
}

// The checks handler's full part, as CommonJS text: dist/checks-handler.js carries it in a
// trailing comment and compiles it only for a run that is not quiet. lib/run/embedded.ts's
// module comment says how (and why `import()` cannot be used in it).
const full = await esbuild.build({
  ...common,
  stdin: {
    contents: "export { main } from './handlers/checks-handler.ts'; export { realDeps } from './lib/commands/runtime.ts'",
    resolveDir: import.meta.dirname,
    sourcefile: 'full-handler.ts',
    loader: 'ts',
  },
  format: 'cjs',
  // One function expression, what lib/run/embedded.ts compiles and calls with these arguments,
  // in this order. The wrapper is part of the output, so the source map counts its line and the
  // id below hashes exactly the text V8 compiles.
  banner: { js: '(function (exports, require, module, __filename, __dirname, __importMeta) {' },
  footer: { js: '})' },
  define: { ...common.define, 'import.meta': '__importMeta' },
  // Not written: esbuild names the map after it (`linked` ends the code with
  // `//# sourceMappingURL=checks-handler.full.js.map`) and makes the map's sources, ../lib/….ts,
  // relative to it.
  outfile: 'dist/checks-handler.full.js',
  sourcemap: 'linked',
  sourcesContent: false,
  write: false,
  logLevel: 'warning',
})
const fullOutput = (ext) => full.outputFiles.find((f) => f.path.endsWith(ext)).text
const fullCode = fullOutput('.js')
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
// The full part rides in a trailing comment, base64 (lib/run/embedded.ts says why).
await esbuild.build({
  ...esm,
  entryPoints: { 'checks-handler': 'handlers/checks-handler-entry.ts' },
  footer: { js: `/*${FULL_MARKER} ${fullId} ${Buffer.from(fullCode).toString('base64')}*/` },
})
// The full part's source map, for its stack traces (lib/run/embedded.ts), with the code's id: a
// map of another build is not used. Next to the bundle; not in the package.
const fullMap = { ...JSON.parse(fullOutput('.map')), x_masakari_consul_id: fullId }
writeFileSync('dist/checks-handler.full.js.map', JSON.stringify(fullMap))
