/**
 * The full handler inside dist/checks-handler.js. The bundle carries it in a trailing comment
 * (build.mjs), base64: V8 skips a comment several times faster than it pre-parses the same
 * code, so a quiet run (lib/quiet-run.ts) never pays for the ~0.9 MB of code it does not run.
 * Every other run reads it from the bundle and compiles it here, with V8's code cache kept in
 * this user's runtime directory: from the second run on, what it needs is not compiled again.
 */
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { basename, dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Script } from 'node:vm'
import type { Deps } from './monitor.js'
import { ownRuntimeDir } from './quiet-run.js'

/** What the full part exports (the `full` entry of build.mjs). */
export interface FullHandler {
  main: (argv: string[], deps: Deps) => Promise<number>
  realDeps: () => Deps
}

/** The wrapper's parameters: CommonJS's, and `import.meta` (build.mjs defines it to this name). */
const PARAMS = 'exports, require, module, __filename, __dirname, __importMeta'

/** build.mjs writes `/*<marker><id> <base64 code>*\/` at the end of the bundle. */
const FULL_MARKER = '@masakari-consul-full-handler '

export class BundleError extends Error {
  override name = 'BundleError'
}

/** The full part's code and id, from the bundle's trailing comment. */
function readFull(bundlePath: string): { code: string; id: string } {
  const text = readFileSync(bundlePath, 'latin1')
  const start = text.lastIndexOf(`/*${FULL_MARKER}`)
  const end = text.indexOf('*/', start)
  if (start < 0 || end < 0)
    throw new BundleError(`${bundlePath}: no full handler inside (a damaged or partial copy? rebuild or reinstall it)`)
  const [id, base64] = text.slice(start + 2 + FULL_MARKER.length, end).split(' ')
  return { id: id!, code: Buffer.from(base64 ?? '', 'base64').toString('utf8') }
}

/**
 * Compiles and runs the full part; `done` saves V8's code cache once the run has compiled what
 * it needs (when there was none, or V8 refused it: another node version).
 */
export function loadFull(bundlePath: string): { full: FullHandler; done: () => void } {
  const { code, id } = readFull(bundlePath)
  const dir = ownRuntimeDir()
  const cachePath = dir && join(dir, `checks-handler-${id}.code-cache`)
  const cachedData = cachePath ? readOrUndefined(cachePath) : undefined
  const script = new Script(`(function (${PARAMS}) {${code}\n})`, {
    filename: `${bundlePath} (full handler)`,
    ...(cachedData ? { cachedData } : {}),
  })
  const module = { exports: {} as FullHandler }
  const url = `${pathToFileURL(bundlePath).href}#full`
  script.runInThisContext()(module.exports, createRequire(bundlePath), module, bundlePath, dirname(bundlePath), { url })
  const done = () => {
    if (!cachePath || (cachedData && !script.cachedDataRejected)) return
    try {
      const tmp = `${cachePath}.${process.pid}`
      writeFileSync(tmp, script.createCachedData(), { mode: 0o600 })
      renameSync(tmp, cachePath)
      // An upgrade leaves the former build's cache behind: one is kept, this build's.
      for (const f of readdirSync(dir))
        if (/^checks-handler-[0-9a-f]+\.code-cache$/.test(f) && f !== basename(cachePath)) rmSync(join(dir, f), { force: true })
    } catch {
      // Only a cache: the next run compiles again.
    }
  }
  return { full: module.exports, done }
}

function readOrUndefined(path: string): Buffer | undefined {
  try {
    return readFileSync(path)
  } catch {
    return undefined
  }
}
