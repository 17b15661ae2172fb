/**
 * A counting HTTP proxy on 127.0.0.1 in front of masakari-api: how many requests are in flight
 * at once (the delivery concurrency Masakari sees), and when each answer went back.
 */
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ProxyEvent {
  method: string
  path: string
  status: number
  startedAt: number
  endedAt: number
}

export interface CountingProxy {
  port: number
  inFlight: number
  peak: number
  events: ProxyEvent[]
  reset(): void
  close(): Promise<void>
}

export async function startCountingProxy(targetPort: number): Promise<CountingProxy> {
  const agent = new http.Agent({ keepAlive: true })
  const state = { inFlight: 0, peak: 0, events: [] as ProxyEvent[] }
  const server = http.createServer((req, res) => {
    const startedAt = Date.now()
    state.inFlight++
    state.peak = Math.max(state.peak, state.inFlight)
    let done = false
    const finish = (status: number) => {
      if (done) return
      done = true
      state.inFlight--
      state.events.push({ method: req.method ?? '', path: req.url ?? '', status, startedAt, endedAt: Date.now() })
    }
    const upstream = http.request(
      {
        host: '127.0.0.1',
        port: targetPort,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: `127.0.0.1:${targetPort}` },
        agent,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers)
        up.pipe(res)
        up.on('end', () => finish(up.statusCode ?? 502))
      },
    )
    upstream.on('error', (err) => {
      finish(502)
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' })
      res.end(String(err))
    })
    req.pipe(upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const proxy: CountingProxy = {
    port: (server.address() as AddressInfo).port,
    get inFlight() {
      return state.inFlight
    },
    get peak() {
      return state.peak
    },
    get events() {
      return state.events
    },
    reset() {
      state.peak = state.inFlight
      state.events = []
    },
    close: () =>
      new Promise<void>((resolve) => {
        agent.destroy()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  return proxy
}
