/**
 * Per-network snapshots in the state directory: what each cluster last said about every node.
 * Each network's handler writes only its own file; the evaluator reads all three.
 */
import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { writeFileAtomic } from './atomic-file.js'
import { snapshotPath } from './paths.js'
import { isSnapshot, type Snapshot, type Snapshots, SnapshotSchema } from '../decide/snapshot-shape.js'
import { type Network, NETWORKS } from '../base/networks.js'
import { StateFileError } from './state-errors.js'

export async function writeSnapshot(
  stateDir: string,
  snapshot: Snapshot,
  opts: { beforeRename?: () => Promise<void> } = {},
): Promise<void> {
  await writeFileAtomic(snapshotPath(stateDir, snapshot.network), `${JSON.stringify(snapshot)}\n`, undefined, opts)
}

export async function readSnapshots(stateDir: string): Promise<Snapshots> {
  const snapshots: Snapshots = {}
  for (const network of NETWORKS) {
    const snapshot = await readSnapshot(stateDir, network)
    if (snapshot) snapshots[network] = snapshot
  }
  return snapshots
}

/** One network's snapshot; undefined when there is none yet. */
export async function readSnapshot(stateDir: string, network: Network): Promise<Snapshot | undefined> {
  const path = snapshotPath(stateDir, network)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new StateFileError(`${path}: not valid JSON (${(err as Error).message})`)
  }
  // Fast path (each run reads all three snapshots, 10,000 nodes each in a large cloud): check in place; the
  // schema parse, which copies every entry, only runs to name what is wrong.
  if (isSnapshot(json)) {
    // In place, as the schema's output would be: a node named `constructor` must not find
    // Object's function where it is absent.
    Object.setPrototypeOf(json.nodes, null)
    return json
  }
  const parsed = SnapshotSchema.safeParse(json)
  if (!parsed.success) throw new StateFileError(`${path}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`)
  return parsed.data
}
