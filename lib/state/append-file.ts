/**
 * Files the monitor appends to (decisions.log, worker.stderr): never written through a
 * symlink (whoever can plant one in a log directory would have us append to any file we can
 * write), created with an explicit mode, and kept from growing without limit.
 */
import { constants, fchmodSync, lstatSync, openSync, renameSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { ensureDirSync } from './dirs.js'

/** Logs may be read by the operators' group; nothing secret goes into them. */
export const LOG_MODE = 0o640
/** worker.stderr is moved to worker.stderr.1 when over this at a worker's start. */
export const WORKER_STDERR_MAX = 1 << 20

export class SymlinkError extends Error {
  override name = 'SymlinkError'
  readonly code = 'ELOOP'
}

/**
 * Opens path for appending (O_APPEND: each write lands whole at the end), refusing a symlink
 * (O_NOFOLLOW). A file it creates gets `mode` exactly (chmod after create: the umask only
 * narrows the mode open(2) gives); an existing one keeps its mode.
 */
export function openAppend(path: string, mode = LOG_MODE): number {
  ensureDirSync(dirname(path))
  const { O_WRONLY, O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW } = constants
  try {
    const fd = openSync(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW, mode)
    fchmodSync(fd, mode)
    return fd
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  try {
    return openSync(path, O_WRONLY | O_APPEND | O_NOFOLLOW)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP')
      throw new SymlinkError(`${path} is a symlink: not written through it (remove it, or point the setting at the real file)`)
    throw err
  }
}

/**
 * Moves path to path.1 (replacing an older one) when it is over maxBytes: one generation is
 * kept, so a crash's trace survives the next start but the file cannot fill the disk. A
 * symlink is not looked through (lstat) and not rotated.
 */
export function rotateIfOver(path: string, maxBytes: number): boolean {
  let info: ReturnType<typeof lstatSync>
  try {
    info = lstatSync(path)
  } catch {
    return false
  }
  if (!info.isFile() || info.size <= maxBytes) return false
  renameSync(path, `${path}.1`)
  return true
}

/**
 * The descriptor for a new worker's stderr: <stateDir>/worker.stderr, rotated first when over
 * WORKER_STDERR_MAX. When it cannot be opened (a symlink, no space) the worker still runs,
 * with its stderr discarded, and `warning` says why.
 */
export function openWorkerStderr(stateDir: string): { fd?: number; warning?: string } {
  const path = join(stateDir, 'worker.stderr')
  try {
    rotateIfOver(path, WORKER_STDERR_MAX)
    return { fd: openAppend(path) }
  } catch (err) {
    return { warning: `the worker's stderr is discarded: ${(err as Error).message}` }
  }
}
