/**
 * Keystone: a token for masakari.auth, and the Masakari endpoint from its catalog. The token is
 * kept between runs (lib/openstack/token-cache.ts), renewed before it expires, and asked for once however
 * many notifications need it at the same time. An auth URL without a version is discovered
 * first, as keystoneauth does.
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import type { MasakariAccess } from './masakari-config.js'
import { brief, safeJson, type HttpRequest } from '../base/http.js'
import type { Logger } from '../base/log.js'

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

export class AuthError extends Error {
  override name = 'AuthError'
}

/** A token this close to expiry is renewed before use: a notification must not fail on it. */
const RENEW_MARGIN_MS = 5 * 60_000

export interface KeystoneDeps {
  request: HttpRequest
  now: () => Date
  tokenCache: TokenCache
  logger: Logger
}

export interface Keystone {
  /** A token to use: the one in hand, the cached one, or a fresh one. */
  token(): Promise<CachedToken>
  /** A fresh token, when Masakari refused the one in hand. */
  renew(): Promise<CachedToken>
  /**
   * Ahead of need (the pulse's deep look): a new token when the kept one expires within
   * `aheadMs`, so that a failure does not wait for Keystone. The kept one stays until a new one
   * is had: a Keystone that does not answer now costs nothing later.
   */
  warm(aheadMs: number): Promise<'kept' | 'renewed'>
}

export function keystone(config: MasakariAccess, deps: KeystoneDeps): Keystone {
  const key = cacheKey(config)
  let current: CachedToken | undefined
  // The v3 URL discovered from an unversioned authUrl, kept for this process (a renewal after a
  // 401 asks no second time). Not kept in the token cache: a cached token needs no Keystone
  // request at all, so discovery costs one GET per fresh token, and a Keystone moved since is
  // found again.
  let identity: string | undefined
  const identityUrl = async () => (identity ??= await discoverV3(config.masakari.authUrl, deps.request))
  // One token request at a time: the worker sends `concurrency` notifications at once, and
  // each of them finding no token must not authenticate on its own.
  let pending: Promise<CachedToken> | undefined

  const token = async (): Promise<CachedToken> => {
    if (usable(current, key, deps.now())) return current
    pending ??= (async () => {
      try {
        const cached = await deps.tokenCache.load().catch(() => undefined)
        current = usable(cached, key, deps.now()) ? cached : await authenticate(config, key, await identityUrl(), deps)
        return current
      } finally {
        pending = undefined
      }
    })()
    return pending
  }

  const renew = async (): Promise<CachedToken> => {
    current = undefined
    await deps.tokenCache.clear().catch(() => {})
    return token()
  }

  const warm = async (aheadMs: number): Promise<'kept' | 'renewed'> => {
    const kept = usable(current, key, deps.now()) ? current : await deps.tokenCache.load().catch(() => undefined)
    if (usable(kept, key, deps.now(), aheadMs)) {
      current = kept
      return 'kept'
    }
    current = await authenticate(config, key, await identityUrl(), deps)
    return 'renewed'
  }

  return { token, renew, warm }
}

/** Who a token is for: a cached token of other credentials, or for another endpoint, is not used. */
function cacheKey(config: MasakariAccess): string {
  const m = config.masakari
  return createHash('sha256')
    .update(JSON.stringify([m.authUrl, m.auth, m.region, m.interface, m.endpoint ?? '']))
    .digest('hex')
    .slice(0, 16)
}

/** A token of these credentials that is good for more than `marginMs` from `now`. */
function usable(t: CachedToken | undefined, key: string, now: Date, marginMs = RENEW_MARGIN_MS): t is CachedToken {
  return t !== undefined && t.key === key && Date.parse(t.expiresAt) - now.getTime() > marginMs
}

async function authenticate(config: MasakariAccess, key: string, identityUrl: string, deps: KeystoneDeps): Promise<CachedToken> {
  const m = config.masakari
  const url = `${identityUrl.replace(/\/+$/, '')}/auth/tokens`
  const res = await deps.request(url, 'POST', { 'Content-Type': 'application/json' }, JSON.stringify(authBody(config)))
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
  const discovered = identityUrl === m.authUrl ? {} : { identityUrl }
  deps.logger.info('authenticated with Keystone', {
    authUrl: m.authUrl,
    ...discovered,
    endpoint: fresh.endpoint,
    expiresAt: fresh.expiresAt,
  })
  return fresh
}

/** A version's entry in Keystone's discovery document, as far as keystoneauth reads it. */
const VersionSchema = z.object({
  id: z.string(),
  status: z.string(),
  links: z.array(z.unknown()),
})
const LinkSchema = z.object({ rel: z.string(), href: z.string() })
/** GET on an unversioned URL: 300 {versions: {values: […]}}; some servers {versions: […]}; a versioned one 200 {version: {…}}. */
const DiscoverySchema = z.union([
  z.object({ versions: z.object({ values: z.array(z.unknown()) }) }).transform((d) => d.versions.values),
  z.object({ versions: z.array(z.unknown()) }).transform((d) => d.versions),
  z.object({ version: z.unknown() }).transform((d) => [d.version]),
])
/** The statuses keystoneauth takes by default: current ones and deprecated, not experimental or unknown. */
const USABLE_STATUS = new Set(['stable', 'current', 'supported', 'deprecated'])

/** Whether an auth URL names the v3 API itself (…/v3 or …/v3/): it is used as it is, with no discovery request. */
export const isVersionedAuthUrl = (url: string) => /\/v3\/?$/.test(new URL(url).pathname)

/**
 * The v3 API's URL: authUrl itself when it ends in /v3; else what keystoneauth's version
 * discovery finds there (its generic password and application credential plugins, which
 * upstream's masakarimonitors.conf uses): the self link of the newest usable v3.x entry.
 * kolla-ansible writes auth_url without /v3.
 */
export async function discoverV3(authUrl: string, request: HttpRequest): Promise<string> {
  if (isVersionedAuthUrl(authUrl)) return authUrl
  const res = await request(authUrl, 'GET', {})
  const fix = "set masakari.authUrl (upstream's auth_url) to the v3 URL, …/v3"
  const parsed = DiscoverySchema.safeParse(safeJson(res.text))
  if (!parsed.success)
    throw new AuthError(
      `Keystone version discovery at ${authUrl}: answered ${res.status}, not a list of API versions: ${brief(res.text)}; ${fix}`,
    )
  const offered: string[] = []
  const v3: Array<{ minor: number; url: string }> = []
  for (const entry of parsed.data) {
    const v = VersionSchema.safeParse(entry)
    if (!v.success) continue // keystoneauth skips an entry without id, status or links too
    offered.push(`${v.data.id} (${v.data.status})`)
    const [major, minor = 0] = v.data.id.replace(/^v/i, '').split('.').map(Number)
    const self = v.data.links.map((l) => LinkSchema.safeParse(l).data).find((l) => l?.rel.toLowerCase() === 'self')
    const usable = major === 3 && USABLE_STATUS.has(v.data.status.toLowerCase())
    if (usable && self && URL.canParse(self.href, authUrl)) v3.push({ minor, url: new URL(self.href, authUrl).href })
  }
  const newest = v3.sort((a, b) => b.minor - a.minor)[0]
  if (!newest)
    throw new AuthError(`Keystone at ${authUrl} offers no usable v3 identity API (versions: ${offered.join(', ') || 'none'}); ${fix}`)
  return newest.url
}

/** The Masakari (instance-ha) endpoint of the configured interface and region, from the token's catalog. */
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

/** The POST /v3/auth/tokens body for masakari.auth: a password scoped to a project, or an application credential. */
export function authBody(config: MasakariAccess): unknown {
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
