/**
 * The edge where Consul's `checks` watch output enters: the JSON array of every check in the
 * cluster, reduced to one state per node on this network.
 */
import { z } from 'zod'
import { type Check, CHECK_STATUSES, CONTROL, fits, InputError, isCheck, NODE_NAME_MAX_BYTES } from './checks-payload.js'
import { oneLine, quote } from '../base/quote.js'

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
  Status: z.enum(CHECK_STATUSES),
}) satisfies z.ZodType<Check>

export const ChecksPayloadSchema = z.array(CheckSchema)

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
