/**
 * Tables keyed by host name. A host name is whatever Consul calls the node, so `constructor`,
 * `toString` or `__proto__` are ordinary names here: on a plain object `table['constructor']`
 * is Object's inherited function, and assigning `table['__proto__']` changes the prototype
 * instead of adding the host. These tables have no prototype, and every read and write goes
 * through own properties.
 */
import { z } from 'zod'

export type HostRecord<V> = Record<string, V>

export function emptyHostRecord<V>(): HostRecord<V> {
  return Object.create(null) as HostRecord<V>
}

/** The host's own entry; never an inherited property. */
export function hostEntry<V>(table: HostRecord<V>, host: string): V | undefined {
  return Object.hasOwn(table, host) ? table[host] : undefined
}

/** A copy of the table (without a prototype) with the host's entry set. */
export function withHostEntry<V>(table: HostRecord<V>, host: string, value: V): HostRecord<V> {
  // Object.assign sets each key on a target without a prototype: `__proto__` stays a key.
  const copy = Object.assign(emptyHostRecord<V>(), table)
  copy[host] = value
  return copy
}

/**
 * z.record(z.string(), value) builds its output by assignment on a plain object, so a
 * `__proto__` key is silently dropped (or becomes the output's prototype) and the output
 * inherits `constructor` and friends. This schema validates each entry with `value`, reports
 * every problem at `<host>.<path>`, and outputs a table without a prototype.
 */
export function hostRecordSchema<V extends z.ZodType>(value: V) {
  return z
    .custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), {
      message: 'expected an object keyed by host name',
    })
    .transform((input, ctx) => {
      const out = emptyHostRecord<z.output<V>>()
      for (const host of Object.keys(input)) {
        const parsed = value.safeParse(input[host])
        if (parsed.success) out[host] = parsed.data
        else
          for (const issue of parsed.error.issues)
            ctx.addIssue({ code: 'custom', message: issue.message, path: [host, ...issue.path], input: input[host] })
      }
      return out
    })
}
