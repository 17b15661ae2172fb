/**
 * `holds.json`: the holds this controller's own runs saw (several controllers). The shared record
 * is the sender's alone, so a hold that went by on this controller while the sender died, before
 * recording it, would otherwise be lost: the new sender counts it from here (guards.ts,
 * holdStart). Every run that evaluates rewrites it under state.lock, with its snapshots, so it is
 * as current as this controller's view, sender or not.
 */
import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { writeFileAtomic } from './atomic-file.js'
import { ownHoldsPath } from './paths.js'
import { emptyHostRecord } from '../base/host-record.js'
import { type OwnHolds, OwnHoldsSchema } from '../decide/state-shape.js'

export interface OwnHoldsFile {
  holds: OwnHolds
  /** The file as read (absent: undefined): a run rewrites it only when its holds differ. */
  text?: string
  /**
   * Why the file could not be used: its holds then count from now (the full hold), and the
   * run's own holds replace it.
   */
  invalid?: string
}

export async function readOwnHolds(stateDir: string): Promise<OwnHoldsFile> {
  const path = ownHoldsPath(stateDir)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { holds: emptyHostRecord() }
    throw err
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    return { holds: emptyHostRecord(), text, invalid: `${path}: not valid JSON (${(err as Error).message})` }
  }
  const parsed = OwnHoldsSchema.safeParse(json)
  if (!parsed.success) return { holds: emptyHostRecord(), text, invalid: `${path}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}` }
  return { holds: parsed.data, text }
}

/** Writes `holds` unless the file already says exactly that; `beforeRename` checks state.lock is still ours. */
export async function writeOwnHolds(
  stateDir: string,
  holds: OwnHolds,
  before: OwnHoldsFile,
  beforeRename: () => Promise<void>,
): Promise<void> {
  const text = `${JSON.stringify(holds)}\n`
  if (text === before.text || (before.text === undefined && Object.keys(holds).length === 0)) return
  await writeFileAtomic(ownHoldsPath(stateDir), text, undefined, { beforeRename })
}
