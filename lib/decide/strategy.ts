/**
 * The HA strategy: which combinations of network health call for a host recovery.
 * Operator files use upstream masakari-monitors' matrix.yaml shape, so an existing file keeps working.
 */
import { z } from 'zod'
import { parse as parseYaml } from 'yaml'
import { NETWORK_NAMES, networkFromName, type Network, type NetworkState } from '../base/networks.js'
import { oneLine, quote } from '../base/quote.js'

export type Health = 'up' | 'down'
export const ACTIONS = ['recovery'] as const

export interface StrategyRow {
  health: Health[]
  recovery: boolean
}

export interface Strategy {
  /** Where it came from, for logs: a file path or "built-in default". */
  source: string
  /** The networks the strategy looks at, in the order of each row's health. */
  sequence: Network[]
  rows: StrategyRow[]
}

/** The spec's table: recovery whenever storage is down; management or tenant down alone is no action. */
export const DEFAULT_STRATEGY: Strategy = {
  source: 'built-in default (recovery whenever storage is down)',
  sequence: ['management', 'tenant', 'storage'],
  rows: [
    { health: ['up', 'up', 'down'], recovery: true },
    { health: ['up', 'down', 'down'], recovery: true },
    { health: ['down', 'up', 'down'], recovery: true },
    { health: ['down', 'down', 'down'], recovery: true },
  ],
}

/** The file as upstream's matrix.yaml writes it. */
export const StrategyFileSchema = z.object({
  /** Networks in the order of each row's `health`: manage|management, tenant, storage. */
  sequence: z.array(z.string()).min(1, 'must name at least one network'),
  /** One row per health combination; combinations not listed mean no action. */
  matrix: z
    .array(
      z.object({
        /** One of up|down per network in `sequence`. */
        health: z.array(z.string()),
        /** [recovery] to recover the host, [] for no action. */
        action: z.array(z.string()).default([]),
      }),
    )
    .min(1, 'has no rows'),
})

export class StrategyError extends Error {
  override name = 'StrategyError'
  /** One line each: values and keys from the file (in zod's messages too) have their control characters escaped. */
  readonly problems: string[]
  constructor(
    readonly source: string,
    problems: string[],
  ) {
    const lines = problems.map((p) => oneLine(p, 500))
    super(`invalid strategy ${source}:\n  - ${lines.join('\n  - ')}`)
    this.problems = lines
  }
}

export function parseStrategy(text: string, source: string): Strategy {
  let raw: unknown
  try {
    raw = parseYaml(text, { prettyErrors: true })
  } catch (err) {
    throw new StrategyError(source, [`not valid YAML: ${(err as Error).message.split('\n')[0]}`])
  }
  const parsed = StrategyFileSchema.safeParse(raw)
  if (!parsed.success) {
    throw new StrategyError(
      source,
      parsed.error.issues.map((i) => `${describePath(i.path)}: ${i.message}`),
    )
  }
  const problems: string[] = []
  const sequence: Network[] = []
  parsed.data.sequence.forEach((name, i) => {
    const network = networkFromName(name)
    if (!network) problems.push(`sequence[${i}]: unknown network ${quote(name)} (expected one of ${NETWORK_NAMES.join(', ')})`)
    else if (sequence.includes(network)) problems.push(`sequence[${i}]: network ${quote(name)} is listed twice`)
    else sequence.push(network)
  })
  const width = parsed.data.sequence.length
  const seen = new Map<string, { row: number; recovery: boolean }>()
  const rows: StrategyRow[] = []
  parsed.data.matrix.forEach((entry, i) => {
    // The operator's values, escaped: a newline in one must not break the problem's line.
    const where = `matrix row ${i + 1} (health [${entry.health.map((h) => oneLine(h, 20)).join(', ')}])`
    const own = rowProblems(entry, width)
    if (own.length > 0) {
      problems.push(...own.map((p) => `${where}: ${p}`))
      return
    }
    const recovery = entry.action.includes('recovery')
    const key = entry.health.join(',')
    const earlier = seen.get(key)
    if (earlier && earlier.recovery === recovery) {
      problems.push(`${where}: repeats row ${earlier.row}`)
    } else if (earlier) {
      problems.push(`${where}: contradicts row ${earlier.row} (same health, different action)`)
    } else {
      seen.set(key, { row: i + 1, recovery })
      rows.push({ health: entry.health as Health[], recovery })
    }
  })
  if (problems.length === 0 && !rows.some((r) => r.recovery)) {
    problems.push('no row has action [recovery]: this strategy would never recover a host')
  }
  if (problems.length > 0) throw new StrategyError(source, problems)
  return { source, sequence, rows }
}

/** What is wrong with one row on its own (its length, values and actions), before it is compared with the others. */
function rowProblems(entry: { health: string[]; action: string[] }, width: number): string[] {
  const problems: string[] = []
  if (entry.health.length !== width) problems.push(`has ${entry.health.length} health values but sequence has ${width} networks`)
  entry.health.forEach((h, j) => {
    if (h !== 'up' && h !== 'down') problems.push(`health[${j}] is ${quote(h)}, expected up or down`)
  })
  entry.action.forEach((a, j) => {
    if (!(ACTIONS as readonly string[]).includes(a))
      problems.push(`action[${j}] is ${quote(a)}, expected one of: ${ACTIONS.join(', ')} (or [] for no action)`)
  })
  // Health values are only up|down (no wildcard), so the one row that matches a host up on
  // every network is the all-up one. Recovering it would evacuate healthy hosts, one rate
  // limit's worth at a time: up everywhere is what "back" means (a STARTED, never a STOPPED).
  if (problems.length === 0 && entry.action.includes('recovery') && entry.health.every((h) => h === 'up'))
    problems.push('action [recovery] for a host up on every network would evacuate healthy hosts; give it [] or leave it out')
  return problems
}

function describePath(path: PropertyKey[]): string {
  if (path.length === 0) return 'file'
  if (path[0] === 'matrix' && typeof path[1] === 'number') {
    return [`matrix row ${path[1] + 1}`, ...path.slice(2).map(String)].join('.')
  }
  return path.map(String).join('.')
}

export type Vector = Partial<Record<Network, NetworkState>>

export interface Match {
  /** 1-based row of the strategy that matched, or null. */
  row: number | null
  recovery: boolean
  /** All networks of the strategy up: the host counts as healthy. */
  allUp: boolean
  /** Why nothing matched, when nothing did. */
  reason?: string
}

/**
 * Looks a host's vector up in the strategy. A network in `unknown` or `maintenance` state can
 * never complete a recovery row: only an explicit `down` from a live cluster counts.
 */
export function matchStrategy(strategy: Strategy, vector: Vector): Match {
  const states = strategy.sequence.map((n) => vector[n] ?? 'unknown')
  const allUp = states.every((s) => s === 'up')
  const unclear = strategy.sequence.filter((_, i) => states[i] !== 'up' && states[i] !== 'down')
  if (unclear.length > 0) {
    return {
      row: null,
      recovery: false,
      allUp,
      reason: unclear.map((n) => `${n} is ${vector[n] ?? 'unknown'}`).join(', '),
    }
  }
  const index = strategy.rows.findIndex((r) => r.health.every((h, i) => h === states[i]))
  if (index < 0) return { row: null, recovery: false, allUp, reason: 'no row matches' }
  return { row: index + 1, recovery: strategy.rows[index]!.recovery, allUp }
}
