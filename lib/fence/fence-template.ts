/**
 * Which options a host's fence agent gets (issue #21), pure: its own entry (fencing.hosts, which
 * at load time already holds fencing.hostsFile's entries under its own), else fencing.template
 * with `{node}` and `{meta.KEY}` filled for that node. A template that cannot be filled (a meta
 * key the node lacks, a value that would break the agent's stdin) leaves the host without
 * options, and says why: at delivery that is a failed fence, never a STOPPED sent NORMAL. The
 * node meta is looked up by the caller (lib/run/fence-targets.ts).
 */
import {
  type FenceOptions,
  type FencingConfig,
  fillPlaceholders,
  isOneLine,
  metaKeyOf,
  ONE_LINE_RULE,
  placeholderNames,
} from './fence-config.js'

export type FenceTarget = { options: FenceOptions } | { reason: string }

/** Node meta as the catalog gives it (`Node.Meta`). */
export type NodeMeta = Readonly<Record<string, string>>

/** The meta keys the template reads, sorted: none means no catalog to ask. */
export function templateMetaKeys(template: FenceOptions | undefined): string[] {
  const keys = new Set<string>()
  for (const v of Object.values(template ?? {}))
    if (typeof v === 'string') for (const name of placeholderNames(v)) keys.add(metaKeyOf(name) ?? '')
  keys.delete('')
  return [...keys].sort()
}

/** Whether a host's fence depends on its node meta: no entry of its own, and a template that reads meta. */
export const needsNodeMeta = (fencing: FencingConfig, node: string): boolean =>
  !Object.hasOwn(fencing.hosts, node) && templateMetaKeys(fencing.template).length > 0

/** Whether fencing covers a host at all: its own entry, or a template (which may still fail to fill). */
export const fencesHost = (fencing: FencingConfig, node: string): boolean =>
  Object.hasOwn(fencing.hosts, node) || fencing.template !== undefined

/**
 * The template filled for one node, or why it cannot be: every meta key the node lacks or holds
 * empty, and every value that would not be one stdin line, said at once.
 */
export function fillTemplate(template: FenceOptions, node: string, meta: NodeMeta): FenceTarget {
  // A node name from a snapshot is already one line (lib/consul/checks-payload.ts); said all the same.
  if (!isOneLine(node)) return { reason: `fencing.template cannot be filled: the node name would break the agent's stdin` }
  const missing: string[] = []
  const broken: string[] = []
  for (const key of templateMetaKeys(template)) {
    const value = Object.hasOwn(meta, key) ? meta[key] : undefined
    if (value === undefined || value === '') missing.push(key)
    else if (!isOneLine(value)) broken.push(key)
  }
  const reasons: string[] = []
  if (missing.length > 0)
    reasons.push(`node ${node} has no node meta ${missing.join(', ')} (or it is empty) in the management agent's catalog`)
  if (broken.length > 0) reasons.push(`node meta ${broken.join(', ')} of ${node} refused: ${ONE_LINE_RULE}`)
  if (reasons.length > 0) return { reason: `fencing.template cannot be filled: ${reasons.join('; ')}` }
  // Each key was found above; an unknown placeholder (the schema refuses one) stays as written.
  const fill = (name: string) => {
    const key = metaKeyOf(name)
    return name === 'node' ? node : key === undefined ? `{${name}}` : meta[key]!
  }
  return {
    options: Object.fromEntries(Object.entries(template).map(([k, v]) => [k, typeof v === 'string' ? fillPlaceholders(v, fill) : v])),
  }
}

/**
 * A host's options over fencing.options: its own entry wins (fencing.hosts over fencing.hostsFile,
 * merged at load), else the template filled with its meta, else none, with the reason.
 */
export function fenceTarget(fencing: FencingConfig, node: string, meta: NodeMeta = {}): FenceTarget {
  if (Object.hasOwn(fencing.hosts, node)) return { options: { ...fencing.options, ...fencing.hosts[node] } }
  if (fencing.template === undefined) return { reason: `no fencing.hosts or fencing.hostsFile entry for ${node}, and no fencing.template` }
  const filled = fillTemplate(fencing.template, node, meta)
  return 'reason' in filled ? filled : { options: { ...fencing.options, ...filled.options } }
}

/**
 * The hosts fence-check asks about: every own entry, and with a template every node of the
 * management snapshot but this controller, the Consul servers (controllers, never notified
 * about, so never fenced) and hostNames.exclude. Sorted.
 */
export function checkedHosts(
  fencing: FencingConfig,
  snapshotNodes: readonly string[],
  notHosts: { own: string; servers: ReadonlySet<string>; exclude: readonly string[] },
): string[] {
  const hosts = new Set(Object.keys(fencing.hosts))
  if (fencing.template !== undefined)
    for (const node of snapshotNodes)
      if (node !== notHosts.own && !notHosts.servers.has(node) && !notHosts.exclude.includes(node)) hosts.add(node)
  return [...hosts].sort()
}
