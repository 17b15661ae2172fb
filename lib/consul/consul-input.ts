/**
 * The edge where Consul's `checks` watch output enters: the JSON array of every check in the
 * cluster, reduced to one state per node on this network.
 */
import { z } from 'zod'
import { type Check, checkSchema, InputError, isCheck } from './checks-payload.js'
import { oneLine, quote } from '../base/quote.js'

/** One check of the payload (its shape: checkSchema in lib/consul/checks-payload.ts). */
export const CheckSchema = checkSchema(z)

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
