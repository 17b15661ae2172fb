/**
 * Masakari's host list as the monitor keeps it between runs (`<stateDir>/masakari-hosts.json`):
 * a Consul node that is in no failover segment (a network or storage node, a controller whose
 * agents are clients) must not get a STOPPED that Masakari refuses with 400 after it has used
 * up a rate-limit slot. Pure: when the list is fresh enough, when it must be asked again, which
 * queued hosts it does not hold, and which of them are worth a warning. The I/O is
 * lib/run/masakari-hosts.ts's.
 */
import { z } from 'zod'

/** A list younger than this is used as it is: Masakari's segments change by an operator's hand. */
export const HOST_LIST_TTL_S = 300
/**
 * A host missing from a list younger than the TTL asks for a new list, but not more often than
 * this: a host just added to a segment is notified within half a minute, while a node that is
 * no host at all, failed for good, costs one list per this interval.
 */
export const HOST_LIST_RECHECK_S = 30
/**
 * A list that holds every host about to get a STOPPED is used as it is up to this age, past its
 * TTL: asking first would hold the STOPPED for Keystone and Masakari's pages, and what a newer
 * list could change is only to take a host out, the rare case of a host removed from its segment
 * since, whose STOPPED Masakari then refuses (400, final), as it does for one removed within the
 * TTL, and as without the lookup. The pulse's deep look renews the list past its TTL (every 30
 * minutes when idle, lib/run/warm-up.ts), so a failure finds one younger than this. A host the
 * list does not hold still asks as before: a list may only fail towards notifying.
 */
export const HOST_LIST_KNOWN_MAX_AGE_S = 2400

/**
 * Past its TTL, a list is still used up to this age when a new one cannot be had (said in the
 * log): Masakari down for a while must not turn a controller's dead network node into a STOPPED.
 */
export const HOST_LIST_MAX_AGE_S = 3600

export const HostListSchema = z.object({
  version: z.literal(1),
  /** When Masakari gave this list (ISO-8601). */
  lookedUpAt: z.string(),
  segments: z.number().int().nonnegative(),
  /** Every host name in every failover segment. */
  hosts: z.array(z.string()),
  /** Masakari names already warned about as unknown: one warning per host while it stays unknown. */
  warned: z.array(z.string()).default([]),
})
export type HostList = z.infer<typeof HostListSchema>

const ageS = (list: HostList, now: Date) => (now.getTime() - Date.parse(list.lookedUpAt)) / 1000

/**
 * Why Masakari must be asked for a new list before `wanted` (the Masakari names about to get a
 * STOPPED) can be looked up in `list`; undefined when the list will do.
 */
export function refreshReason(list: HostList | undefined, wanted: readonly string[], now: Date): string | undefined {
  if (!list) return 'no list kept yet'
  const age = ageS(list, now)
  const known = new Set(list.hosts)
  const missing = wanted.filter((h) => !known.has(h))
  if (missing.length === 0 && wanted.length > 0 && age >= 0 && age < HOST_LIST_KNOWN_MAX_AGE_S) return undefined
  if (!(age >= 0 && age < HOST_LIST_TTL_S)) return `the list is ${Math.round(age)} s old (TTL ${HOST_LIST_TTL_S} s)`
  if (missing.length > 0 && age >= HOST_LIST_RECHECK_S) return `${missing.join(', ')} not in the list of ${list.lookedUpAt}`
  return undefined
}

/**
 * Whether the pulse's deep look asks Masakari for a new list ahead of need (lib/run/warm-up.ts):
 * none kept, or past its TTL, or dated in the future.
 */
export function dueForWarming(list: HostList | undefined, now: Date): boolean {
  const age = list && ageS(list, now)
  return age === undefined || !(age >= 0 && age < HOST_LIST_TTL_S)
}

/** A kept list that may stand in when a new one cannot be had: not older than HOST_LIST_MAX_AGE_S. */
export function usableWhenRefreshFails(list: HostList | undefined, now: Date): HostList | undefined {
  const age = list && ageS(list, now)
  return list && age !== undefined && age >= 0 && age < HOST_LIST_MAX_AGE_S ? list : undefined
}

/**
 * A new list from Masakari, keeping the warnings of hosts it still does not hold (a host added
 * since, then removed again, is warned about anew).
 */
export function freshList(hosts: readonly string[], segments: number, at: Date, before: HostList | undefined): HostList {
  const known = new Set(hosts)
  const warned = (before?.warned ?? []).filter((h) => !known.has(h))
  return { version: 1, lookedUpAt: at.toISOString(), segments, hosts: [...known].sort(), warned }
}

/** The reason shown for a node the list does not hold (status, explain, the decision log). */
export const notInMasakari = (list: HostList) => `not a host in any Masakari segment (looked up ${list.lookedUpAt})`

/** The nodes whose Masakari name `list` does not hold, with why; none from a list without hosts. */
export function unknownHosts(nodes: Iterable<string>, nameOf: (node: string) => string, list: HostList): Map<string, string> {
  const unknown = new Map<string, string>()
  if (list.hosts.length === 0) return unknown
  const known = new Set(list.hosts)
  for (const node of nodes) if (!known.has(nameOf(node))) unknown.set(node, notInMasakari(list))
  return unknown
}

/** The list with `names` remembered as warned about; `said` the ones not warned about before. */
export function withWarned(list: HostList, names: Iterable<string>): { list: HostList; said: string[] } {
  const before = new Set(list.warned)
  const said = [...new Set(names)].filter((n) => !before.has(n)).sort()
  return { list: said.length === 0 ? list : { ...list, warned: [...list.warned, ...said].sort() }, said }
}
