/** One network's view of every node, as a value: the schema, its fast check, which of two views wins. Pure; the files are lib/state/snapshot.ts's. */
import { z } from 'zod'
import { hostRecordSchema } from '../base/host-record.js'
import { NETWORKS, type Network, NODE_STATES } from '../base/networks.js'

export const SnapshotSchema = z.object({
  /** Layout version of this file. */
  version: z.literal(1),
  network: z.enum(NETWORKS),
  /** CONSUL_INDEX of the watch run that produced it ("" when run by hand). */
  consulIndex: z.string(),
  /** When the handler received it, ISO-8601 UTC. */
  receivedAt: z.string(),
  /** Node name → state on this network; a node not listed is unknown here. */
  nodes: hostRecordSchema(z.enum(NODE_STATES)),
})
export type Snapshot = z.infer<typeof SnapshotSchema>
export type Snapshots = Partial<Record<Network, Snapshot>>

const NODE_STATE_SET: ReadonlySet<unknown> = new Set(NODE_STATES)
const NETWORK_SET: ReadonlySet<unknown> = new Set(NETWORKS)

/** Exactly what SnapshotSchema accepts, without building a copy. */
export function isSnapshot(value: unknown): value is Snapshot {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const s = value as Record<string, unknown>
  if (s.version !== 1 || !NETWORK_SET.has(s.network) || typeof s.consulIndex !== 'string' || typeof s.receivedAt !== 'string') return false
  const nodes = s.nodes
  if (typeof nodes !== 'object' || nodes === null || Array.isArray(nodes)) return false
  // Own enumerable keys, as the schema reads them (for…in would also see inherited ones).
  for (const key of Object.keys(nodes)) {
    if (!NODE_STATE_SET.has((nodes as Record<string, unknown>)[key])) return false
  }
  return true
}

/**
 * Whether `incoming` may replace `stored`. Two runs of one network can overlap (a handler that
 * waited on the state lock, a resync): the one that read Consul earlier must not put an older
 * view back. Older means a lower Consul index *and* read no later: an index that went backwards
 * (a rebuilt cluster) or a clock set back proves nothing alone, and a newer run always wins.
 */
export function supersedes(incoming: Snapshot, stored: Snapshot | undefined): boolean {
  if (!stored) return true
  const [a, b] = [Number(incoming.consulIndex), Number(stored.consulIndex)]
  if (incoming.consulIndex === '' || stored.consulIndex === '' || !Number.isSafeInteger(a) || !Number.isSafeInteger(b)) return true
  return !(a < b && Date.parse(incoming.receivedAt) <= Date.parse(stored.receivedAt))
}
