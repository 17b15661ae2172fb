/**
 * A watch run with nothing new. Consul runs a checks watch's handler whenever the cluster's
 * health index moves: a service check's output, a check added, a node re-registered. Most such
 * runs change nothing the monitor looks at, and each must cost little more than starting node.
 * So the bundle's entry (handlers/checks-handler-entry.ts) asks here first, before the config,
 * the strategy or any library is loaded, and a quiet run ends at once.
 *
 * A run is quiet only when all of these hold; anything else, or any doubt, makes a full run:
 *   - the config and strategy files are those the last full run read (device, inode, size,
 *     mtime), and neither had changed in the seconds before it read them;
 *   - nothing waits: no wake file (no outbox entry, no held-back decision);
 *   - the payload is valid, and its digest (every node's serfHealth, maintenance and monitor
 *     check status) is the one the last successful full run of this network recorded.
 *
 * Two files carry this. The quiet note (config → state directory and file identities) lives
 * in a directory of this user's alone (its owner and mode are checked before it is trusted),
 * since the state directory is only known from the config. The seen digest lives beside the
 * network's snapshot; a full run removes it before it records anything and writes it after.
 */
import { lstatSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs'
import { rename, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { isCheck, NODE_MAINTENANCE, SERF_HEALTH } from './checks-payload.js'
import type { Check } from './consul-input.js'

/** A file changed this recently may change again unseen within its mtime's granularity. */
const SETTLED_MS = 2000

export interface QuietNote {
  version: 1
  /** File identities, `dev:ino:size:mtimeMs`, as the last full run read them. */
  config: string
  strategy?: { path: string; id: string }
  stateDir: string
  /** The monitor's own check (consul.lock.check): a sender lock is tied to it. */
  lockCheck: string
}

/** Where quiet notes (and the full handler's code cache) are kept: this user's own directory. */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.() ?? 0
  return join(env.XDG_RUNTIME_DIR || tmpdir(), `masakari-consul-${uid}`)
}

/** The directory, made if missing, when it is ours and closed to others; else undefined. */
export function ownRuntimeDir(dir = runtimeDir()): string | undefined {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const st = lstatSync(dir)
    if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? 0) || (st.mode & 0o077) !== 0) return undefined
    return dir
  } catch {
    return undefined
  }
}

/** The config's absolute path, encoded as one file name (node:crypto would cost the quiet run 3 ms). */
export function notePath(dir: string, configPath: string): string {
  return join(dir, `${encodeURIComponent(resolve(configPath))}.json`)
}

export function seenPath(stateDir: string, network: string): string {
  return join(stateDir, 'snapshots', `${network}.seen`)
}

/** `dev:ino:size:mtimeMs`; undefined when missing or changed within SETTLED_MS of `now`. */
export function settledId(path: string, now = Date.now()): string | undefined {
  try {
    const st = statSync(path)
    if (now - st.mtimeMs < SETTLED_MS) return undefined
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`
  } catch {
    return undefined
  }
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
    const note = JSON.parse(readFileSync(notePath(dir, configPath), 'utf8')) as QuietNote
    if (note.version !== 1 || settledId(configPath) !== note.config) return false
    if (note.strategy && settledId(note.strategy.path) !== note.strategy.id) return false
    if (existsFile(join(note.stateDir, 'wake'))) return false
    const seen = readFileSync(seenPath(note.stateDir, network), 'utf8')
    const checks: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(stdin))
    if (!Array.isArray(checks) || checks.length === 0 || !checks.every(isCheck)) return false
    return payloadDigest(checks, note.lockCheck) === seen
  } catch {
    return false
  }
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
 * After a successful full run: the digest it acted on, and the note (when the files it read
 * had settled before it read them: `configId` is taken before the config is read).
 */
export async function rememberRun(
  run: { configPath: string; configId: string | undefined; strategyPath?: string; stateDir: string; lockCheck: string },
  network: string,
  checks: readonly Check[],
): Promise<void> {
  await writeFile(seenPath(run.stateDir, network), payloadDigest(checks, run.lockCheck), { mode: 0o640 })
  const dir = ownRuntimeDir()
  const strategyId = run.strategyPath === undefined ? undefined : settledId(run.strategyPath)
  if (!dir || run.configId === undefined || (run.strategyPath !== undefined && strategyId === undefined)) return
  const note: QuietNote = {
    version: 1,
    config: run.configId,
    ...(run.strategyPath !== undefined && strategyId !== undefined ? { strategy: { path: run.strategyPath, id: strategyId } } : {}),
    stateDir: run.stateDir,
    lockCheck: run.lockCheck,
  }
  const path = notePath(dir, run.configPath)
  const text = `${JSON.stringify(note)}\n`
  if (readOr(path, '') === text) return
  // Not atomic-file.ts: it loads node:crypto, and this module is on the quiet run's path.
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, text, { mode: 0o600 })
  await rename(tmp, path)
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return fallback
  }
}
