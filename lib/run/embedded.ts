/**
 * The full handler inside dist/checks-handler.js: how it travels, is compiled and runs. build.mjs
 * writes what this module reads; this comment is the one that explains both.
 *
 * - Where it is. build.mjs bundles handlers/checks-handler.ts a second time, as CommonJS text in
 *   one function expression, and appends it to the bundle in a trailing comment,
 *   `/*<marker> <id> <base64>*\/` (the marker: full-marker.json, read by both; the id: a hash of
 *   the text V8 compiles, which names the code cache). Base64, as a comment cannot hold `*\/`.
 *   A comment, as V8 skips one several times faster than it pre-parses the same code: a quiet
 *   run (lib/run/quiet-run.ts) never pays for the ~0.9 MB of code it does not run.
 * - How it runs. Every other run reads it here and compiles it with vm.Script, with V8's code
 *   cache kept in this user's runtime directory: from the second run on, what it needs is not
 *   compiled again. The function is called with CommonJS's arguments and `import.meta`'s
 *   stand-in (build.mjs's banner names them, and turns `import.meta` into `__importMeta`).
 * - import() has no loader in the full part. A vm.Script compiled without importModuleDynamically
 *   rejects every import() with ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING
 *   (vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER, which would give it one, is node ≥ 20.12
 *   only). esbuild turns an import() of what it bundles into a require; what it leaves out,
 *   node's builtins, stays an import() and fails. So the full part loads a builtin lazily with
 *   createRequire(import.meta.url), never with import().
 * - Stack traces. A frame of the full part names `<bundle> (full handler):line:column`, and node
 *   (20) applies no source map to a vm.Script's code, not even with --enable-source-maps. So a
 *   run that loads the full part maps those frames itself (mapStackTraces) to lib/….ts:line:column,
 *   through the build's map, dist/checks-handler.full.js.map: the code's last line names it, and
 *   it is used when it is next to the bundle and of this build (it carries the id). It is not in
 *   the package: copy it from the same build next to an installed bundle to read its traces.
 *
 * The cache can never fail a run. V8 checks a cache's version and source but not its bytes: one
 * flipped byte or a zeroed tail (power loss) crashes node (V8 fatal, SIGSEGV) on every run. So
 * the file carries a header of our own (magic, length, crc32 of V8's data), checked before V8
 * sees the data; its name holds the code id, node's version and the architecture; it is written
 * to a file of its own, fsynced, then renamed. A cache that fails the check or that V8 refuses
 * is removed and written anew by this run; any error about the cache is ignored.
 */
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { createRequire, SourceMap } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Script } from 'node:vm'
import type { Deps } from './deps.js'
import FULL_MARKER from './full-marker.json' with { type: 'json' }
import { ownRuntimeDir } from './quiet-run.js'

/** What the full part exports (the `full` entry of build.mjs). */
export interface FullHandler {
  main: (argv: string[], deps: Deps) => Promise<number>
  realDeps: () => Deps
}

/**
 * The file name of the full part's frames ends so. V8 (node 20) keeps the name a code cache was
 * made under, another copy of the bundle's path: the suffix, not the path, tells a frame is ours.
 */
const FULL_FRAMES = ' (full handler)'

/** The cache file's header: magic, format, data length, crc32 of the data (u32 LE each). */
const CACHE_MAGIC = 'MCCC'
const CACHE_FORMAT = 1
const HEADER_BYTES = 16
/** A tmp file this old is a run's that died before its rename. */
const STALE_TMP_MS = 60_000

export class BundleError extends Error {
  override name = 'BundleError'
}

/** The full part's code and id, from the bundle's trailing comment. */
function readFull(bundlePath: string): { code: string; id: string } {
  const text = readFileSync(bundlePath, 'latin1')
  const opening = `/*${FULL_MARKER} `
  const start = text.lastIndexOf(opening)
  const end = text.indexOf('*/', start)
  if (start < 0 || end < 0)
    throw new BundleError(`${bundlePath}: no full handler inside (a damaged or partial copy? rebuild or reinstall it)`)
  const [id, base64] = text.slice(start + opening.length, end).split(' ')
  return { id: id!, code: Buffer.from(base64 ?? '', 'base64').toString('utf8') }
}

/**
 * Compiles and runs the full part; `done` saves V8's code cache once the run has compiled what
 * it needs (when there was none, or it was damaged, or V8 refused it).
 */
export function loadFull(bundlePath: string): { full: FullHandler; done: () => void } {
  const { code, id } = readFull(bundlePath)
  const require = createRequire(bundlePath)
  const cache = codeCache(id, require)
  const cachedData = cache?.read()
  const script = new Script(code, { filename: `${bundlePath}${FULL_FRAMES}`, ...(cachedData ? { cachedData } : {}) })
  mapStackTraces(script, bundlePath, id)
  const module = { exports: {} as FullHandler }
  // `#full` keeps main from running twice. handlers/checks-handler.ts runs main itself when
  // import.meta.url is the URL of process.argv[1], i.e. when it is the script node was started
  // with: without the fragment, this URL would be that one, the full part would start a run as it
  // loads, and the entry (handlers/checks-handler-entry.ts) would start a second.
  const url = `${pathToFileURL(bundlePath).href}#full`
  // In the order of build.mjs's banner: exports, require, module, __filename, __dirname, __importMeta.
  script.runInThisContext()(module.exports, require, module, bundlePath, dirname(bundlePath), { url })
  const done = () => {
    if (cache && (!cachedData || script.cachedDataRejected)) cache.write(() => script.createCachedData())
  }
  return { full: module.exports, done }
}

/** A source map, and the URL its sources are relative to. */
interface Mapping {
  map: SourceMap
  base: URL
}

/**
 * From here on, this process's stack traces name lib/….ts:line:column for the full part's frames,
 * through the source map its code names, when that map is there and of this build. The map
 * (1.1 MB) is read the first time a trace with such a frame is formatted: a crash's, or an error's
 * a library formats for itself (yargs' --help, when no package.json is above the bundle); a run
 * that formats none never reads it. The rest is node's own formatting, which node 20.20 sets as
 * Error.prepareStackTrace (with its --enable-source-maps for the entry's frames); V8's format
 * where it is unset.
 */
function mapStackTraces(script: Script, bundlePath: string, id: string): void {
  let full: Mapping | null | undefined // null: none (absent, unreadable, of another build)
  const fullMapping = () => {
    if (full === undefined) full = readSourceMap(script.sourceMapURL, bundlePath, id) ?? null
    return full ?? undefined
  }
  const node = Error.prepareStackTrace
  Error.prepareStackTrace = (error, frames) => {
    const mapped = frames.map((frame) => {
      try {
        const text = frame.getFileName()?.endsWith(FULL_FRAMES) ? mappedFrame(frame, fullMapping()) : undefined
        // Node's formatter joins the frames as strings; with --enable-source-maps it first asks each
        // for its file, which this stand-in has not, and then takes its text as it is.
        return text === undefined ? frame : ({ toString: () => text } as unknown as NodeJS.CallSite)
      } catch {
        return frame
      }
    })
    if (node) return node(error, mapped)
    const header = Error.prototype.toString.call(error)
    return mapped.length === 0 ? header : `${header}\n    at ${mapped.join('\n    at ')}`
  }
}

/** The full part's source map (build.mjs wrote this code's id into it), when it can be read. */
function readSourceMap(sourceMapURL: string | undefined, bundlePath: string, id: string): Mapping | undefined {
  try {
    if (!sourceMapURL) return undefined
    const base = new URL(sourceMapURL, pathToFileURL(bundlePath))
    const payload = JSON.parse(readFileSync(base, 'utf8'))
    return payload.x_masakari_consul_id === id ? { map: new SourceMap(payload), base } : undefined
  } catch {
    return undefined
  }
}

/** V8's text of the frame, its place in the code replaced by the one in the source. */
function mappedFrame(frame: NodeJS.CallSite, mapping: Mapping | undefined): string | undefined {
  const [file, line, column] = [frame.getFileName(), frame.getLineNumber(), frame.getColumnNumber()]
  if (!mapping || !file || !line || !column) return undefined
  const entry = mapping.map.findEntry(line - 1, column - 1) // zero-based both
  if (!('originalSource' in entry)) return undefined
  const source = new URL(entry.originalSource, mapping.base)
  const path = source.protocol === 'file:' ? fileURLToPath(source) : source.href
  const text = String(frame)
  const at = `${file}:${line}:${column}`
  const i = text.lastIndexOf(at)
  return i < 0 ? undefined : `${text.slice(0, i)}${path}:${entry.originalLine + 1}:${entry.originalColumn + 1}${text.slice(i + at.length)}`
}

interface CodeCache {
  /** V8's data when the file is whole; a damaged file is removed. */
  read: () => Buffer | undefined
  write: (data: () => Buffer) => void
}

/** This build's cache in this user's runtime dir; undefined without one, or without zlib.crc32 (node < 20.15). */
function codeCache(id: string, require: NodeJS.Require): CodeCache | undefined {
  const dir = ownRuntimeDir()
  // Loaded here, not at the top: a quiet run never gets this far.
  const { crc32 } = require('node:zlib') as { crc32?: (data: Uint8Array) => number }
  if (!dir || !crc32) return undefined
  const name = `checks-handler-${id}-${process.version}-${process.arch}.code-cache`
  const path = join(dir, name)
  return {
    read: () => {
      const file = readOrUndefined(path)
      if (!file) return undefined
      const data = file.subarray(HEADER_BYTES)
      const whole =
        file.length >= HEADER_BYTES &&
        file.toString('latin1', 0, 4) === CACHE_MAGIC &&
        file.readUInt32LE(4) === CACHE_FORMAT &&
        file.readUInt32LE(8) === data.length &&
        file.readUInt32LE(12) === crc32(data)
      if (whole) return data
      ignoreErrors(() => rmSync(path, { force: true }))
      return undefined
    },
    write: (data) =>
      ignoreErrors(() => {
        writeCache(path, data(), crc32)
        removeOthers(dir, name)
      }),
  }
}

/** Write, fsync, rename: a power loss leaves the former file or the whole new one. */
function writeCache(path: string, data: Buffer, crc32: (data: Uint8Array) => number): void {
  const header = Buffer.alloc(HEADER_BYTES)
  header.write(CACHE_MAGIC, 0, 'latin1')
  header.writeUInt32LE(CACHE_FORMAT, 4)
  header.writeUInt32LE(data.length, 8)
  header.writeUInt32LE(crc32(data), 12)
  // Unique: the three networks' handlers may write at once.
  const tmp = `${path}.${process.pid}.${Date.now().toString(36)}${Math.random().toString(36).slice(2)}.tmp`
  try {
    const fd = openSync(tmp, 'wx', 0o600)
    try {
      writeSync(fd, header)
      writeSync(fd, data)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, path)
  } catch (err) {
    ignoreErrors(() => rmSync(tmp, { force: true }))
    throw err
  }
}

/** An upgrade (of the monitor or of node) leaves the former cache behind: one is kept, this build's. */
function removeOthers(dir: string, keep: string): void {
  for (const f of readdirSync(dir)) {
    if (!f.startsWith('checks-handler-') || !f.includes('.code-cache') || f === keep) continue
    const path = join(dir, f)
    ignoreErrors(() => {
      // Another run's tmp file may be in the middle of its write.
      if (f.endsWith('.tmp') && Date.now() - statSync(path).mtimeMs < STALE_TMP_MS) return
      rmSync(path, { force: true })
    })
  }
}

function readOrUndefined(path: string): Buffer | undefined {
  try {
    return readFileSync(path)
  } catch {
    return undefined
  }
}

/** Only a cache: the next run compiles again. */
function ignoreErrors(f: () => void): void {
  try {
    f()
  } catch {}
}
