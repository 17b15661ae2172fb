/**
 * Talking to the controller's own Consul agents the way Consul's own tools do: the address,
 * token and TLS settings come from the config, else from CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN /
 * CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT, CONSUL_HTTP_SSL and CONSUL_HTTP_SSL_VERIFY. With ACLs
 * on (default_policy deny), a token without the policy the README spells out is refused with
 * 403 on writes, and answered with an empty list on reads: both are turned into clear errors
 * by the callers, never into a host shown `unknown`.
 */
import { z } from 'zod'
import { bodyStart, type Fetch } from '../base/http.js'

export const ConsulAccessSchema = z.object({
  /** ACL token for every request to the own agents (else CONSUL_HTTP_TOKEN). */
  token: z.string().min(1).optional(),
  /** File holding the token (else CONSUL_HTTP_TOKEN_FILE). */
  tokenFile: z.string().min(1).optional(),
  /** CA bundle (PEM) for agents served over https (else CONSUL_CACERT). */
  caFile: z.string().min(1).optional(),
  /** https for agent addresses written without a scheme (else CONSUL_HTTP_SSL). */
  ssl: z.boolean().optional(),
  /** Verify the agents' certificates (else CONSUL_HTTP_SSL_VERIFY; default true). */
  sslVerify: z.boolean().optional(),
})
export type ConsulAccessConfig = z.infer<typeof ConsulAccessSchema>

/** What every request to an own agent needs, resolved once when the config loads. */
export interface ConsulAccess {
  token?: string
  caPem?: string
  ssl: boolean
  sslVerify: boolean
}

const bool = (v: string | undefined): boolean | undefined => (v === undefined || v === '' ? undefined : /^(1|true|yes)$/i.test(v))

/**
 * The access settings: each from the config, else from Consul's environment variables. Reads
 * the token and CA files now, so a missing file is a config error naming the key.
 */
export async function resolveConsulAccess(
  cfg: ConsulAccessConfig,
  env: Record<string, string | undefined>,
  readFile: (path: string) => Promise<string>,
  abs: (p: string) => string,
  problems: string[],
): Promise<ConsulAccess> {
  const read = async (key: string, path: string): Promise<string | undefined> => {
    try {
      return await readFile(abs(path))
    } catch (err) {
      problems.push(`${key}: cannot read ${abs(path)}: ${(err as Error).message}`)
      return undefined
    }
  }
  let token = cfg.token ?? (cfg.tokenFile === undefined ? env.CONSUL_HTTP_TOKEN : undefined)
  const tokenFile = cfg.token === undefined ? (cfg.tokenFile ?? (token === undefined ? env.CONSUL_HTTP_TOKEN_FILE : undefined)) : undefined
  if (tokenFile !== undefined) token = (await read(cfg.tokenFile ? 'consul.tokenFile' : 'CONSUL_HTTP_TOKEN_FILE', tokenFile))?.trim()
  const caFile = cfg.caFile ?? env.CONSUL_CACERT
  const caPem = caFile === undefined ? undefined : await read(cfg.caFile ? 'consul.caFile' : 'CONSUL_CACERT', caFile)
  return {
    ...(token ? { token } : {}),
    ...(caPem ? { caPem } : {}),
    ssl: cfg.ssl ?? bool(env.CONSUL_HTTP_SSL) ?? false,
    sslVerify: cfg.sslVerify ?? bool(env.CONSUL_HTTP_SSL_VERIFY) ?? true,
  }
}

/**
 * Whether an address or URL carries user info (`user:password@host`). Never sent (node-fetch
 * refuses such a URL) and printed wherever the address is (the log, validate, status): the
 * config refuses it, naming the key and not the value.
 */
export function hasUrlCredentials(address: string): boolean {
  const authority = address.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').split(/[/?#]/, 1)[0] ?? ''
  return authority.includes('@')
}

/** Said instead of the value, which holds a password. */
const URL_CREDENTIALS = 'carries credentials (user:password@), which are never sent and would be printed in the log'
/** A zod refinement (`.refine(...noCredentials(what))`) refusing a URL with credentials in it, naming `what` to do instead. */
export const noCredentials = (what: string) => [(v: string) => !hasUrlCredentials(v), `${URL_CREDENTIALS}; ${what}`] as const

/** The base URL of an agent address written as host:port or as a URL. */
export function agentUrl(addr: string, access: Pick<ConsulAccess, 'ssl'>): string {
  return /^https?:\/\//.test(addr) ? addr.replace(/\/+$/, '') : `${access.ssl ? 'https' : 'http'}://${addr}`
}

export class ConsulError extends Error {
  override name = 'ConsulError'
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message)
  }
}

export interface ConsulAnswer {
  status: number
  text: string
  /** X-Consul-Index, for blocking queries and check-and-set. */
  index?: string
}

export interface ConsulAgent {
  url: string
  request(method: 'GET' | 'PUT' | 'DELETE', path: string, body?: string): Promise<ConsulAnswer>
  /** Like request, but anything but 200 is a ConsulError that says what the agent answered. */
  ok(method: 'GET' | 'PUT' | 'DELETE', path: string, body?: string): Promise<ConsulAnswer>
}

/** A client for one agent; `tls` is the https.Agent for the CA/verify settings (or undefined). */
export function consulAgent(addr: string, access: ConsulAccess, fetch: Fetch, tls: unknown, timeoutSeconds: number): ConsulAgent {
  const url = agentUrl(addr, access)
  const headers: Record<string, string> = { Accept: 'application/json', ...(access.token ? { 'X-Consul-Token': access.token } : {}) }
  const request: ConsulAgent['request'] = async (method, path, body) => {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), timeoutSeconds * 1000)
    try {
      const res = await fetch(`${url}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
        signal: controller.signal,
        ...(url.startsWith('https:') && tls ? { agent: tls } : {}),
      })
      return { status: res.status, text: await res.text(), index: res.headers.get('x-consul-index') ?? undefined }
    } catch (err) {
      const e = err as Error
      throw new ConsulError(e.name === 'AbortError' ? `${url}${path}: no answer within ${timeoutSeconds} s` : `${url}${path}: ${e.message}`)
    } finally {
      clearTimeout(timer)
    }
  }
  return {
    url,
    request,
    async ok(method, path, body) {
      const answer = await request(method, path, body)
      if (answer.status === 200) return answer
      const what = bodyStart(answer.text)
      const hint =
        answer.status === 403
          ? ': the ACL token lacks a permission this needs (see the README, "Consul ACLs": the monitor token policy)'
          : ''
      throw new ConsulError(`${method} ${url}${path} answered ${answer.status} ${what}${hint}`, answer.status)
    },
  }
}
