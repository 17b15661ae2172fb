/**
 * Talks to Masakari, with a token from Keystone (lib/openstack/keystone.ts). Every answer is parsed at
 * this edge and mapped to an outcome the delivery loop can act on: final (never retried) or
 * retry later.
 */
import { z } from 'zod'
import type { MasakariAccess } from './masakari-config.js'
import { brief, NetworkError, requester, safeJson, type Fetch, type HttpRequest } from '../base/http.js'
import { AuthError, keystone, type CachedToken, type Keystone, type TokenCache } from './keystone.js'
import type { Logger } from '../base/log.js'
import { stage } from '../base/stages.js'
import type { Notification, Outcome } from '../decide/state-shape.js'

// What a client is built from, taken from here by its callers and tests.
export { agentFor, type Fetch, type HttpResponse } from '../base/http.js'
export { authBody, type CachedToken, type TokenCache } from './keystone.js'

export type SendResult = { final: true; outcome: Outcome; message: string; uuid?: string } | { final: false; message: string }
type FinalResult = Extract<SendResult, { final: true }>

export interface MasakariClient {
  send(notification: Notification): Promise<SendResult>
}

/** GET /v1/segments, /v1/segments/<id>/hosts and /v1/notifications, as far as we use them. */
// `id`: the database row's, which Masakari's `marker` names (not the uuid: it answers 400 "Marker … could not be found").
const SegmentsSchema = z.object({ segments: z.array(z.object({ uuid: z.string(), id: z.number().optional() })) })
const HostsSchema = z.object({ hosts: z.array(z.object({ uuid: z.string(), name: z.string(), id: z.number().optional() })) })
const NotificationListSchema = z.object({
  notifications: z.array(
    z.object({
      notification_uuid: z.string(),
      generated_time: z.string(),
      type: z.string(),
      status: z.string().nullish(),
      payload: z.record(z.string(), z.unknown()).nullish(),
    }),
  ),
})

/** Masakari's error bodies: {"conflictingRequest": {"message": …, "code": 409}} and the like. */
const ErrorBodySchema = z.record(z.string(), z.object({ message: z.string() }).loose())

export interface ClientDeps {
  fetch: Fetch
  now: () => Date
  tokenCache: TokenCache
  logger: Logger
  /** https.Agent carrying the CA bundle / insecure switch, when TLS is configured; for https: URLs only. */
  agent?: unknown
}

/** What one client's requests share: the timeout and TLS agent, and the token. */
interface Session {
  request: HttpRequest
  keystone: Keystone
}

function sessionOf(config: MasakariAccess, deps: ClientDeps): Session {
  const request = requester(deps.fetch, deps.agent, config.masakari.requestTimeout)
  return { request, keystone: keystone(config, { request, now: deps.now, tokenCache: deps.tokenCache, logger: deps.logger }) }
}

export function masakariClient(config: MasakariAccess, deps: ClientDeps): MasakariClient {
  const session = sessionOf(config, deps)
  return {
    async send(notification) {
      try {
        return await deliver(session, notification)
      } catch (err) {
        // No answer, or Keystone would not give a token: worth another try later. Anything else is a bug.
        if (err instanceof NetworkError || err instanceof AuthError) return { final: false, message: err.message }
        throw err
      }
    },
  }
}

/**
 * Renews the kept Keystone token when it expires within `aheadMs` (lib/run/warm-up.ts, the
 * pulse's deep look), keeping it until a new one is had.
 */
export function warmToken(config: MasakariAccess, deps: ClientDeps, aheadMs: number): Promise<'kept' | 'renewed'> {
  return sessionOf(config, deps).keystone.warm(aheadMs)
}

/** POSTs the notification and classifies the answer; a STOPPED answered "on maintenance" is looked up. */
async function deliver(session: Session, notification: Notification): Promise<SendResult> {
  const { token, res } = await postWithToken(session, notification)
  const result = classify(res.status, res.text)
  if (!(result.final && result.outcome === 'on-maintenance' && notification.payload.event === 'STOPPED')) return result
  return stoppedOnMaintenance(session.request, token, notification, result)
}

async function postWithToken(session: Session, notification: Notification) {
  const token = await session.keystone.token()
  stage('Keystone token')
  const res = await post(session.request, token, notification)
  stage('POST answered')
  if (res.status !== 401) return { token, res }
  // The cached token was revoked or expired early: one fresh token, one more try.
  const fresh = await session.keystone.renew()
  return { token: fresh, res: await post(session.request, fresh, notification) }
}

function post(request: HttpRequest, t: CachedToken, notification: Notification) {
  return request(
    `${t.endpoint}/notifications`,
    'POST',
    { 'Content-Type': 'application/json', 'X-Auth-Token': t.token },
    JSON.stringify({ notification }),
  )
}

/**
 * Masakari checks "host on maintenance" before "duplicate" (masakari/ha/api.py
 * _create_notification), and its engine puts the host on maintenance when it processes a
 * STOPPED. So a resend of a STOPPED it already stored (a crash or a timeout between its 202
 * and our record) is answered "on maintenance", not "duplicate". Ask it.
 */
async function stoppedOnMaintenance(
  request: HttpRequest,
  t: CachedToken,
  notification: Notification,
  onMaintenance: FinalResult,
): Promise<SendResult> {
  let held: Awaited<ReturnType<typeof holds>>
  try {
    held = await holds(request, t, notification)
  } catch (err) {
    const e = err as Error
    return {
      final: false,
      message: `Masakari answered "on maintenance" and could not be asked whether it already holds this STOPPED: ${e.message}`,
    }
  }
  if (held === undefined) return onMaintenance
  if ('refused' in held)
    return {
      ...onMaintenance,
      message: `${onMaintenance.message} (could not check whether it already holds this STOPPED: ${held.refused})`,
    }
  return {
    final: true,
    outcome: 'duplicate',
    uuid: held.uuid,
    message: `Masakari already holds it (notification ${held.uuid}, status ${held.status}); it answered "on maintenance" because it acted on it`,
  }
}

/** Why Masakari will not tell: 403/404/400 (policy, an API without it, or an unexpected body). */
type Refused = { refused: string }

/**
 * Our notification, if Masakari holds it: the one of this host (source_host_uuid;
 * notifications are not filterable by name) with the same generated_time and event.
 */
async function holds(
  request: HttpRequest,
  t: CachedToken,
  notification: Notification,
): Promise<{ uuid: string; status: string } | Refused | undefined> {
  const host = await hostUuid(request, t, notification.hostname)
  if ('refused' in host) return host
  const query = new URLSearchParams({
    source_host_uuid: host.uuid,
    type: notification.type,
    'generated-since': notification.generated_time,
  })
  const found = await list(request, t, `/notifications?${query}`, NotificationListSchema)
  if ('refused' in found) return found
  const ours = Date.parse(notification.generated_time)
  const match = found.data.notifications.find(
    (n) => n.type === notification.type && masakariTime(n.generated_time) === ours && n.payload?.event === notification.payload.event,
  )
  return match && { uuid: match.notification_uuid, status: match.status ?? 'unknown' }
}

/** The host's uuid in the first failover segment that has it. */
async function hostUuid(request: HttpRequest, t: CachedToken, hostname: string): Promise<{ uuid: string } | Refused> {
  const segments = await list(request, t, '/segments', SegmentsSchema)
  if ('refused' in segments) return segments
  for (const segment of segments.data.segments) {
    const query = new URLSearchParams({ name: hostname })
    const hosts = await list(request, t, `/segments/${encodeURIComponent(segment.uuid)}/hosts?${query}`, HostsSchema)
    if ('refused' in hosts) return hosts
    const uuid = hosts.data.hosts.find((h) => h.name === hostname)?.uuid
    if (uuid !== undefined) return { uuid }
  }
  return { refused: `host ${hostname} is in none of the ${segments.data.segments.length} failover segments listed` }
}

/** GET a Masakari list; `refused` when it will not tell. */
async function list<T>(request: HttpRequest, t: CachedToken, path: string, schema: z.ZodType<T>): Promise<{ data: T } | Refused> {
  const url = `${t.endpoint}${path}`
  const res = await request(url, 'GET', { 'X-Auth-Token': t.token })
  if (res.status === 403 || res.status === 404 || res.status === 400)
    return { refused: `GET ${url} answered ${res.status}: ${errorMessage(res.text)}` }
  if (res.status !== 200) throw new NetworkError(`GET ${url} answered ${res.status}: ${errorMessage(res.text)}`)
  const parsed = schema.safeParse(safeJson(res.text))
  if (!parsed.success) return { refused: `GET ${url}: unexpected answer: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}` }
  return { data: parsed.data }
}

/** Masakari's hosts: every name in every failover segment, and how many segments there are. */
export interface MasakariHosts {
  names: string[]
  segments: number
}

/**
 * GET /segments, then every segment's /segments/<uuid>/hosts (at once), each list page by page.
 * Throws when any of it cannot be had (no token, no answer, a refusal, an unexpected body): a
 * partial list would take hosts for unknown ones.
 */
export async function masakariHostNames(config: MasakariAccess, deps: ClientDeps): Promise<MasakariHosts> {
  const { request, keystone: tokens } = sessionOf(config, deps)
  const t = await tokens.token()
  const segments = await everyPage(request, t, '/segments', SegmentsSchema, (d) => d.segments)
  const lists = await Promise.all(
    segments.map((s) => everyPage(request, t, `/segments/${encodeURIComponent(s.uuid)}/hosts`, HostsSchema, (d) => d.hosts)),
  )
  return { names: [...new Set(lists.flat().map((h) => h.name))], segments: segments.length }
}

/**
 * Every item of a Masakari list. Its pages carry no "next" link and their size is the server's
 * osapi_max_limit, which a client cannot know: the next page is asked (marker = the last item's
 * `id`, the database row Masakari's marker names; seen on masakari-api 17: a uuid is answered
 * 400) until one comes back empty, one request more per list, so that no host of a long segment
 * is taken for an unknown one. An answer without ids cannot be paged: its first page is all.
 */
async function everyPage<T, I extends { uuid: string; id?: number | undefined }>(
  request: HttpRequest,
  t: CachedToken,
  path: string,
  schema: z.ZodType<T>,
  items: (data: T) => I[],
): Promise<I[]> {
  const all: I[] = []
  const seen = new Set<string>()
  for (let marker: number | undefined; ; ) {
    const page = await list(request, t, marker === undefined ? path : `${path}?${new URLSearchParams({ marker: String(marker) })}`, schema)
    if ('refused' in page) throw new Error(page.refused)
    const fresh = items(page.data).filter((i) => !seen.has(i.uuid))
    for (const i of fresh) seen.add(i.uuid)
    all.push(...fresh)
    // A server that ignores the marker would answer the same page for ever.
    marker = fresh.at(-1)?.id
    if (marker === undefined) return all
  }
}

/** Maps Masakari's answer to a notification POST to what we do next. */
export function classify(status: number, text: string): SendResult {
  const message = errorMessage(text)
  if (status === 202 || status === 200 || status === 201) {
    const uuid = (safeJson(text) as { notification?: { notification_uuid?: string } } | undefined)?.notification?.notification_uuid
    return { final: true, outcome: 'accepted', message: 'accepted by Masakari', uuid }
  }
  if (status === 409) {
    return /maintenance/i.test(message)
      ? { final: true, outcome: 'on-maintenance', message }
      : { final: true, outcome: 'duplicate', message }
  }
  if (status === 400) {
    return /could not be found/i.test(message)
      ? { final: true, outcome: 'host-not-found', message }
      : { final: true, outcome: 'rejected', message }
  }
  if (status === 401) return { final: false, message: `Masakari refused a fresh token (401): ${message}` }
  return { final: false, message: `Masakari answered ${status}: ${message}` }
}

/**
 * Masakari's stored times ("2026-11-25T18:45:00.123000", UTC without an offset) in epoch ms;
 * Date.parse would take a time without an offset as local time.
 */
export function masakariTime(text: string): number | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$/.exec(text)
  if (!m) return undefined
  const ms = (m[2] ?? '').padEnd(3, '0').slice(0, 3)
  const t = Date.parse(`${m[1]}.${ms}${m[3] ?? 'Z'}`)
  return Number.isNaN(t) ? undefined : t
}

function errorMessage(text: string): string {
  const parsed = ErrorBodySchema.safeParse(safeJson(text))
  if (parsed.success) {
    const first = Object.values(parsed.data)[0]
    if (first) return first.message
  }
  return brief(text)
}
