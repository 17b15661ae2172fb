/**
 * File locks in the state directory (proper-lockfile: an atomic mkdir plus an mtime heartbeat,
 * so a lock left by a crashed or killed process goes stale and is taken over instead of
 * blocking every later run).
 */
import lockfile from 'proper-lockfile'
import { mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'

export class LockError extends Error {
  override name = 'LockError'
}

const STALE_MS = 10_000

// proper-lockfile keys the locks a process holds by the `file` argument, not by lockfilePath:
// every lock here passes its own path as both, or two locks in one process (the worker
// holds its lock while taking the state lock) would overwrite each other and one never be
// released.

/** Runs fn holding the lock at lockPath, waiting up to waitMs for it. */
export async function withLock<T>(lockPath: string, fn: () => Promise<T>, waitMs = 30_000): Promise<T> {
  await mkdir(dirname(lockPath), { recursive: true })
  let release: () => Promise<void>
  try {
    release = await lockfile.lock(lockPath, {
      lockfilePath: lockPath,
      realpath: false,
      stale: STALE_MS,
      retries: { retries: Math.max(1, Math.ceil(waitMs / 50)), minTimeout: 20, maxTimeout: 100, factor: 1.3 },
    })
  } catch (err) {
    throw new LockError(`could not take the lock ${lockPath} within ${waitMs} ms: ${(err as Error).message}`)
  }
  try {
    return await fn()
  } finally {
    await release().catch(() => {})
  }
}

/** Takes the lock if nobody holds it; returns its release function, or undefined when held. */
export async function tryLock(lockPath: string, onCompromised: (err: Error) => void): Promise<(() => Promise<void>) | undefined> {
  await mkdir(dirname(lockPath), { recursive: true })
  try {
    return await lockfile.lock(lockPath, {
      lockfilePath: lockPath,
      realpath: false,
      stale: STALE_MS,
      // Another process judged us stale (we were frozen longer than STALE_MS) and holds it now.
      onCompromised,
    })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') return undefined
    throw err
  }
}
