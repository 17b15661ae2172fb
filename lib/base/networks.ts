/** The three networks a host is watched on, one Consul cluster each. */
export const NETWORKS = ['management', 'tenant', 'storage'] as const
export type Network = (typeof NETWORKS)[number]

/** What one network's cluster says about one host. */
export type NetworkState = 'up' | 'down' | 'maintenance' | 'unknown'

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
