/**
 * File locks in the state directory (proper-lockfile: an atomic mkdir plus an mtime heartbeat,
 * so a lock left by a crashed or killed process goes stale and is taken over instead of
 * blocking every later run).
 */
import lockfile from 'proper-lockfile'
import { chmod, rmdir, stat } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { dirname } from 'node:path'
import { DIR_MODE, ensureDir } from './dirs.js'

export class LockError extends Error {
  override name = 'LockError'
}

const STALE_MS = 10_000
/**
 * A lock whose mtime lies further ahead than this is stale: proper-lockfile only takes over a
 * lock older than the stale time, so a clock stepped back (or a touch -d) would otherwise
 * block every run until that time comes.
 */
const FUTURE_SKEW_MS = 5_000
/** These do not go away by waiting: fail at once, saying who we are. */
const PERMISSION_CODES: ReadonlySet<unknown> = new Set(['EACCES', 'EPERM', 'EROFS'])

export interface LockOptions {
  /** How long to wait for a lock another process holds, ms. */
  waitMs?: number
  /** A lock not refreshed for this long is taken over (proper-lockfile's minimum: 2000). */
  staleMs?: number
}

/** The lock as fn sees it. */
export interface HeldLock {
  /**
   * Throws LockError when the lock may no longer be ours: proper-lockfile saw it taken over,
   * or this process was stalled (frozen, stopped, starved) long enough for its heartbeat to
   * miss and another process to take it. Call it right before each write the lock protects.
   */
  assertHeld(): Promise<void>
}

// proper-lockfile keys the locks a process holds by the `file` argument, not by lockfilePath:
// every lock here passes its own path as both, or two locks in one process (the worker
// holds its lock while taking the state lock) would overwrite each other and one never be
// released.

/** Runs fn holding the lock at lockPath, waiting up to waitMs for it (the whole wait, not per try). */
export async function withLock<T>(
  lockPath: string,
  fn: (lock: HeldLock) => Promise<T>,
  waitMs = 30_000,
  opts: LockOptions = {},
): Promise<T> {
  const staleMs = Math.max(opts.staleMs ?? STALE_MS, 2000)
  const watch = stallWatch(lockPath, staleMs)
  const deadline = Date.now() + waitMs
  let delay = 20
  let release!: () => Promise<void>
  try {
    await makeParent(lockPath)
    for (;;) {
      const got = await attempt(lockPath, staleMs, watch.onCompromised)
      if (got) {
        release = got
        break
      }
      const left = deadline - Date.now()
      if (left <= 0) throw new LockError(`could not take the lock ${lockPath} within ${waitMs} ms: another process holds it`)
      await new Promise((r) => setTimeout(r, Math.min(delay, left)))
      delay = Math.min(delay * 1.5, 100)
    }
  } catch (err) {
    watch.stop()
    throw err
  }
  watch.start()
  try {
    return await fn(watch)
  } finally {
    watch.stop()
    await release().catch(() => {})
  }
}

/**
 * Takes the lock if nobody holds it; returns its release function, or undefined when held.
 * onCompromised is called (once, never thrown) when the lock was taken over while we held it.
 */
export async function tryLock(
  lockPath: string,
  onCompromised: (err: Error) => void,
  opts: LockOptions = {},
): Promise<(() => Promise<void>) | undefined> {
  await makeParent(lockPath)
  return attempt(lockPath, Math.max(opts.staleMs ?? STALE_MS, 2000), onCompromised)
}

/** One try; a lock dated in the future is cleared and tried again. undefined: held by another process. */
async function attempt(lockPath: string, staleMs: number, onCompromised: (err: Error) => void): Promise<(() => Promise<void>) | undefined> {
  for (let cleared = false; ; cleared = true) {
    try {
      const release = await lockfile.lock(lockPath, { lockfilePath: lockPath, realpath: false, stale: staleMs, retries: 0, onCompromised })
      // proper-lockfile's mkdir follows the umask: a world-writable lock directory could be
      // filled by anyone, and a directory that is not empty can never be removed.
      await chmod(lockPath, DIR_MODE).catch(() => {})
      return release
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (PERMISSION_CODES.has(code)) throw permissionError(lockPath, err as NodeJS.ErrnoException)
      if (code !== 'ELOCKED') throw err
      if (cleared || !(await clearFutureLock(lockPath))) return undefined
    }
  }
}

/** Removes a lock whose mtime is beyond the skew in the future; true if it did. */
async function clearFutureLock(lockPath: string): Promise<boolean> {
  const future = async () => ((await stat(lockPath).catch(() => undefined))?.mtimeMs ?? 0) > Date.now() + FUTURE_SKEW_MS
  if (!(await future())) return false
  // Looked at twice, as proper-lockfile does for a stale one: a lock just taken has a current mtime.
  if (!(await future())) return false
  await rmdir(lockPath).catch(() => {})
  return true
}

async function makeParent(lockPath: string): Promise<void> {
  try {
    await ensureDir(dirname(lockPath))
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (PERMISSION_CODES.has(e.code)) throw permissionError(lockPath, e)
    throw err
  }
}

/** One line naming the path and the user; its errno code makes it a state-file error (exit 74). */
function permissionError(lockPath: string, err: NodeJS.ErrnoException): Error {
  const user = (() => {
    try {
      const u = userInfo()
      return `${u.username} (uid ${u.uid})`
    } catch {
      return `uid ${process.getuid?.() ?? '?'}`
    }
  })()
  const why = err.code === 'EROFS' ? 'the file system is read-only' : 'permission denied'
  return Object.assign(
    new Error(
      `cannot create the lock ${lockPath} as user ${user}: ${why} (${err.code}); the state directory must be writable by this user`,
    ),
    { code: err.code },
  )
}

/**
 * Notices when the lock may have been lost: proper-lockfile's onCompromised (never thrown: a
 * throw there is an uncaught exception), or a gap in a ticking timer longer than half the stale
 * time (the heartbeat refreshes the lock every stale/2; after a longer stall another process
 * may see it stale and take it, and proper-lockfile would only say so at its next timer).
 */
function stallWatch(lockPath: string, staleMs: number) {
  let compromised: Error | undefined
  let last = Date.now()
  let worst = 0
  let timer: NodeJS.Timeout | undefined
  const tick = () => {
    const now = Date.now()
    worst = Math.max(worst, now - last)
    last = now
  }
  return {
    onCompromised: (err: Error) => {
      compromised ??= err
    },
    start() {
      last = Date.now()
      timer = setInterval(tick, Math.min(500, staleMs / 4))
      timer.unref()
    },
    stop() {
      if (timer) clearInterval(timer)
      timer = undefined
    },
    async assertHeld() {
      tick()
      if (compromised)
        throw new LockError(
          `lost the lock ${lockPath}: another process took it over while this one was stalled (${compromised.message}); nothing written`,
        )
      if (worst > staleMs / 2)
        throw new LockError(
          `lost the lock ${lockPath}: this process was stalled ${(worst / 1000).toFixed(1)} s, long enough for another to take the lock over (stale after ${staleMs / 1000} s); nothing written`,
        )
    },
  }
}
