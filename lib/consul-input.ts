/**
 * The edge where Consul's `checks` watch output enters: the JSON array of every check in the
 * cluster, reduced to one state per node on this network.
 */
import { z } from 'zod'
import { emptyHostRecord, type HostRecord } from './host-record.js'
import { oneLine, quote } from './quote.js'

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

/** The fields of a Consul health check we rely on; newer Consul versions add more, which are ignored. */
export const CheckSchema = z.object({
  /** Node name as registered in this cluster: the host name Masakari is told about. */
  Node: z
    .string()
    .min(1)
    .refine(fits, `longer than ${NODE_NAME_MAX_BYTES} bytes (a host name is at most 253)`)
    .refine((name) => !CONTROL.test(name), 'contains a control character'),
  /** `serfHealth` is gossip liveness; `_node_maintenance` is `consul maint -enable`. */
  CheckID: z.string().min(1),
  /** Consul's own vocabulary; anything else means the input is not what we think it is. */
  Status: z.enum(['passing', 'warning', 'critical', 'maintenance']),
})
export type Check = z.infer<typeof CheckSchema>

export const ChecksPayloadSchema = z.array(CheckSchema)

/** A node's state on one network, as its serfHealth and maintenance checks say. */
export type NodeState = 'up' | 'down' | 'maintenance'

export class InputError extends Error {
  override name = 'InputError'
}

const STATUSES: ReadonlySet<unknown> = new Set(CheckSchema.shape.Status.options)

/** Exactly what CheckSchema accepts, without building a copy. */
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

const SERF_HEALTH = 'serfHealth'
const NODE_MAINTENANCE = '_node_maintenance'

/** Parses the watch's stdin; throws InputError naming the first problems found. */
export function parseChecks(text: string): Check[] {
  if (text.trim() === '') throw new InputError('stdin is empty: expected the JSON array a Consul checks watch writes')
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    // V8's message quotes the input around the error: escaped, it stays one line.
    throw new InputError(`stdin is not valid JSON (${oneLine((err as Error).message)}); ${text.length} characters received`)
  }
  if (!Array.isArray(raw)) {
    const kind = raw === null ? 'null' : typeof raw
    throw new InputError(`stdin must be a JSON array of checks (a Consul "checks" watch), got ${kind}`)
  }
  // Fast path: a cluster of 10,000 nodes sends ~110,000 checks; validating them in place is
  // several times cheaper than a schema parse that copies every object. The checks are
  // returned as parsed (extra fields included; nothing reads them). Anything that fails goes
  // to the schema below, which names the problems.
  if (raw.every(isCheck)) return raw
  const parsed = ChecksPayloadSchema.safeParse(raw)
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 5).map((issue) => {
      const [index, field] = issue.path
      const node = typeof index === 'number' ? (raw as Array<{ Node?: unknown }>)[index]?.Node : undefined
      const where = `check #${String(index)}${typeof node === 'string' ? ` (node ${quote(node)})` : ''}`
      return `${where}: ${field === undefined ? '' : `${String(field)}: `}${issue.message}`
    })
    const more = parsed.error.issues.length > 5 ? ` (and ${parsed.error.issues.length - 5} more)` : ''
    throw new InputError(`invalid checks on stdin: ${problems.join('; ')}${more}`)
  }
  return parsed.data
}

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
