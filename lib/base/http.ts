/**
 * HTTP at the edge, as the Keystone and Masakari clients use it: the part of fetch we use, a
 * timeout on every request, the TLS agent for https: URLs only, and bodies read leniently; and
 * how much of an answer's body a message quotes (the Consul clients use that too).
 */

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

/** An answer read whole. */
export interface HttpAnswer {
  status: number
  headers: HttpResponse['headers']
  text: string
}

/** One request, JSON accepted; a NetworkError when no answer comes (refused, reset, timed out). */
export type HttpRequest = (url: string, method: string, headers: Record<string, string>, body?: string) => Promise<HttpAnswer>

export class NetworkError extends Error {
  override name = 'NetworkError'
}

/** An answer's body quoted in a message is cut to this many characters: a log line, not a page. */
const BRIEF_MAX_CHARS = 300
/** What of an answer's body (or a check's output) an error quotes: trimmed, otherwise as written. */
const BODY_START_CHARS = 200

/**
 * node-fetch's `agent` as a function of each request's URL (redirects included): an https
 * Agent given to an http: request makes it fail ("Protocol "http:" not supported"), so a
 * caFile or insecure for an https Keystone must not break an http Masakari or vice versa.
 */
export function agentFor(tls: unknown): ((url: URL) => unknown) | undefined {
  if (tls === undefined) return undefined
  return (url) => (url.protocol === 'https:' ? tls : undefined)
}

/** Requests through `fetch`, each given up after `timeoutSeconds`, with `tls` for https: URLs. */
export function requester(fetch: Fetch, tls: unknown, timeoutSeconds: number): HttpRequest {
  const agent = agentFor(tls)
  return async (url, method, headers, body) => {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), timeoutSeconds * 1000)
    try {
      const res = await fetch(url, {
        method,
        headers: { Accept: 'application/json', ...headers },
        body,
        signal: controller.signal,
        agent,
      })
      return { status: res.status, headers: res.headers, text: await res.text() }
    } catch (err) {
      const e = err as Error
      const what = e.name === 'AbortError' ? `timed out after ${timeoutSeconds} s` : e.message
      throw new NetworkError(`${method} ${url}: ${what}`)
    } finally {
      clearTimeout(timer)
    }
  }
}

/** Every request through `fetch` is also aborted at the deadline (its own timeout still applies). */
export function withDeadline(fetch: Fetch, deadline: AbortSignal): Fetch {
  return (url, init) => fetch(url, { ...init, signal: AbortSignal.any([init.signal, deadline]) })
}

export function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** A body on one line, cut short, for a message. */
export function brief(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim()
  return oneLine.length > BRIEF_MAX_CHARS ? `${oneLine.slice(0, BRIEF_MAX_CHARS)}…` : oneLine || '(empty body)'
}

/** The start of a body for a message: trimmed, its first BODY_START_CHARS characters as they are. */
export function bodyStart(text: string): string {
  return text.trim().slice(0, BODY_START_CHARS)
}
