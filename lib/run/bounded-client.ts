/**
 * What a bounded call to Keystone and Masakari is made with, for a run that must not wait long:
 * the host list's lookup before a STOPPED (lib/run/masakari-hosts.ts) and the pulse's token
 * warm-up (lib/run/warm-up.ts). Every request of the call ends within `seconds` together (one
 * deadline on the fetch), none waits longer than that on its own, and the token is the one kept in
 * the state directory (read only for an operator's read-only command).
 */
import { withDeadline } from '../base/http.js'
import type { ClientDeps } from '../openstack/masakari.js'
import type { MasakariAccess } from '../openstack/masakari-config.js'
import { fileTokenCache, readOnlyTokenCache } from '../openstack/token-cache.js'
import { tokenPath } from '../state/paths.js'
import type { Deps } from './deps.js'
import type { Monitor } from './monitor-context.js'

export async function boundedClient(
  monitor: Monitor,
  deps: Deps,
  seconds: number,
): Promise<{ access: MasakariAccess; client: ClientDeps }> {
  const { config, logger } = monitor
  const file = fileTokenCache(tokenPath(config.stateDir))
  const fetch = withDeadline(await deps.fetch(), AbortSignal.timeout(seconds * 1000))
  const requestTimeout = Math.min(config.masakari.requestTimeout, seconds)
  return {
    access: { ...config, masakari: { ...config.masakari, requestTimeout } },
    client: {
      fetch,
      now: deps.now,
      logger,
      agent: await deps.tlsAgent(config.caPem, config.masakari.insecure),
      tokenCache: monitor.readOnly ? readOnlyTokenCache(file) : file,
    },
  }
}
