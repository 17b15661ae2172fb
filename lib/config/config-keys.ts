/**
 * Unknown config keys: the schemas are strict (a misspelt `guards.hold.recovry` must not run
 * with the default), and each unknown key becomes one problem line naming its path and the
 * nearest key the schema knows there.
 */
import type { z } from 'zod'

/** zod's wrappers around the schema that knows the keys (defaults, optionals, preprocess…). */
interface Def {
  type: string
  shape?: Record<string, z.ZodType>
  innerType?: z.ZodType
  in?: z.ZodType
  out?: z.ZodType
  options?: z.ZodType[]
  keyType?: z.ZodType
  entries?: Record<string, string>
}

const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def

/** The keys an object (or a record with enum keys) accepts at `path`, the union over union options. */
export function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  const def = defOf(schema)
  const inner = def.innerType ?? (def.type === 'pipe' ? (defOf(def.out!).type === 'transform' ? def.in : def.out) : undefined)
  if (inner) return knownKeys(inner, path)
  if (def.type === 'union') return [...new Set(def.options!.flatMap((o) => knownKeys(o, path)))]
  if (def.type === 'object') {
    if (path.length === 0) return Object.keys(def.shape!)
    const next = def.shape![String(path[0])]
    return next ? knownKeys(next, path.slice(1)) : []
  }
  if (def.type === 'record') {
    if (path.length > 0) return []
    const keyDef = defOf(def.keyType!)
    return keyDef.type === 'enum' ? Object.values(keyDef.entries!) : []
  }
  return []
}

/** Edit distance (insert, delete, substitute: one each). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = row
  }
  return prev[b.length]!
}

// `auth_url`, `AuthURL` and `authurl` all mean authUrl: compare without case and separators first.
const fold = (k: string) => k.toLowerCase().replace(/[-_]/g, '')

/** The known key nearest to `key`, if it is near enough to be a likely misspelling. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Number.POSITIVE_INFINITY
  for (const k of known) {
    const d = fold(k) === fold(key) ? 0 : editDistance(key, k)
    if (d < bestDistance) [best, bestDistance] = [k, d]
  }
  // A third of the key's letters (at least one): `a` is no misspelling of `map`.
  return bestDistance <= Math.max(1, Math.floor(key.length / 3)) ? best : undefined
}

/** Every key path the schema knows, e.g. `masakari.delivery.concurrency`. */
export function keyPaths(schema: z.ZodType, path: string[] = []): string[][] {
  if (path.length > 6) return []
  return knownKeys(schema, path).flatMap((k) => [[...path, k], ...keyPaths(schema, [...path, k])])
}

/** One problem line per unknown key: "guards.hold.recovry: unknown key; did you mean 'recovery'?". */
export function unknownKeyProblems(
  schema: z.ZodType,
  issue: { path: readonly PropertyKey[]; keys: readonly string[] },
  prefix = '',
): string[] {
  const known = knownKeys(schema, issue.path)
  return issue.keys.map((key) => {
    // An empty key is shown as "": the line must still start with where the problem is.
    const where = [prefix, ...issue.path.map(String)]
      .filter((p) => p !== '')
      .concat(key === '' ? '""' : key)
      .join('.')
    // Known to another option of a union (a password key in an application credential's auth).
    if (known.includes(key))
      return `${where}: not allowed with the other keys here (it belongs to another form of '${issue.path.map(String).at(-1) ?? prefix}')`
    const near = nearestKey(key, known)
    if (near !== undefined) return `${where}: unknown key; did you mean '${near}'?`
    // A key written at the wrong level (`concurency` for masakari.delivery.concurrency).
    const elsewhere = keyPaths(schema).filter((p) => nearestKey(key, [p.at(-1)!]) !== undefined)
    if (elsewhere.length > 0) return `${where}: unknown key; did you mean '${[prefix, ...elsewhere[0]!].filter(Boolean).join('.')}'?`
    return known.length > 0 ? `${where}: unknown key (known here: ${known.join(', ')})` : `${where}: unknown key`
  })
}

/** zod's issues as problem lines, one per unknown key and one per other issue. */
export function issueProblems(schema: z.ZodType, issues: readonly z.core.$ZodIssue[], prefix = ''): string[] {
  return issues.flatMap((i) =>
    i.code === 'unrecognized_keys'
      ? unknownKeyProblems(schema, i, prefix)
      : [`${[prefix, ...i.path.map(String)].filter((p) => p !== '').join('.') || '(top level)'}: ${i.message}`],
  )
}
