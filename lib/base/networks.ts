/** The three networks a host is watched on, one Consul cluster each. */
export const NETWORKS = ['management', 'tenant', 'storage'] as const
export type Network = (typeof NETWORKS)[number]

/** A node's state in one network's snapshot, as its serfHealth and maintenance checks say. */
export const NODE_STATES = ['up', 'down', 'maintenance'] as const
export type NodeState = (typeof NODE_STATES)[number]

/** What one network's cluster says about one host: `unknown` when the host is not in its snapshot. */
export type NetworkState = NodeState | 'unknown'

/** Names accepted in strategy files and on the command line; upstream's matrix.yaml says "manage". */
const ALIASES: Record<string, Network> = {
  manage: 'management',
  management: 'management',
  tenant: 'tenant',
  storage: 'storage',
}

export function networkFromName(name: string): Network | undefined {
  // Own keys only: "constructor" is not a network.
  return Object.hasOwn(ALIASES, name) ? ALIASES[name] : undefined
}

export const NETWORK_NAMES = Object.keys(ALIASES)
