/**
 * The ledger (what was decided and what Masakari accepted, per host) and the outbox (decided
 * notifications not yet finally answered) live in one document, so one atomic write moves both:
 * there is no moment where a notification is in neither or in both.
 *
 * The Store interface is all the monitor's runs (lib/run/record-run.ts) and the worker see; its one
 * implementation, localStore, keeps the document in the state directory under a file lock, so
 * the state is one controller's own.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { writeFileAtomic } from './atomic-file.js'
import { stage } from '../base/stages.js'
import { withLock } from './lock.js'
import { statePath } from './paths.js'
import { StateFileError } from './state-errors.js'
import { emptyState, type StoreState, StoreStateSchema } from '../decide/state-shape.js'

export interface Store {
  /** The current document, without locking: for reports. */
  read(): Promise<StoreState>
  /**
   * Runs fn with the store to itself; if fn returns a next state, it is persisted atomically
   * before the lock is released. Nothing is written when fn throws. fn calls `held` right
   * before any write of its own that the lock protects: it throws once the lock may be lost.
   */
  transact<T>(fn: (state: StoreState, held: () => Promise<void>) => Promise<{ next?: StoreState; result: T }>): Promise<T>
}

/** Refused by a read-only store (readOnlyStore): a command that only reads tried to record. */
export class ReadOnlyError extends Error {
  override name = 'ReadOnlyError'
}

/**
 * The store of an operator command that only reads (status, explain, outbox): `read` as is;
 * `transact` refused before it takes state.lock or creates anything, so that a run as root can
 * never leave a root-owned file that the runs Consul makes as its user cannot write.
 */
export function readOnlyStore(store: Store): Store {
  return {
    read: () => store.read(),
    transact: () => Promise.reject(new ReadOnlyError('read-only command: the record is not written (no state.lock taken)')),
  }
}

/** The state document from its JSON text; `where` names it in the error (a file, a Consul key). */
export function parseState(text: string, where: string): StoreState {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new StateFileError(
      `${where}: not valid JSON (${(err as Error).message}); it was not written by this program, restore it or move it away`,
    )
  }
  const parsed = StoreStateSchema.safeParse(json)
  if (!parsed.success) throw new StateFileError(`${where}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`)
  return parsed.data
}

/**
 * state.json under state.lock. `lockStaleMs`: only tests shorten it (a frozen holder in seconds,
 * not the default 10).
 */
export function localStore(stateDir: string, lockWaitMs = 30_000, lockStaleMs?: number): Store {
  const path = statePath(stateDir)
  const read = async (): Promise<StoreState> => {
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState()
      throw err
    }
    return parseState(text, path)
  }
  return {
    read,
    transact: (fn) =>
      withLock(
        join(stateDir, 'state.lock'),
        async (lock) => {
          const state = await read()
          stage('state.json read')
          const { next, result } = await fn(state, lock.assertHeld)
          if (next) {
            await writeFileAtomic(path, `${JSON.stringify(next, null, 1)}\n`, 0o600, { beforeRename: lock.assertHeld })
            stage('state.json written')
          }
          return result
        },
        lockWaitMs,
        { staleMs: lockStaleMs },
      ),
  }
}
