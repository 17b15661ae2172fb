/**
 * Consul node name → Masakari host name. In many clouds they differ (FQDN in Consul, short name
 * in Masakari; a prefix): the operator says how in `hostNames`. Applied where a notification's
 * hostname is built (evaluator.ts); everything else (snapshots, ledger, logs) keeps Consul's name.
 * Node meta is read from the catalog here, for these names and for fencing.template.
 */
import { z } from 'zod'
import { type ConsulAgent, ConsulError } from './consul-api.js'
import type { Network } from '../base/networks.js'

export const HostNamesSchema = z
  .strictObject({
    /** Explicit names, node → host; wins over everything else. */
    map: z.record(z.string().min(1), z.string().min(1)).default({}),
    /** A node-meta key (the agent's `node_meta`) holding the Masakari name; read from the catalog when set. */
    metaKey: z.string().min(1).optional(),
    /** A regular expression on the node name and its replacement (`$1`…); a node it does not match keeps its name. */
    regex: z
      .strictObject({ match: z.string().min(1), replace: z.string() })
      .refine((r) => isRegex(r.match), { message: 'match is not a valid regular expression', path: ['match'] })
      .optional(),
    /** `true`: cut the name at its first dot (FQDN → short name); a domain (`.example.org`): cut only that suffix. */
    stripDomain: z.union([z.boolean(), z.string().min(1)]).default(false),
    /**
     * Consul nodes that are never Masakari hosts, besides Consul's servers (never notified
     * about): a network or storage node that runs a Consul client, for instance.
     */
    exclude: z.array(z.string().min(1)).default([]),
  })
  .prefault({})
export type HostNameMapping = z.infer<typeof HostNamesSchema>

function isRegex(source: string): boolean {
  try {
    new RegExp(source)
    return true
  } catch {
    return false
  }
}

/**
 * The Masakari host name of a Consul node: the explicit map, else the node's meta value under
 * `metaKey`, else the name rewritten by `regex` then `stripDomain` (each only when configured).
 */
export function masakariHostName(node: string, mapping: HostNameMapping, meta?: Readonly<Record<string, string>>): string {
  const mapped = Object.hasOwn(mapping.map, node) ? mapping.map[node] : undefined
  if (mapped !== undefined) return mapped
  const fromMeta = mapping.metaKey === undefined || !meta || !Object.hasOwn(meta, mapping.metaKey) ? undefined : meta[mapping.metaKey]
  if (fromMeta) return fromMeta
  let name = node
  if (mapping.regex) name = name.replace(new RegExp(mapping.regex.match), mapping.regex.replace)
  const strip = mapping.stripDomain
  if (strip === true) name = name.split('.')[0] || name
  else if (typeof strip === 'string') {
    const suffix = strip.startsWith('.') ? strip : `.${strip}`
    if (name.endsWith(suffix) && name.length > suffix.length) name = name.slice(0, -suffix.length)
  }
  return name
}

/** Whether the mapping changes any name at all (else nothing is asked and nothing is shown). */
export const mapsNames = (m: HostNameMapping) =>
  Object.keys(m.map).length > 0 || m.metaKey !== undefined || m.regex !== undefined || m.stripDomain !== false

const MembersSchema = z.array(z.object({ Name: z.string(), Tags: z.record(z.string(), z.string()).nullable().optional() }))

/**
 * The Consul servers an agent knows in its cluster (`/v1/agent/members`, tag role=consul): the
 * controllers, never compute hosts. A Consul name, as the snapshots use.
 */
export async function consulServers(agent: ConsulAgent): Promise<Set<string>> {
  const answer = await agent.ok('GET', '/v1/agent/members')
  const parsed = MembersSchema.safeParse(safeJson(answer.text))
  if (!parsed.success)
    throw new ConsulError(`GET ${agent.url}/v1/agent/members: not a list of members: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`)
  return new Set(parsed.data.filter((m) => m.Tags?.role === 'consul').map((m) => m.Name))
}

const CatalogNodesSchema = z.array(z.object({ Node: z.string(), Meta: z.record(z.string(), z.string()).nullable().optional() }))

/**
 * Every node's meta, from the own agent's catalog (`GET /v1/catalog/nodes`): the watch's checks
 * payload carries no node meta. Asked only when `metaKey` is set, and only when a notification
 * is about to be built.
 */
export async function catalogNodeMeta(agent: ConsulAgent): Promise<Map<string, Record<string, string>>> {
  const answer = await agent.ok('GET', '/v1/catalog/nodes')
  const nodes = CatalogNodesSchema.safeParse(safeJson(answer.text))
  if (!nodes.success)
    throw new ConsulError(`GET ${agent.url}/v1/catalog/nodes: not a list of nodes: ${z.prettifyError(nodes.error).replace(/\n/g, '; ')}`)
  return new Map(nodes.data.map((n) => [n.Node, n.Meta ?? {}]))
}

/** GET /v1/catalog/node/<node>: the node with its meta, or `null` (200) when the catalog has no such node (or the token may not see it). */
const CatalogNodeSchema = z.object({ Node: z.object({ Meta: z.record(z.string(), z.string()).nullable().optional() }) }).nullable()

/**
 * One node's meta (`GET /v1/catalog/node/<node>`), for fencing.template at delivery: one node,
 * not the whole catalog of a large cloud. undefined when the catalog does not show the node: a
 * failed node stays in it (until Consul reaps it, 72 h), so that is a wrong name or the token's
 * missing node read rule.
 */
export async function catalogNodeMetaOf(agent: ConsulAgent, node: string): Promise<Record<string, string> | undefined> {
  const path = `/v1/catalog/node/${encodeURIComponent(node)}`
  const answer = await agent.ok('GET', path)
  const parsed = CatalogNodeSchema.safeParse(safeJson(answer.text))
  if (!parsed.success)
    throw new ConsulError(`GET ${agent.url}${path}: not a catalog node: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`)
  return parsed.data === null ? undefined : (parsed.data.Node.Meta ?? {})
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** The agent whose catalog fencing.template's `{meta.KEY}` reads: management's, else CONSUL_HTTP_ADDR (the BMC's address is in the management agent's node_meta). */
export function managementAgentAddress(
  agents: Partial<Record<Network, string>>,
  env: Record<string, string | undefined>,
): string | undefined {
  return agents.management ?? (env.CONSUL_HTTP_ADDR || undefined)
}

/** The agent whose catalog tells node meta: management's, else any configured, else CONSUL_HTTP_ADDR. */
export function metaAgentAddress(agents: Partial<Record<Network, string>>, env: Record<string, string | undefined>): string | undefined {
  return agents.management ?? agents.tenant ?? agents.storage ?? (env.CONSUL_HTTP_ADDR || undefined)
}
