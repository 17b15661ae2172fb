/**
 * Fencing as a step of delivery (issue #21), with fencing.enabled: a STOPPED for a host in
 * fencing.hosts (or hostsFile, or any host with fencing.template) is preceded by a power-off confirmed through the host's fence agent, run by the
 * sender after its lock check, right before the POST. Only a confirmed off lets it go NORMAL;
 * the off is written into the record (under the lock, with the record's own atomic / CAS write)
 * before the POST, so a sender that takes over after a crash sends it without fencing again.
 * A failed fence is retried with the outbox's backoff; at the last try before the expiry the
 * STOPPED goes with `host_status: UNKNOWN`, which Masakari records and does not act on.
 */
import { basename } from 'node:path'
import type { Config } from '../config/config.js'
import { afterFenceFailure, markFenced, needsFence, withHostStatus } from '../decide/fence-delivery.js'
import type { Notification, OutboxEntry } from '../decide/state-shape.js'
import type { FenceResult } from '../fence/fence-host.js'
import { fenceHost } from '../fence/fence-host.js'
import { fencesHost } from '../fence/fence-template.js'
import { fenceTargetAt } from './fence-targets.js'
import type { SendResult } from '../openstack/masakari.js'
import type { Logger } from '../base/log.js'
import { NotSenderError } from '../consul/kv-store.js'
import type { Deps } from './deps.js'
import type { Store } from '../state/store.js'
import type { DeliveryPolicy } from '../decide/outbox.js'

export interface FenceAtDelivery {
  /** Is this Consul node to be fenced: an entry in fencing.hosts (or hostsFile), or fencing.template? */
  covers: (host: string) => boolean
  /** The agent's name, as the record and `explain` give it (fence_ipmilan). */
  agent: string
  /** Its options (lib/run/fence-targets.ts), then power off, then status until off (lib/fence/fence-host.ts). */
  fence: (host: string) => Promise<FenceResult>
  /** The handler's first attempt: entries that need a fence are left to the worker. */
  leaveToWorker?: boolean
}

export function fenceAtDelivery(config: Config, deps: Deps, leaveToWorker: boolean): FenceAtDelivery {
  const ctx = { run: deps.runAgent, env: deps.configEnv.env, fencing: config.fencing, password: config.fencePassword }
  const clock = { now: deps.now, sleep: deps.sleep }
  return {
    // With a template every host is to be fenced, whether or not its template can be filled:
    // one that cannot is a failed fence (below), never a STOPPED sent NORMAL unfenced.
    covers: (host) => fencesHost(config.fencing, host),
    agent: basename(config.fencing.agent ?? ''),
    fence: async (host) => {
      const target = await fenceTargetAt(config, deps, host)
      return 'reason' in target ? { fenced: false, reason: target.reason, runs: [], elapsed: 0 } : fenceHost(ctx, clock, target.options)
    },
    ...(leaveToWorker ? { leaveToWorker } : {}),
  }
}

/** What the answer of an entry carries besides Masakari's, for its record. */
export interface FenceNote {
  /** The fence failed: the agent's own message (counted, kept on the entry). */
  fenceFailed?: string
  /** Sent with host_status UNKNOWN after the last failed fence. */
  hostStatus?: 'UNKNOWN'
}

export type BeforePost = { send: Notification; note?: FenceNote } | { notSent: SendResult; note?: FenceNote }

interface FenceDeps {
  fence: FenceAtDelivery
  store: Store
  now: () => Date
  policy: DeliveryPolicy
  logger: Logger
  mayPost?: () => Promise<boolean>
}

/**
 * What to POST for this entry: unchanged when it needs no fence (another event, a host without
 * fencing options, already fenced); else after a fence. A lost sender lock while the off is
 * recorded throws (NotSenderError): nothing is sent.
 */
export async function beforePost(entry: OutboxEntry, deps: FenceDeps): Promise<BeforePost> {
  if (!needsFence(entry, deps.fence.covers)) return { send: entry.notification }
  const result = await deps.fence.fence(entry.host)
  // A fence takes seconds: the lock is asked again before anything is recorded or sent.
  if (deps.mayPost && !(await deps.mayPost())) throw new NotSenderError('lost the sender lock while fencing: the new sender delivers')
  if (result.fenced) {
    const fenced = { at: deps.now().toISOString(), agent: deps.fence.agent, confirmed: true } as const
    const kept = await deps.store.transact(async (state) => {
      const next = markFenced(state, entry.id, fenced)
      return next === state ? { result: false } : { next, result: true }
    })
    if (!kept) return { notSent: { final: false, message: 'finished meanwhile: not sent' } }
    deps.logger.info('host fenced: power off confirmed, STOPPED sent NORMAL', {
      host: entry.host,
      agent: fenced.agent,
      elapsed: result.elapsed,
    })
    return { send: entry.notification }
  }
  return afterFailure(entry, result.reason ?? 'fence failed', deps)
}

function afterFailure(entry: OutboxEntry, reason: string, deps: FenceDeps): BeforePost {
  const fields = { host: entry.host, agent: deps.fence.agent, error: reason, attempts: entry.attempts + 1, decidedAt: entry.decidedAt }
  const next = afterFenceFailure(entry, deps.now(), deps.policy)
  if (next.next === 'retry') {
    deps.logger.error('fencing failed: STOPPED not sent (never NORMAL without a confirmed off); will retry', {
      ...fields,
      retryAt: next.retryAt,
    })
    return { notSent: { final: false, message: `fencing failed: ${reason}` }, note: { fenceFailed: reason } }
  }
  deps.logger.error(
    'fencing failed at the last try before the expiry: STOPPED sent with host_status UNKNOWN (Masakari records it and does not evacuate); power the host off and recover it by hand',
    { ...fields, expiry: deps.policy.expiry },
  )
  return { send: withHostStatus(entry.notification, 'UNKNOWN'), note: { fenceFailed: reason, hostStatus: 'UNKNOWN' } }
}
