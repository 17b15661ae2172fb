/**
 * Directories the monitor creates (the state directory, snapshots/, a log file's directory):
 * mode 0750 exactly, whatever the umask (a umask of 0 would otherwise leave them
 * world-writable; 077 would hide the logs from the operators' group). Existing directories
 * keep the mode the operator gave them.
 */
import { chmodSync, mkdirSync } from 'node:fs'
import { chmod, mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'

export const DIR_MODE = 0o750

/** The directories from `first` (the topmost one mkdir created) down to `path`. */
function created(first: string | undefined, path: string): string[] {
  if (first === undefined) return []
  const dirs: string[] = []
  for (let p = path; ; p = dirname(p)) {
    dirs.push(p)
    if (p === first || dirname(p) === p) return dirs
  }
}

export async function ensureDir(path: string, mode = DIR_MODE): Promise<void> {
  for (const dir of created(await mkdir(path, { recursive: true, mode }), path)) await chmod(dir, mode)
}

export function ensureDirSync(path: string, mode = DIR_MODE): void {
  for (const dir of created(mkdirSync(path, { recursive: true, mode }), path)) chmodSync(dir, mode)
}
