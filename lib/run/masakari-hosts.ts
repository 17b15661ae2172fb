/**
 * Masakari's host list for a run that would queue a STOPPED (masakari.lookupHosts): kept in the
 * state directory, asked again when too old or when a queued host is missing from it (see
 * lib/decide/host-list.ts for when), and the nodes it does not hold warned about once. It fails
 * towards notifying: with no list to be had, no node is excluded by it and the STOPPED goes to
 * Masakari as it would without the lookup (a 400 if the host is unknown there, nothing lost).
 */
import { readFile } from 'node:fs/promises'
import { masakariHostNames } from '../openstack/masakari.js'
import { writeFileAtomic } from '../state/atomic-file.js'
import { hostListPath } from '../state/paths.js'
import {
  dueForWarming,
  freshList,
  type HostList,
  HostListSchema,
  refreshReason,
  usableWhenRefreshFails,
  withWarned,
} from '../decide/host-list.js'
import { boundedClient } from './bounded-client.js'
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'

/**
 * The whole lookup (Keystone when the token must be renewed, every page) ends by then, as the
 * own agents' answers do (consul.timeout's default): it runs beside them, before the record, and
 * a Masakari that does not answer must not hold the watch; the STOPPED then goes (or is retried)
 * as without the lookup. A cached token and a list kept for HOST_LIST_TTL_S make it rare.
 */
export const HOST_LOOKUP_TIMEOUT_S = 1

/**
 * The list to look `wanted` (the Masakari names about to get a STOPPED) up in: the kept one, or
 * a new one when due; the kept one up to HOST_LIST_MAX_AGE_S old when no new one can be had;
 * else undefined (said), and no node is excluded by it.
 */
export async function masakariHostList(monitor: Monitor, deps: Deps, wanted: readonly string[]): Promise<HostList | undefined> {
  const { config, logger } = monitor
  const path = hostListPath(config.stateDir)
  const kept = await readHostList(path)
  const why = refreshReason(kept, wanted, deps.now())
  if (why === undefined) return kept
  try {
    return await lookUpAndKeep(monitor, deps, kept, why)
  } catch (err) {
    const fallback = usableWhenRefreshFails(kept, deps.now())
    const error = (err as Error).message
    if (fallback)
      logger.warn("cannot look up Masakari's hosts: the list kept from before is used", { why, error, lookedUpAt: fallback.lookedUpAt })
    else logger.warn("cannot look up Masakari's hosts: no node is excluded by it this run (Masakari answers for itself)", { why, error })
    return fallback
  }
}

/**
 * Ahead of need (the pulse's deep look, lib/run/warm-up.ts): a new list when the kept one is
 * past its TTL, so that a failure finds one. A failure is said and changes nothing: the kept
 * list stays, and a run about to queue a STOPPED asks again as it would have.
 */
export async function warmHostList(monitor: Monitor, deps: Deps): Promise<'kept' | 'renewed' | 'failed'> {
  const kept = await readHostList(hostListPath(monitor.config.stateDir))
  if (!dueForWarming(kept, deps.now())) return 'kept'
  try {
    await lookUpAndKeep(monitor, deps, kept, 'ahead of need (pulse)')
    return 'renewed'
  } catch (err) {
    monitor.logger.warn("cannot look up Masakari's hosts ahead of need: a failure asks again", { error: (err as Error).message })
    return 'failed'
  }
}

/** A new list from Masakari, kept; an empty answer is an error. */
async function lookUpAndKeep(monitor: Monitor, deps: Deps, kept: HostList | undefined, why: string): Promise<HostList> {
  const got = await lookUp(monitor, deps)
  // An empty answer is taken for one that could not tell: it would make every node unknown.
  if (got.names.length === 0) throw new Error(`Masakari lists no host in its ${got.segments} failover segment(s)`)
  const list = freshList(got.names, got.segments, deps.now(), kept)
  monitor.logger.debug('Masakari host list looked up', { why, hosts: list.hosts.length, segments: list.segments })
  await keep(monitor, list)
  return list
}

/** GET /segments and their hosts, with the token kept in the state directory, all within HOST_LOOKUP_TIMEOUT_S. */
async function lookUp(monitor: Monitor, deps: Deps) {
  const { access, client } = await boundedClient(monitor, deps, HOST_LOOKUP_TIMEOUT_S)
  return masakariHostNames(access, client)
}

/**
 * Warns once about each node the list does not hold (its Masakari name remembered in the kept
 * list until a new list holds it): a node that is no host stays so, and every run that would
 * notify about it must not say it again.
 */
export async function warnUnknown(
  monitor: Monitor,
  list: HostList,
  unknown: ReadonlyMap<string, string>,
  nameOf: (node: string) => string,
) {
  const byName = new Map([...unknown.keys()].map((node) => [nameOf(node), node]))
  const { list: next, said } = withWarned(list, byName.keys())
  for (const name of said) {
    const node = byName.get(name)!
    monitor.logger.warn('not a host in any Masakari failover segment: no STOPPED for it, no rate-limit slot used', {
      host: node,
      ...(name === node ? {} : { masakariHost: name }),
      lookedUpAt: list.lookedUpAt,
      hint: 'add it to a failover segment if it is a compute host, or to hostNames.exclude (said once while it stays unknown)',
    })
  }
  if (next !== list) await keep(monitor, next)
}

/** The kept list, or undefined when there is none or it cannot be read (then Masakari is asked). */
async function readHostList(path: string): Promise<HostList | undefined> {
  try {
    const parsed = HostListSchema.safeParse(JSON.parse(await readFile(path, 'utf8')))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

/**
 * Writes the list (not under a read-only command: a run as root would leave a root-owned file).
 * A list that cannot be written is said and the run goes on with it in hand. Not fsynced: a
 * cache, rewritten when due, whole or absent after a crash.
 */
async function keep(monitor: Monitor, list: HostList): Promise<void> {
  if (monitor.readOnly) return
  const path = hostListPath(monitor.config.stateDir)
  await writeFileAtomic(path, `${JSON.stringify(list)}\n`, 0o640, { durable: false }).catch((err) =>
    monitor.logger.warn("cannot keep Masakari's host list: it is asked again next run", { path, error: (err as Error).message }),
  )
}
