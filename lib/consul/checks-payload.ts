/**
 * The part of the checks payload's edge that loads no schema library: limits, a check's shape
 * and its in-place check, the reduction to node states. The quiet run (lib/run/quiet-run.ts) uses
 * it before anything else is loaded; lib/consul/consul-input.ts builds the schema, which names
 * what is wrong.
 */
import type { z as Zod } from 'zod'
import { emptyHostRecord, type HostRecord } from '../base/host-record.js'
import type { NodeState } from '../base/networks.js'

/**
 * The most stdin we read: a 10,000-node cluster's payload is ~37 MB; far more is not a checks
 * watch of a cluster we could evaluate, and would only exhaust memory.
 */
export const STDIN_MAX_BYTES = 256 * 1024 * 1024
/** DNS names are at most 253 bytes; Consul node names are host names. */
export const NODE_NAME_MAX_BYTES = 255
/** C0 and C1 control characters: never in a host name; they would garble every line naming it. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/

/** Fits a node name in the byte limit (the fast path: a name of ≤ 85 characters always does). */
function fits(name: string): boolean {
  return name.length <= NODE_NAME_MAX_BYTES / 3 || Buffer.byteLength(name, 'utf8') <= NODE_NAME_MAX_BYTES
}

/** Consul's own vocabulary; anything else means the input is not what we think it is. */
const CHECK_STATUSES = ['passing', 'warning', 'critical', 'maintenance'] as const
const STATUSES: ReadonlySet<unknown> = new Set(CHECK_STATUSES)

/**
 * The fields of a Consul health check we rely on; newer Consul versions add more, which are
 * ignored. Built with the caller's zod (CheckSchema in lib/consul/consul-input.ts), so that this
 * module loads none: the shape is written once, here, beside isCheck, and Check is its type.
 */
export function checkSchema(z: typeof Zod) {
  return z.object({
    /** Node name as registered in this cluster: the host name Masakari is told about. */
    Node: z
      .string()
      .min(1)
      .refine(fits, `longer than ${NODE_NAME_MAX_BYTES} bytes (a host name is at most 253)`)
      .refine((name) => !CONTROL.test(name), 'contains a control character'),
    /** `serfHealth` is gossip liveness; `_node_maintenance` is `consul maint -enable`. */
    CheckID: z.string().min(1),
    Status: z.enum(CHECK_STATUSES),
  })
}
export type Check = Zod.infer<ReturnType<typeof checkSchema>>

export class InputError extends Error {
  override name = 'InputError'
}

/** Exactly what checkSchema accepts (test/fast-validators.ts), without building a copy. */
export function isCheck(value: unknown): value is Check {
  if (typeof value !== 'object' || value === null) return false
  const c = value as Record<string, unknown>
  return (
    typeof c.Node === 'string' &&
    c.Node !== '' &&
    fits(c.Node) &&
    !CONTROL.test(c.Node) &&
    typeof c.CheckID === 'string' &&
    c.CheckID !== '' &&
    STATUSES.has(c.Status)
  )
}

/**
 * The watch's stdin as text: at most STDIN_MAX_BYTES, and valid UTF-8 (a decoder that replaced
 * bad bytes would turn a corrupt node name into another host's name).
 */
export function decodeStdin(bytes: Uint8Array): string {
  if (bytes.length > STDIN_MAX_BYTES) {
    throw new InputError(
      `stdin is larger than the ${STDIN_MAX_BYTES / 2 ** 20} MiB limit: not the checks payload of a cluster we can evaluate`,
    )
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new InputError(`stdin is not valid UTF-8 (${bytes.length} bytes received): a Consul checks watch writes UTF-8 JSON`)
  }
}

/** Gossip liveness, and `consul maint -enable`: the checks a node's state comes from. */
export const SERF_HEALTH = 'serfHealth'
export const NODE_MAINTENANCE = '_node_maintenance'

/**
 * Liveness comes from serfHealth alone: a failed node's service checks keep their last status.
 * A node whose serfHealth is neither passing nor critical is left out (unknown), never guessed.
 */
export function nodeStates(checks: readonly Check[]): HostRecord<NodeState> {
  const states = emptyHostRecord<NodeState>()
  const inMaintenance = new Set<string>()
  for (const check of checks) {
    if (check.CheckID === SERF_HEALTH) {
      if (check.Status === 'passing') states[check.Node] = 'up'
      else if (check.Status === 'critical') states[check.Node] = 'down'
    } else if (check.CheckID === NODE_MAINTENANCE) {
      inMaintenance.add(check.Node)
    }
  }
  for (const node of inMaintenance) states[node] = 'maintenance'
  return states
}
