/**
 * Talks to Keystone and Masakari. Every answer is parsed at this edge and mapped to an outcome
 * the delivery loop can act on: final (never retried) or retry later.
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import type { Config } from './config.js'
import type { Logger } from './log.js'
import type { Notification, Outcome } from './store.js'

/** The part of fetch we use, so tests can replay recorded answers. */
export interface HttpResponse {
  status: number
  headers: { get(name: string): string | null }
  text(): Promise<string>
}
export type Fetch = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; signal: AbortSignal; agent?: unknown },
) => Promise<HttpResponse>

export type SendResult = { final: true; outcome: Outcome; message: string; uuid?: string } | { final: false; message: string }

export interface MasakariClient {
  send(notification: Notification): Promise<SendResult>
}

/** Where the token is cached between runs (mode 0600), keyed by who it was issued to. */
export interface TokenCache {
  load(): Promise<CachedToken | undefined>
  save(token: CachedToken): Promise<void>
  clear(): Promise<void>
}
export const CachedTokenSchema = z.object({
  key: z.string(),
  token: z.string(),
  expiresAt: z.string(),
  endpoint: z.string(),
})
export type CachedToken = z.infer<typeof CachedTokenSchema>

const CatalogSchema = z.array(
  z.object({
    type: z.string(),
    endpoints: z.array(z.object({ interface: z.string(), url: z.string(), region: z.string().nullish(), region_id: z.string().nullish() })),
  }),
)
/** Keystone's POST /v3/auth/tokens answer, as far as we use it. */
export const TokenResponseSchema = z.object({
  token: z.object({ expires_at: z.string(), catalog: CatalogSchema.optional() }),
})

/** GET /v1/segments, /v1/segments/<id>/hosts and /v1/notifications, as far as we use them. */
const SegmentsSchema = z.object({ segments: z.array(z.object({ uuid: z.string() })) })
const HostsSchema = z.object({ hosts: z.array(z.object({ uuid: z.string(), name: z.string() })) })
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

export class AuthError extends Error {
  override name = 'AuthError'
}

/** A token this close to expiry is renewed before use: a notification must not fail on it. */
const RENEW_MARGIN_MS = 5 * 60_000

export interface ClientDeps {
  fetch: Fetch
  now: () => Date
  tokenCache: TokenCache
  logger: Logger
  /** https.Agent carrying the CA bundle / insecure switch, when TLS is configured; for https: URLs only. */
  agent?: unknown
}

/**
 * node-fetch's `agent` as a function of each request's URL (redirects included): an https
 * Agent given to an http: request makes it fail ("Protocol "http:" not supported"), so a
 * caFile or insecure for an https Keystone must not break an http Masakari or vice versa.
 */
export function agentFor(tls: unknown): ((url: URL) => unknown) | undefined {
  if (tls === undefined) return undefined
  return (url) => (url.protocol === 'https:' ? tls : undefined)
}

export function masakariClient(config: Config, deps: ClientDeps): MasakariClient {
  const m = config.masakari
  const key = createHash('sha256')
    .update(JSON.stringify([m.authUrl, m.auth, m.region, m.interface, m.endpoint ?? '']))
    .digest('hex')
    .slice(0, 16)
  let current: CachedToken | undefined
  // One token request at a time: the worker sends `concurrency` notifications at once, and
  // each of them finding no token must not authenticate on its own.
  let pending: Promise<CachedToken> | undefined
  const agent = agentFor(deps.agent)

  const request = async (url: string, method: string, headers: Record<string, string>, body?: string) => {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), m.requestTimeout * 1000)
    try {
      const res = await deps.fetch(url, {
        method,
        headers: { Accept: 'application/json', ...headers },
        body,
        signal: controller.signal,
        agent,
      })
      return { status: res.status, headers: res.headers, text: await res.text() }
    } catch (err) {
      const e = err as Error
      const what = e.name === 'AbortError' ? `timed out after ${m.requestTimeout} s` : e.message
      throw new NetworkError(`${method} ${url}: ${what}`)
    } finally {
      clearTimeout(timer)
    }
  }

  const authenticate = async (): Promise<CachedToken> => {
    const url = `${m.authUrl.replace(/\/+$/, '')}/auth/tokens`
    const res = await request(url, 'POST', { 'Content-Type': 'application/json' }, JSON.stringify(authBody(config)))
    if (res.status === 401) throw new AuthError(`Keystone refused the credentials of masakari.auth (401 at ${url}): ${brief(res.text)}`)
    if (res.status !== 201 && res.status !== 200) throw new AuthError(`Keystone answered ${res.status} at ${url}: ${brief(res.text)}`)
    const token = res.headers.get('x-subject-token')
    if (!token) throw new AuthError(`Keystone answered ${res.status} without an X-Subject-Token header at ${url}`)
    const parsed = TokenResponseSchema.safeParse(safeJson(res.text))
    if (!parsed.success) throw new AuthError(`Keystone's token response at ${url} is not what we expect: ${z.prettifyError(parsed.error)}`)
    const endpoint = m.endpoint ?? findEndpoint(parsed.data.token.catalog ?? [], m.interface, m.region)
    const fresh = { key, token, expiresAt: parsed.data.token.expires_at, endpoint: endpoint.replace(/\/+$/, '') }
    await deps.tokenCache
      .save(fresh)
      .catch((err) => deps.logger.warn('could not cache the Keystone token', { error: (err as Error).message }))
    deps.logger.info('authenticated with Keystone', { authUrl: m.authUrl, endpoint: fresh.endpoint, expiresAt: fresh.expiresAt })
    return fresh
  }

  const usable = (t: CachedToken | undefined): t is CachedToken =>
    t !== undefined && t.key === key && Date.parse(t.expiresAt) - deps.now().getTime() > RENEW_MARGIN_MS

  const token = async (): Promise<CachedToken> => {
    if (usable(current)) return current
    pending ??= (async () => {
      try {
        const cached = await deps.tokenCache.load().catch(() => undefined)
        current = usable(cached) ? cached : await authenticate()
        return current
      } finally {
        pending = undefined
      }
    })()
    return pending
  }

  const post = async (t: CachedToken, notification: Notification) =>
    request(
      `${t.endpoint}/notifications`,
      'POST',
      { 'Content-Type': 'application/json', 'X-Auth-Token': t.token },
      JSON.stringify({ notification }),
    )

  /** GET a Masakari list; `refused` when it will not tell (403/404/400: policy, an API without it, or an unexpected body). */
  const list = async <T>(t: CachedToken, path: string, schema: z.ZodType<T>): Promise<{ data: T } | { refused: string }> => {
    const url = `${t.endpoint}${path}`
    const res = await request(url, 'GET', { 'X-Auth-Token': t.token })
    if (res.status === 403 || res.status === 404 || res.status === 400)
      return { refused: `GET ${url} answered ${res.status}: ${errorMessage(res.text)}` }
    if (res.status !== 200) throw new NetworkError(`GET ${url} answered ${res.status}: ${errorMessage(res.text)}`)
    const parsed = schema.safeParse(safeJson(res.text))
    if (!parsed.success) return { refused: `GET ${url}: unexpected answer: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}` }
    return { data: parsed.data }
  }

  /**
   * Masakari checks "host on maintenance" before "duplicate" (masakari/ha/api.py
   * _create_notification), and its engine puts the host on maintenance when it processes a
   * STOPPED. So a resend of a STOPPED it already stored (a crash or a timeout between its 202
   * and our record) is answered "on maintenance", not "duplicate". Ask it: our notification
   * is the one of this host (source_host_uuid; notifications are not filterable by name) with
   * the same generated_time and event.
   */
  const holds = async (
    t: CachedToken,
    notification: Notification,
  ): Promise<{ uuid: string; status: string } | { refused: string } | undefined> => {
    const segments = await list(t, '/segments', SegmentsSchema)
    if ('refused' in segments) return segments
    let hostUuid: string | undefined
    for (const segment of segments.data.segments) {
      const query = new URLSearchParams({ name: notification.hostname })
      const hosts = await list(t, `/segments/${encodeURIComponent(segment.uuid)}/hosts?${query}`, HostsSchema)
      if ('refused' in hosts) return hosts
      hostUuid = hosts.data.hosts.find((h) => h.name === notification.hostname)?.uuid
      if (hostUuid !== undefined) break
    }
    if (hostUuid === undefined)
      return { refused: `host ${notification.hostname} is in none of the ${segments.data.segments.length} failover segments listed` }
    const query = new URLSearchParams({
      source_host_uuid: hostUuid,
      type: notification.type,
      'generated-since': notification.generated_time,
    })
    const found = await list(t, `/notifications?${query}`, NotificationListSchema)
    if ('refused' in found) return found
    const ours = Date.parse(notification.generated_time)
    const match = found.data.notifications.find(
      (n) => n.type === notification.type && masakariTime(n.generated_time) === ours && n.payload?.event === notification.payload.event,
    )
    return match && { uuid: match.notification_uuid, status: match.status ?? 'unknown' }
  }

  return {
    async send(notification) {
      try {
        let t = await token()
        let res = await post(t, notification)
        if (res.status === 401) {
          // The cached token was revoked or expired early: one fresh token, one more try.
          current = undefined
          await deps.tokenCache.clear().catch(() => {})
          t = await token()
          res = await post(t, notification)
        }
        const result = classify(res.status, res.text)
        if (!(result.final && result.outcome === 'on-maintenance' && notification.payload.event === 'STOPPED')) return result
        let held: Awaited<ReturnType<typeof holds>>
        try {
          held = await holds(t, notification)
        } catch (err) {
          const e = err as Error
          return {
            final: false,
            message: `Masakari answered "on maintenance" and could not be asked whether it already holds this STOPPED: ${e.message}`,
          }
        }
        if (held === undefined) return result
        if ('refused' in held)
          return { ...result, message: `${result.message} (could not check whether it already holds this STOPPED: ${held.refused})` }
        return {
          final: true,
          outcome: 'duplicate',
          uuid: held.uuid,
          message: `Masakari already holds it (notification ${held.uuid}, status ${held.status}); it answered "on maintenance" because it acted on it`,
        }
      } catch (err) {
        if (err instanceof NetworkError || err instanceof AuthError) return { final: false, message: err.message }
        throw err
      }
    },
  }
}

class NetworkError extends Error {
  override name = 'NetworkError'
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

function findEndpoint(catalog: z.infer<typeof CatalogSchema>, iface: string, region: string | undefined): string {
  const services = catalog.filter((s) => s.type === 'instance-ha')
  const endpoints = services.flatMap((s) => s.endpoints)
  const found = endpoints.find((e) => e.interface === iface && (region === undefined || e.region === region || e.region_id === region))
  if (!found) {
    const seen = endpoints.map((e) => `${e.interface}@${e.region ?? e.region_id ?? '?'}`).join(', ') || 'none'
    throw new AuthError(
      `no instance-ha endpoint with interface ${iface}${region ? ` in region ${region}` : ''} in the token's catalog (instance-ha endpoints: ${seen}); set masakari.interface/region, or masakari.endpoint`,
    )
  }
  return found.url
}

type Ref = { id: string } | { name: string; domain: { id: string } | { name: string } }

export function authBody(config: Config): unknown {
  const a = config.masakari.auth
  const domain = (name?: string, id?: string) => (id !== undefined ? { id } : { name: name ?? 'Default' })
  const user: Ref | undefined =
    a.userId !== undefined
      ? { id: a.userId }
      : a.username !== undefined
        ? { name: a.username, domain: domain(a.userDomainName, a.userDomainId) }
        : undefined
  if (a.method === 'application_credential') {
    const cred =
      a.applicationCredentialId !== undefined
        ? { id: a.applicationCredentialId, secret: config.secret }
        : { name: a.applicationCredentialName, user, secret: config.secret }
    return { auth: { identity: { methods: ['application_credential'], application_credential: cred } } }
  }
  const project: Ref =
    a.projectId !== undefined ? { id: a.projectId } : { name: a.projectName!, domain: domain(a.projectDomainName, a.projectDomainId) }
  return {
    auth: {
      identity: { methods: ['password'], password: { user: { ...user, password: config.secret } } },
      scope: { project },
    },
  }
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

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function errorMessage(text: string): string {
  const parsed = ErrorBodySchema.safeParse(safeJson(text))
  if (parsed.success) {
    const first = Object.values(parsed.data)[0]
    if (first) return first.message
  }
  return brief(text)
}

function brief(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim()
  return oneLine.length > 300 ? `${oneLine.slice(0, 300)}…` : oneLine || '(empty body)'
}
