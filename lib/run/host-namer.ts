/** The Masakari name of each node for one run: lib/consul/host-names.ts's mapping, with node meta read from the own agent's catalog when asked. */
import type { Logger } from '../base/log.js'
import type { Config } from '../config/config.js'
import { consulAgent } from '../consul/consul-api.js'
import { catalogNodeMeta, masakariHostName, metaAgentAddress } from '../consul/host-names.js'
import { consulTls } from './coordination.js'
import type { Deps } from './deps.js'

/**
 * The mapping as a function of the node name. With `metaKey`, the catalog is read once; when it
 * cannot be, the names are mapped without meta (a run that records nothing would lose the
 * decision) and it is logged with the agent's answer.
 */
export async function masakariNamer(config: Config, deps: Deps, logger: Logger): Promise<(node: string) => string> {
  const mapping = config.hostNames
  let meta = new Map<string, Record<string, string>>()
  const addr = mapping.metaKey === undefined ? undefined : metaAgentAddress(config.consul.agents, deps.configEnv.env)
  if (addr !== undefined) {
    try {
      const tls = await consulTls(config.consulAccess, deps)
      meta = await catalogNodeMeta(consulAgent(addr, config.consulAccess, await deps.fetch(), tls, config.consul.timeout))
    } catch (err) {
      logger.warn('node meta unavailable: Masakari names mapped without hostNames.metaKey', { error: (err as Error).message })
    }
  }
  return (node) => masakariHostName(node, mapping, meta.get(node))
}
