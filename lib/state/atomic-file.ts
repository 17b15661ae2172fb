import { open, readdir, rename, stat, unlink } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'
import { ensureDir } from './dirs.js'

/**
 * Readers see the old file or the new one, never a torn one, and a crash after this returns
 * keeps the new one: write a temp file beside it, fsync it, rename over, fsync the directory.
 */
export async function writeFileAtomic(
  path: string,
  data: string,
  mode = 0o640,
  opts: {
    /** Runs just before the rename (e.g. to check a lock is still ours); a throw leaves the old file. */
    beforeRename?: () => Promise<void>
    /**
     * false: no fsync (file or directory). Still whole or absent after a crash of the process,
     * not necessarily after a power loss: for notes that are rewritten on every run anyway.
     */
    durable?: boolean
  } = {},
): Promise<void> {
  const dir = dirname(path)
  await ensureDir(dir)
  await removeLeftovers(dir)
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${tempSuffix()}.tmp`)
  const file = await open(tmp, 'wx', mode)
  try {
    // The umask only narrows open(2)'s mode: set it exactly (0600 for state.json and the token).
    await file.chmod(mode)
    await file.writeFile(data)
    if (opts.durable !== false) await file.sync()
  } catch (err) {
    await file.close()
    await unlink(tmp).catch(() => {})
    throw err
  }
  await file.close()
  try {
    await opts.beforeRename?.()
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  if (opts.durable === false) return
  const dirHandle = await open(dir, 'r')
  try {
    await dirHandle.sync()
  } finally {
    await dirHandle.close()
  }
}

/** This process's writes so far. */
let writes = 0

/**
 * 8 hex digits: the millisecond (its low 20 bits, 17 minutes round) and this process's write
 * count (low 12 bits). With the pid, no two temp files of processes alive together share a name,
 * nor one with a leftover young enough to be kept; and no node:crypto to load (the quiet run's
 * module, lib/run/quiet-run.ts, imports this one).
 */
function tempSuffix(): string {
  return ((Date.now() % 0x100000) * 0x1000 + (writes++ % 0x1000)).toString(16).padStart(8, '0')
}

/** Our temp files' names (`.<name>.<pid>.<8 hex>.tmp`), and nothing else's. */
const TEMP_NAME = /^\..+\.\d+\.[0-9a-f]{8}\.tmp$/
/** A write takes milliseconds: a temp file this old belongs to a process killed mid-write. */
const LEFTOVER_AGE_MS = 60_000

/**
 * Removes temp files a kill during an earlier write left in dir: only ours by name, only those
 * older than a minute (a write in progress in another process is never touched). Best effort:
 * a file that cannot be removed is left for the next write.
 */
export async function removeLeftovers(dir: string, now = Date.now()): Promise<void> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return
  }
  for (const name of names) {
    if (!TEMP_NAME.test(name)) continue
    const path = join(dir, name)
    const info = await stat(path).catch(() => undefined)
    if (info?.isFile() && now - info.mtimeMs > LEFTOVER_AGE_MS) await unlink(path).catch(() => {})
  }
}
