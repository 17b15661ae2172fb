/**
 * A watch run with nothing new. Consul runs a checks watch's handler whenever the cluster's
 * health index moves: a service check's output, a check added, a node re-registered. Most such
 * runs change nothing the monitor looks at, and each must cost little more than starting node.
 * So the bundle's entry (handlers/checks-handler-entry.ts) asks here first, before the config,
 * the strategy or any library is loaded, and a quiet run ends at once.
 *
 * The quiet run is an optimisation: it may only ever fail towards a full run. A run is quiet
 * only when all of these hold; anything else, or any doubt, makes a full run:
 *   - every file the last full run's decision read (config, strategy, upstreamConfig) is as it
 *     read it (device, inode, size, mtime, ctime), and none had changed in the seconds before
 *     that run started;
 *   - nothing waits: no wake file (no outbox entry, no held-back decision), and state.json is there;
 *   - the payload is valid, and its digest (every node's serfHealth, maintenance and monitor
 *     check status) is the one the last successful full run of this network recorded, beside
 *     the very snapshot it recorded with it.
 *
 * Two files carry this. The quiet note (config → state directory and file identities) lives
 * in a directory of this user's alone (its owner and mode are checked on every read, as on
 * write), since the state directory is only known from the config. The seen digest lives
 * beside the network's snapshot and names it; a full run removes it before it records
 * anything and writes it with the snapshot.
 */
import { lstatSync, mkdirSync, readFileSync, type Stats, statSync, unlinkSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { type Check, isCheck, NODE_MAINTENANCE, SERF_HEALTH } from '../consul/checks-payload.js'
import { writeFileAtomic } from '../state/atomic-file.js'
import { snapshotPath, statePath, wakePath } from '../state/paths.js'

/** A file changed this recently may change again unseen within its timestamps' granularity. */
const SETTLED_MS = 2000

export interface QuietNote {
  version: 2
  /** Every file the decision read, config included: identities as the last full run found them. */
  files: { path: string; id: string }[]
  stateDir: string
  /** The monitor's own check (consul.lock.check): a sender lock is tied to it. */
  lockCheck: string
  /** The record is state.json (one controller); else it is in Consul KV and state.json may never exist. */
  localRecord: boolean
}

/** Where quiet notes (and the full handler's code cache) are kept: this user's own directory. */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.() ?? 0
  return join(env.XDG_RUNTIME_DIR || tmpdir(), `masakari-consul-${uid}`)
}

/**
 * True when `dir` is a directory (not a symlink) of this user's, closed to group and others.
 * Checked on read too: with XDG_RUNTIME_DIR unset it is under /tmp, where anyone may make it first.
 */
export function trustedDir(dir: string): boolean {
  try {
    const st = lstatSync(dir)
    return st.isDirectory() && st.uid === (process.getuid?.() ?? 0) && (st.mode & 0o077) === 0
  } catch {
    return false
  }
}

/** The directory, made if missing, when it is ours and closed to others; else undefined. */
export function ownRuntimeDir(dir = runtimeDir()): string | undefined {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch {
    return undefined
  }
  return trustedDir(dir) ? dir : undefined
}

/** The config's absolute path, encoded as one file name (node:crypto would cost the quiet run 3 ms). */
export function notePath(dir: string, configPath: string): string {
  return join(dir, `${encodeURIComponent(resolve(configPath))}.json`)
}

export function seenPath(stateDir: string, network: string): string {
  return join(stateDir, 'snapshots', `${network}.seen`)
}

/** `dev:ino:size:mtimeMs:ctimeMs`, or undefined when missing. ctime: `cp -p` keeps size and mtime. */
export function fileId(path: string): string | undefined {
  try {
    return idOf(statSync(path))
  } catch {
    return undefined
  }
}

/**
 * fileId, or undefined when missing or changed (mtime or ctime) within SETTLED_MS before `now`
 * or after it: given a run's start, a file changed while the run read it has no identity.
 */
export function settledId(path: string, now = Date.now()): string | undefined {
  try {
    const st = statSync(path)
    if (now - Math.max(st.mtimeMs, st.ctimeMs) < SETTLED_MS) return undefined
    return idOf(st)
  } catch {
    return undefined
  }
}

function idOf(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`
}

/**
 * What of a payload the monitor looks at, one line per check: nodes' liveness, maintenance, the
 * monitor's own check. Kept whole, not hashed: compared exactly, and no hash library to load.
 * Node names hold no control character (isCheck), so the separators are unambiguous.
 */
export function payloadDigest(checks: readonly Check[], lockCheck: string): string {
  let digest = ''
  for (const c of checks) {
    if (c.CheckID === SERF_HEALTH || c.CheckID === NODE_MAINTENANCE || c.CheckID === lockCheck)
      digest += `${c.Node}\t${c.CheckID}\t${c.Status}\n`
  }
  return digest
}

/** True only when the run provably has nothing new (see the module comment). Never throws. */
export function isQuietRun(network: string, configPath: string, stdin: Uint8Array, dir = runtimeDir()): boolean {
  try {
    if (!trustedDir(dir)) return false
    const note = JSON.parse(readFileSync(notePath(dir, configPath), 'utf8')) as QuietNote
    if (note.version !== 2 || !Array.isArray(note.files) || !note.files.some((f) => f.path === resolve(configPath))) return false
    // Recorded only once settled (rememberRun): any change since has a later ctime.
    for (const f of note.files) if (fileId(f.path) !== f.id) return false
    if (existsFile(wakePath(note.stateDir))) return false
    if (note.localRecord !== false && !statSync(statePath(note.stateDir)).isFile()) return false
    const seen = readSeen(note.stateDir, network)
    if (seen === undefined) return false
    const checks: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(stdin))
    if (!Array.isArray(checks) || checks.length === 0 || !checks.every(isCheck)) return false
    return payloadDigest(checks, note.lockCheck) === seen
  } catch {
    return false
  }
}

/** The seen digest, when it is whole and names the snapshot there now; else undefined. */
function readSeen(stateDir: string, network: string): string | undefined {
  const text = readFileSync(seenPath(stateDir, network), 'utf8')
  const newline = text.indexOf('\n')
  const [snapshotId, length] = text.slice(0, newline).split(' ')
  const digest = text.slice(newline + 1)
  if (newline < 0 || snapshotId !== fileId(snapshotPath(stateDir, network)) || Number(length) !== digest.length) return undefined
  return digest
}

function existsFile(path: string): boolean {
  try {
    statSync(path)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT'
  }
}

/** Before a full run records anything: until it has succeeded, no run of this network is quiet. */
export function forgetSeen(stateDir: string, network: string): void {
  try {
    unlinkSync(seenPath(stateDir, network))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/**
 * The digest a full run acted on, written just after its snapshot (under the state lock). Its
 * first line names that snapshot (fileId) and the digest's length: a digest beside another
 * snapshot or a deleted one, or torn by a crash, is never trusted (hence no tmp file and
 * rename). Any failure is ignored: without a digest, the next run is a full one.
 */
export async function writeSeen(stateDir: string, network: string, checks: readonly Check[], lockCheck: string): Promise<void> {
  const snapshotId = fileId(snapshotPath(stateDir, network))
  if (snapshotId === undefined) return
  const digest = payloadDigest(checks, lockCheck)
  await writeFile(seenPath(stateDir, network), `${snapshotId} ${digest.length}\n${digest}`, { mode: 0o640 }).catch(() => {})
}

/**
 * After a successful full run: the quiet note, when every file it read (`files`, the config
 * among them) had settled before the run started at `startedAt`: a file changed while the run
 * read it leaves no note to trust. Any failure (a read-only runtime dir, EACCES, ENOSPC) is
 * ignored: the note only spares later runs, and this one has done its work.
 */
export async function rememberRun(run: {
  configPath: string
  files: readonly string[]
  startedAt: number
  stateDir: string
  lockCheck: string
  localRecord: boolean
}): Promise<void> {
  const dir = ownRuntimeDir()
  if (!dir) return
  const files: QuietNote['files'] = []
  for (const path of new Set([run.configPath, ...run.files].map((p) => resolve(p)))) {
    const id = settledId(path, run.startedAt)
    if (id === undefined) return
    files.push({ path, id })
  }
  const note: QuietNote = { version: 2, files, stateDir: run.stateDir, lockCheck: run.lockCheck, localRecord: run.localRecord }
  const path = notePath(dir, run.configPath)
  const text = `${JSON.stringify(note)}\n`
  if (readOr(path, '') === text) return
  // Not durable: a note lost to a crash only makes a full run.
  await writeFileAtomic(path, text, 0o600, { durable: false }).catch(() => {})
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return fallback
  }
}
