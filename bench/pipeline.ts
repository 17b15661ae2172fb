/**
 * Our own pipeline without Consul or Masakari in the way: the handler is started with a
 * payload in which one host's storage turned critical; a fake Keystone + Masakari on loopback
 * (answers at once: 201 token, 202 notification) records when the POST arrives. Alternating
 * down/up payloads, so every run queues one STOPPED or STARTED. This is what our handler (it
 * sends its first attempt itself) adds to Consul's detection, minus Masakari's own time.
 *
 * Then a Masakari that does not answer: its notification POSTs are held, never answered and
 * never counted as stored (as a blackholed network would), while the handler records a
 * STOPPED; the handler's run time is the budget's figure. Masakari answers again 3 s later,
 * and the worker's retry is the one delivery.
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
  /** That POST's arrival minus the handler's exit: negative when the handler sent it itself. */
  postVsExitMs: Summary
  /** Masakari silent (POSTs held, unanswered): see SilentResult. */
  silent: SilentResult
}

export interface SilentResult {
  /** masakari.delivery.firstAttemptBudget of the config, s. */
  budgetS: number
  /** The handler run that recorded the STOPPED while Masakari did not answer, spawn to exit. */
  handlerMs: number
  /** POSTs Masakari held unanswered meanwhile. */
  heldPosts: number
  /** From Masakari answering again to the STOPPED answered 202. */
  deliveredAfterBackMs: number
  /** 202s for that STOPPED: exactly one. */
  accepted: number
}

/** Masakari's silence in the silent part: long enough for the handler's budget and a retry or two. */
const SILENT_MS = 3000

export async function pipeline(opts: { runs: number; dir: string; log: (m: string) => void }): Promise<PipelineResult> {
  const posts: number[] = []
  const accepted: string[] = []
  let silent = false
  let held = 0
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (d) => (body += d))
    req.on('end', () => {
      if (silent && req.url?.endsWith('/notifications')) {
        held++ // never answered, never stored
        return
      }
      if (req.url?.endsWith('/notifications')) accepted.push(body)
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
    const silentResult = await silentMasakari(
      config,
      down,
      up,
      () => ({ held, accepted }),
      (on) => {
        silent = on
      },
    )
    opts.log(`pipeline: Masakari silent: ${JSON.stringify(silentResult)}`)
    return {
      runs: opts.runs,
      handlerMs: summarize(handler, 1),
      toPostMs: summarize(toPost, 1),
      postVsExitMs: summarize(worker, 1),
      silent: silentResult,
    }
  } finally {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  }
}

/** A STOPPED recorded while Masakari holds every POST unanswered, then Masakari back. */
async function silentMasakari(
  config: string,
  down: string,
  up: string,
  seen: () => { held: number; accepted: string[] },
  setSilent: (on: boolean) => void,
): Promise<SilentResult> {
  const isStopped = (body: string) => body.includes('"STOPPED"') && body.includes('"cmp2"')
  // Start from cmp2 up, nothing pending.
  await runOk(process.execPath, [HANDLER, '--network', 'storage', '--config', config], { pipeFile: up })
  await waitUntil('the worker to exit', () => (pidsWith(config).length === 0 ? true : undefined), 30_000, 20)
  const acceptedBefore = seen().accepted.filter(isStopped).length
  setSilent(true)
  const r = await runOk(process.execPath, [HANDLER, '--network', 'storage', '--config', config], { pipeFile: down })
  await new Promise((res) => setTimeout(res, SILENT_MS))
  setSilent(false)
  const back = Date.now()
  await waitUntil('the STOPPED accepted', () => (seen().accepted.filter(isStopped).length > acceptedBefore ? true : undefined), 60_000, 10)
  const deliveredAfterBackMs = Date.now() - back
  await waitUntil('the worker to exit', () => (pidsWith(config).length === 0 ? true : undefined), 60_000, 20)
  return {
    budgetS: 1.5,
    handlerMs: Math.round(r.ms),
    heldPosts: seen().held,
    deliveredAfterBackMs,
    accepted: seen().accepted.filter(isStopped).length - acceptedBefore,
  }
}
