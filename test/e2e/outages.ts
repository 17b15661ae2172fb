/**
 * Issue #11, outages on the real stack: Masakari down while a host fails, Keystone restarted
 * with the monitor's token revoked, and a notification that expires. Assertions read what
 * Masakari stored (duplicate window 0, so a second copy would show) and the monitor's log; every
 * wait is for a positive signal (a log line, a stored notification), never a fixed sleep.
 *
 * The figures (outage, retries, Masakari's return → stored) are printed as test comments.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import { httpJson } from '../../stack/openstack.js'
import { EVALUATE, startRealStack, waitUntil, type RealStack } from './harness.js'

const computes = ['cmp1', 'cmp2', 'cmp3', 'cmp4']
const storage = 'storage' as const
/** The harness's delivery policy, written out: retries every 0.5, 1, 2, 2, … s. */
const DELIVERY = { initialBackoff: 0.5, maxBackoff: 2, expiry: 120 }
/**
 * Scenario 1 keeps Masakari away until this many retries failed: 0.5 + 1 + 2 × 4 = 9.5 s of
 * retrying, on top of Consul's detection (≈ 6 s) and the holds (2 s, or 10 s more while the
 * storage agent's gossip view is degraded) before the first attempt.
 */
const RETRIES_WHILE_DOWN = 6
const EXPIRY = 8

const stack: RealStack = await startRealStack(t, {
  computes,
  octet: 160,
  // keystonemiddleware accepts a token it validated from its in-process cache, revoked or not,
  // for token_cache_time (300 s): with -1 it asks Keystone each time, so a revocation bites at once.
  openstack: { tokenCacheTime: -1 },
  monitor: {
    // short holds; no burst quiet window, as the scenarios' failures come less than one apart (a
    // degraded gossip view of the storage agent may still hold a STOPPED 10 s longer)
    guards: { hold: { recovery: 2, back: 2 }, burst: { quietWindow: 0 } },
  },
})

const events = async (host: string) => (await stack.notifications(host)).map((n) => n.payload.event)
const linesFor = (host: string, msg: string) => stack.logLines().filter((l) => l.host === host && l.msg === msg)
const retriesOf = (host: string) => linesFor(host, 'notification not delivered, will retry')
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`
/** When the monitor logged Masakari's 202 (Masakari's created_at has whole seconds only). */
const loggedAt = (l: Record<string, unknown> | undefined) => Date.parse(String(l?.time))
/** Masakari's own access log: how many notification POSTs it answered with `status`. */
const masakariAnswered = async (status: number) =>
  (await readFile(join(stack.openstack.logDir, 'masakari-api.log'), 'utf8'))
    .split('\n')
    .filter((l) => / "POST \/v1\/\w+\/notifications HTTP\/1\.1" status: (\d+)/.exec(l)?.[1] === String(status)).length
const handlerRuns = () => stack.logLines().filter((l) => l.msg === 'evaluated' && String(l.component).startsWith('checks-handler/')).length
const masakariRoot = () => new URL(stack.openstack.masakariUrl).origin

/** Resolves with the time masakari-api first answered its version document (polled every 50 ms). */
async function firstAnswer(): Promise<number> {
  const deadline = Date.now() + 120_000
  while (Date.now() < deadline) {
    const r = await httpJson('GET', `${masakariRoot()}/`, { timeoutMs: 2000 }).catch(() => undefined)
    if (r?.status === 200) return Date.now()
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('masakari-api did not answer within 120 s')
}

/** startMasakari, and when it first answered (before the authenticated round trip startMasakari waits for). */
async function bringMasakariBack(): Promise<{ answeringAt: number; readyAt: number }> {
  const answering = firstAnswer()
  await stack.openstack.startMasakari()
  return { answeringAt: await answering, readyAt: Date.now() }
}

async function setDelivery(delivery: typeof DELIVERY): Promise<void> {
  const config = parse(await readFile(stack.configPath, 'utf8'))
  config.masakari.delivery = delivery
  await writeFile(stack.configPath, stringify(config))
}

const figures: string[] = []

t.test('Masakari down for several retries while a host fails: STOPPED stored once after it returns, no Consul event', async (t) => {
  await stack.waitForDelivery()
  await stack.openstack.stopMasakari()
  const stoppedAt = Date.now()
  stack.consul.freeze('cmp1', storage)
  await stack.waitForSnapshot('cmp1', storage, 'down', 60_000)
  // the outage lasts until this many retries failed: the worker keeps at it on its own
  await waitUntil(
    `${RETRIES_WHILE_DOWN} failed attempts for cmp1`,
    async () => (retriesOf('cmp1').length >= RETRIES_WHILE_DOWN ? true : undefined),
    120_000,
  )
  const decision = linesFor('cmp1', 'decision').find((l) => l.action === 'STOPPED')
  t.ok(decision, 'the STOPPED was decided while Masakari was down')
  t.match(retriesOf('cmp1').at(-1), { level: 'warn', event: 'STOPPED', error: /connect ECONNREFUSED/ })
  t.ok(stack.monitorPids().length > 0, 'a worker is still waiting to retry')
  const handlerRunsBefore = handlerRuns()

  const { answeringAt, readyAt } = await bringMasakariBack()
  const outage = answeringAt - stoppedAt
  await stack.waitForNotifications('cmp1', 1, 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp1'), ['STOPPED'], 'exactly one STOPPED')
  const accepted = linesFor('cmp1', 'notification accepted by Masakari')
  t.equal(accepted.length, 1, 'accepted once')
  t.match(accepted[0], { component: 'worker', event: 'STOPPED' }, 'delivered by the waiting worker')
  t.equal(handlerRuns(), handlerRunsBefore, 'no Consul watch ran between Masakari’s return and the delivery')
  const retries = retriesOf('cmp1').length
  t.ok(retries >= RETRIES_WHILE_DOWN, `${retries} retries`)
  t.equal(accepted[0]!.attempts, retries + 1, 'the accepted attempt follows the failed ones')
  const firstTry = loggedAt(retriesOf('cmp1')[0])
  const answers = retriesOf('cmp1').flatMap((l) => /Masakari answered \d+/.exec(String(l.error))?.[0] ?? [])
  const line =
    `scenario 1 (Masakari down): outage ${secs(outage)} (stop → answering its version document; ` +
    `first failed attempt after ${secs(firstTry - stoppedAt)}, authenticated calls from ${secs(readyAt - stoppedAt)}), ` +
    `${retries} retries (${retries - answers.length} refused connections${answers.length ? `, then ${answers.join(', ')}` : ''}), ` +
    `answering → stored (202) ${secs(loggedAt(accepted[0]) - answeringAt)}`
  t.comment(line)
  figures.push(line)

  stack.consul.thaw('cmp1', storage)
  await stack.waitForNotifications('cmp1', 2, 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp1'), ['STOPPED', 'STARTED'])
})

t.test("Keystone restarted and the monitor's cached token revoked: it re-authenticates, STOPPED stored once", async (t) => {
  const tokenFile = join(stack.stateDir, 'token.json')
  const cached = JSON.parse(await readFile(tokenFile, 'utf8'))
  t.match(cached, { token: String, expiresAt: String, endpoint: stack.openstack.masakariUrl }, 'the monitor has a cached token')
  const restartAt = Date.now()
  await stack.openstack.restartKeystone()
  const keystoneBack = Date.now()
  await stack.openstack.revokeToken(cached.token)
  const revokedAt = Date.now()
  // precondition: Masakari refuses the cached token now
  const refused = await httpJson('GET', `${stack.openstack.masakariUrl}/segments`, { token: cached.token })
  t.equal(refused.status, 401, 'Masakari refuses the revoked token')
  t.equal(JSON.parse(await readFile(tokenFile, 'utf8')).token, cached.token, 'the monitor still holds it')

  stack.consul.freeze('cmp2', storage)
  await stack.waitForNotifications('cmp2', 1, 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp2'), ['STOPPED'], 'exactly one STOPPED')
  const auths = stack.logLines().filter((l) => l.msg === 'authenticated with Keystone' && Date.parse(String(l.time)) > revokedAt)
  t.equal(auths.length, 1, 're-authenticated once')
  t.not(JSON.parse(await readFile(tokenFile, 'utf8')).token, cached.token, 'a new token is cached')
  const accepted = linesFor('cmp2', 'notification accepted by Masakari')
  t.equal(accepted.length, 1, 'accepted once')
  t.match(accepted[0], { attempts: 1 }, 'on the first attempt: the 401 is answered by a fresh token and one resend')
  t.same(retriesOf('cmp2'), [], 'no retry')
  t.equal(await masakariAnswered(401), 1, 'Masakari answered the POST with the revoked token 401, once')
  const decidedAt = loggedAt(linesFor('cmp2', 'decision').find((l) => l.action === 'STOPPED'))
  const line =
    `scenario 2 (Keystone restarted, token revoked): Keystone down ${secs(keystoneBack - restartAt)} (restart → issuing tokens), ` +
    `${retriesOf('cmp2').length} retries, decision → stored (401, new token, 202) ${secs(loggedAt(accepted[0]) - decidedAt)}`
  t.comment(line)
  figures.push(line)

  stack.consul.thaw('cmp2', storage)
  await stack.waitForNotifications('cmp2', 2, 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp2'), ['STOPPED', 'STARTED'])
})

t.test(`Masakari down longer than delivery.expiry (${EXPIRY} s): expired loudly, shown by evaluate.js, never stored`, async (t) => {
  await stack.waitForDelivery()
  await setDelivery({ ...DELIVERY, expiry: EXPIRY })
  await stack.openstack.stopMasakari()
  const stoppedAt = Date.now()
  stack.consul.freeze('cmp3', storage)
  const expired = await waitUntil(
    'the expiry of the STOPPED for cmp3',
    async () => linesFor('cmp3', 'notification expired undelivered')[0],
    120_000,
  )
  t.match(expired, { level: 'error', host: 'cmp3', event: 'STOPPED', expiry: EXPIRY, lastError: /connect ECONNREFUSED/ })
  await stack.waitForDelivery()
  const retries = retriesOf('cmp3').length
  t.ok(retries >= 3, `retried until then (${retries} retries)`)

  const report = JSON.parse(
    execFileSync(process.execPath, [EVALUATE, '--config', stack.configPath, '--dry-run', '--json'], { encoding: 'utf8' }),
  )
  t.match(
    report.hosts.find((h: { host: string }) => h.host === 'cmp3'),
    { vector: { storage: 'down' }, action: 'none', lastNotified: null, lastUnsent: { event: 'STOPPED', outcome: 'expired' }, pending: [] },
    'evaluate.js --json: the last not-delivered outcome is expired',
  )
  const table = execFileSync(process.execPath, [EVALUATE, '--config', stack.configPath, '--dry-run'], { encoding: 'utf8' })
  t.match(table, /^cmp3 .*\(STOPPED expired\)/m, 'evaluate.js table: (STOPPED expired)')

  const { answeringAt } = await bringMasakariBack()
  const outage = answeringAt - stoppedAt
  // Watch runs with Masakari back while cmp3 is still down: another compute's tenant link flaps.
  stack.consul.freeze('cmp4', 'tenant')
  await stack.waitForSnapshot('cmp4', 'tenant', 'down', 60_000)
  stack.consul.thaw('cmp4', 'tenant')
  await stack.waitForSnapshot('cmp4', 'tenant', 'up', 60_000)
  await stack.waitForEvaluation('tenant', await stack.checkIndex('cmp4', 'tenant'), 60_000)
  await stack.waitForDelivery()
  t.same(await events('cmp3'), [], 'the expired STOPPED is not sent when Masakari returns')
  // cmp3 back: no STARTED either (Masakari holds no STOPPED for it)
  stack.consul.thaw('cmp3', storage)
  await waitUntil(
    'the decision that cmp3 is back',
    async () =>
      linesFor('cmp3', 'decision').some((l) => /no STOPPED was accepted for it \(last: STOPPED expired\)/.test(String(l.reason)))
        ? true
        : undefined,
    60_000,
  )
  await stack.waitForDelivery()
  t.same(await events('cmp3'), [], 'nothing stored for cmp3')
  t.equal(linesFor('cmp3', 'notification expired undelivered').length, 1, 'one expiry line')
  const decidedAt = loggedAt(linesFor('cmp3', 'decision').find((l) => l.action === 'STOPPED'))
  const line =
    `scenario 3 (expiry ${EXPIRY} s): outage ${secs(outage)} (stop → answering), ${retries} retries, ` +
    `expired ${secs(loggedAt(expired) - decidedAt)} after the decision, nothing stored after Masakari's return`
  t.comment(line)
  figures.push(line)
})

t.test('all of Masakari: each host once per event, nothing twice', async (t) => {
  const all = await stack.notifications()
  t.same(all.map((n) => `${n.hostname} ${n.payload.event}`).sort(), ['cmp1 STARTED', 'cmp1 STOPPED', 'cmp2 STARTED', 'cmp2 STOPPED'])
  t.comment(`figures:\n${figures.join('\n')}`)
})

t.test('nothing started by this test survives it', async (t) => {
  t.same(await stack.stop(), [], 'no Consul, Keystone, masakari-api or monitor process left')
})
