/**
 * Our own pipeline without Consul or Masakari in the way: the handler is started with a
 * payload in which one host's storage turned critical; a fake Keystone + Masakari on loopback
 * (answers at once: 201 token, 202 notification) records when the POST arrives. Alternating
 * down/up payloads, so every run queues one STOPPED or STARTED. This is what our two processes
 * (handler, detached worker) add to Consul's detection, minus Masakari's own time.
 */
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { GUARDS_OFF, HANDLER, pidsWith, waitUntil, writeMonitorConfig } from './common.js'
import { checksPayload } from './payloads.js'
import { runOk } from './proc.js'
import { summarize, type Summary } from './stats.js'

export interface PipelineResult {
  runs: number
  /** Handler process, spawn to exit. */
  handlerMs: Summary
  /** Handler spawn until the notification POST reached the fake Masakari. */
  toPostMs: Summary
  /** Handler exit until that POST (the detached worker's start-up and send). */
  workerMs: Summary
}

export async function pipeline(opts: { runs: number; dir: string; log: (m: string) => void }): Promise<PipelineResult> {
  const posts: number[] = []
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (d) => (body += d))
    req.on('end', () => {
      if (req.url?.endsWith('/auth/tokens')) {
        res.writeHead(201, { 'content-type': 'application/json', 'x-subject-token': 'bench-token' })
        res.end(JSON.stringify({ token: { expires_at: new Date(Date.now() + 3600_000).toISOString() } }))
      } else if (req.url?.endsWith('/notifications')) {
        posts.push(Date.now())
        res.writeHead(202, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ notification: { notification_uuid: `n-${posts.length}` } }))
      } else {
        res.writeHead(404)
        res.end()
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  try {
    const stateDir = join(opts.dir, 'state')
    const config = writeMonitorConfig(join(opts.dir, 'monitor'), {
      stateDir,
      guards: GUARDS_OFF,
      masakari: {
        authUrl: `http://127.0.0.1:${port}/v3`,
        endpoint: `http://127.0.0.1:${port}/v1/bench`,
        auth: { username: 'bench', userDomainName: 'Default', password: 'x', projectName: 'service', projectDomainName: 'Default' },
      },
    })
    const names = ['cmp1', 'cmp2', 'cmp3']
    const up = join(opts.dir, 'up.json')
    const down = join(opts.dir, 'down.json')
    writeFileSync(up, checksPayload({ hosts: 3, servicesPerHost: 10, names }))
    writeFileSync(down, checksPayload({ hosts: 3, servicesPerHost: 10, names, down: new Set(['cmp2']) }))
    for (const network of ['management', 'tenant', 'storage'])
      await runOk(process.execPath, [HANDLER, '--network', network, '--config', config], { pipeFile: up })
    const handler: number[] = []
    const toPost: number[] = []
    const worker: number[] = []
    // One warm-up pair (the first STOPPED also authenticates), then the measured runs.
    for (let i = -2; i < opts.runs; i++) {
      await waitUntil('the worker to exit', () => (pidsWith(config).length === 0 ? true : undefined), 30_000, 20)
      const before = posts.length
      const t0 = Date.now()
      const r = await runOk(process.execPath, [HANDLER, '--network', 'storage', '--config', config], { pipeFile: i % 2 === 0 ? down : up })
      const tEnd = t0 + r.ms
      const at = await waitUntil('the POST', () => (posts.length > before ? posts[before] : undefined), 30_000, 5)
      if (i < 0) continue
      handler.push(r.ms)
      toPost.push(at - t0)
      worker.push(at - tEnd)
    }
    await waitUntil('the worker to exit', () => (pidsWith(config).length === 0 ? true : undefined), 30_000, 20)
    return { runs: opts.runs, handlerMs: summarize(handler, 1), toPostMs: summarize(toPost, 1), workerMs: summarize(worker, 1) }
  } finally {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  }
}
