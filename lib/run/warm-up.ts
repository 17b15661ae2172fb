/**
 * What a failure's first POST would otherwise wait for, made ready by the pulse's deep look
 * (issue #22): the Keystone token, renewed when it would expire before the next deep look, and
 * Masakari's host list (masakari.lookupHosts), asked again when past its TTL. Each within its
 * own short deadline and best effort: one that fails is said, nothing kept is thrown away, and
 * a failure then pays for it exactly as without the warm-up. Nothing here decides or records.
 */
import { warmToken } from '../openstack/masakari.js'
import { boundedClient } from './bounded-client.js'
import type { Deps } from './deps.js'
import { warmHostList } from './masakari-hosts.js'
import type { Monitor } from './monitor-context.js'

/** consul-config/pulse.sh takes a deep look when the health note is this old (when nothing else rewrote it). */
export const DEEP_LOOK_INTERVAL_S = 1800

/**
 * A token that expires within this is renewed: it must outlast the next deep look by more than
 * the 5 minutes before expiry at which a run renews it itself (keystone.ts), with 5 more to spare.
 */
export const TOKEN_AHEAD_MS = (DEEP_LOOK_INTERVAL_S + 600) * 1000

/** Keystone's answer is waited for this long at most: the deep look must end within the pulse's 10 s. */
export const TOKEN_WARM_TIMEOUT_S = 2

export interface WarmedUp {
  token: 'kept' | 'renewed' | 'failed'
  hostList?: 'kept' | 'renewed' | 'failed'
}

/** The token first, then the list: the list's lookup then finds the new token kept. */
export async function warmUp(monitor: Monitor, deps: Deps): Promise<WarmedUp | undefined> {
  if (monitor.readOnly) return undefined
  const token = await warmKeystone(monitor, deps)
  if (!monitor.config.masakari.lookupHosts) return { token }
  return { token, hostList: await warmHostList(monitor, deps) }
}

async function warmKeystone(monitor: Monitor, deps: Deps): Promise<WarmedUp['token']> {
  const { logger } = monitor
  try {
    const { access, client } = await boundedClient(monitor, deps, TOKEN_WARM_TIMEOUT_S)
    return await warmToken(access, client, TOKEN_AHEAD_MS)
  } catch (err) {
    logger.warn('cannot renew the Keystone token ahead of need: a failure asks Keystone first', { error: (err as Error).message })
    return 'failed'
  }
}
