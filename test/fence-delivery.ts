/**
 * Fencing as a step of delivery (issue #21): the worker runs the fake fence agent (for real,
 * through fakeDeps' runAgent) before the POST of a STOPPED for a host in fencing.hosts; only a
 * confirmed off lets it go NORMAL, and the record says so before the POST. A fence that keeps
 * failing is retried within the expiry and never NORMAL, then the STOPPED goes UNKNOWN. Off (the
 * default), or for a host without fencing options, nothing changes.
 */
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { main as operator } from '../handlers/operator-cli.js'
import type { HttpResponse } from '../lib/openstack/masakari.js'
import { runWorker } from '../lib/run/worker.js'
import { localStore } from '../lib/state/store.js'
import { deliveryPass } from '../lib/run/delivery.js'
import { recordingLogger } from '../lib/base/log.js'
import { afterFenceFailure, needsFence, withHostStatus } from '../lib/decide/fence-delivery.js'
import { hostNotification } from '../lib/decide/evaluator.js'
import { healthOf } from '../lib/state/status-files.js'
import { type HostFence, hostFence } from '../lib/decide/report.js'
import { emptyState, type LedgerEntry, type OutboxEntry } from '../lib/decide/state-shape.js'
import { emptyHostRecord } from '../lib/base/host-record.js'
import { fakeFenceAgent } from './fake-fence-agent.js'
import {
  configYaml,
  fakeDeps,
  GUARDS_OFF,
  parsePrometheusText,
  payload,
  readState,
  response,
  scriptedFetch,
  type Recorded,
  recordedFixture,
} from './helpers.js'

const fixture = recordedFixture
const token = fixture('keystone-token-password')
const accepted = fixture('masakari-202')
const ok = () => response(accepted.status, accepted.body, accepted.headers)

const allUp = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing', cmp3: 'passing' })
const cmp1Down = payload({ controller: 'passing', cmp1: 'critical', cmp2: 'passing', cmp3: 'passing' })
const cmp2Down = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'critical', cmp3: 'passing' })
const PASSWORD = 'hunter2'
const DELIVERY = { initialBackoff: 1, maxBackoff: 8, expiry: 60, concurrency: 4, firstAttemptBudget: 0 }

interface Options {
  /** The config's fencing section; none at all by default. */
  fencing?: (agentPath: string) => Record<string, unknown>
  delivery?: Record<string, number>
  guards?: Record<string, unknown>
  answer?: (nth: number) => HttpResponse | Promise<HttpResponse>
  /** The management agent (CONSUL_HTTP_ADDR, http://127.0.0.1:8500): its answer to a path; none by default. */
  consul?: (path: string) => HttpResponse
  /** More of the config (consul: {token}…). */
  extra?: Record<string, unknown>
}

const CONSUL = 'http://127.0.0.1:8500'

const fencingOn = (agent: string) => ({
  enabled: true,
  agent,
  passwordEnv: 'MC_FENCE_PASSWORD',
  hosts: { cmp1: { ip: '127.77.0.1' } },
  timeout: 5,
  statusInterval: 0.02,
})

/** A state directory with every network seen all up, the fake agent beside it, a fake clock, a recording Masakari. */
async function setup(t: Test, o: Options = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  const agent = await fakeFenceAgent(dir, PASSWORD)
  const extra = {
    masakari: { delivery: { ...DELIVERY, ...o.delivery } },
    ...(o.fencing ? { fencing: o.fencing(agent.path) } : {}),
    ...(o.guards ? { guards: o.guards } : {}),
    ...o.extra,
  }
  await writeFile(config, configYaml(stateDir, extra))
  let clock = Date.parse(token.body.token.expires_at) - 50 * 60_000
  const start = clock
  const now = () => new Date(clock)
  // The management agent by CONSUL_HTTP_ADDR only: consul.agents would also turn on the sender lock and the agents' confirmation.
  const env: Record<string, string> = { MC_FENCE_PASSWORD: PASSWORD, ...(o.consul ? { CONSUL_HTTP_ADDR: CONSUL } : {}) }
  const rec: Recorded = { stdout: [], stderr: [], spawned: [], logFile: [], requests: [] }
  let nth = 0
  const fetch = scriptedFetch(rec, async (url, method) => {
    if (url.endsWith('/auth/tokens')) return response(token.status, token.body, token.headers)
    if (o.consul && url.startsWith(CONSUL)) return o.consul(url.slice(CONSUL.length))
    return method === 'POST' ? (o.answer ?? ok)(nth++) : ok()
  })
  const deps = (stdin?: string) => {
    const d = fakeDeps({ stdin, now, fetch, env })
    d.sleep = async (ms) => {
      clock += ms
      if (clock - start > 10 * 60_000) throw new Error('still running after ten fake minutes')
    }
    return d
  }
  for (const n of ['management', 'tenant', 'storage']) t.equal(await main(['--network', n, '--config', config], deps(allUp)), 0)
  const worker = deps()
  return {
    stateDir,
    config,
    agent,
    worker,
    handler: async (stdin: string) => {
      const d = deps(stdin)
      t.equal(await main(['--network', 'storage', '--config', config], d), 0, 'handler run')
      return d
    },
    /** Every notification POST's body, as sent. */
    posts: () =>
      rec.requests.filter((r) => r.url.endsWith('/notifications')).map((r) => r.body as { notification: Record<string, unknown> }),
    state: async () => JSON.parse((await readState(stateDir)) ?? 'null'),
    /** Every request to the management agent: path and ACL token. */
    consulAsked: () =>
      rec.requests.filter((r) => r.url.startsWith(CONSUL)).map((r) => [r.url.slice(CONSUL.length), r.headers['X-Consul-Token']]),
    logged: (level: string) => worker.rec.logFile.map((l) => JSON.parse(l)).filter((l) => l.level === level),
    elapsed: () => clock - start,
    deps,
  }
}

const hostStatuses = (posts: Array<{ notification: Record<string, unknown> }>) =>
  posts.map((p) => (p.notification.payload as { host_status: string }).host_status)

t.test('fenced: one power-off, status off, then the STOPPED goes NORMAL and the record says fenced', async (t) => {
  const h = await setup(t, { fencing: fencingOn })
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(await h.agent.actions(), ['127.77.0.1 off', '127.77.0.1 status'], 'one off, one status that saw it off')
  t.same(hostStatuses(h.posts()), ['NORMAL'], 'one POST, NORMAL')
  const s = await h.state()
  t.same(s.outbox, [])
  t.match(s.ledger.cmp1.notified, { event: 'STOPPED', outcome: 'accepted', fenced: { agent: 'fence_fake', confirmed: true, at: String } })
  t.match(await h.agent.stdin(), `password=${PASSWORD}`, 'the password from passwordEnv, on stdin')
  const explain = h.deps()
  await operator(['explain', 'cmp1', '--config', h.config], explain)
  t.match(explain.rec.stdout.join(''), new RegExp(`fenced at ${s.ledger.cmp1.notified.fenced.at}, power off confirmed by fence_fake`))
})

/** `status` as the operator runs it: its text lines and its --json. */
async function status(h: Awaited<ReturnType<typeof setup>>) {
  const text = h.deps()
  t.equal(await operator(['status', '--config', h.config], text), 0, text.rec.stderr.join('\n'))
  const json = h.deps()
  t.equal(await operator(['status', '--json', '--config', h.config], json), 0)
  const report = JSON.parse(json.rec.stdout.join(''))
  return { lines: text.rec.stdout.join('').split('\n'), report, cmp1: report.hosts.find((x: { host: string }) => x.host === 'cmp1') }
}

t.test('status: a fenced host in explain’s words, and the fencing line', async (t) => {
  const h = await setup(t, { fencing: fencingOn })
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  const fenced = (await h.state()).ledger.cmp1.notified.fenced
  const s = await status(h)
  t.ok(s.lines.includes(`cmp1: fenced at ${fenced.at}, power off confirmed by fence_fake`), s.lines.join('\n'))
  t.ok(s.lines.includes('fencing: fence_fake for 1 host; no fence check by the pulse yet (masakari-consul fence-check asks now)'))
  t.same(s.cmp1.fence, { state: 'fenced', at: fenced.at, agent: 'fence_fake' })
  t.same(s.report.fencing, { agent: 'fence_fake', hosts: 1, lastCheck: null })
  t.equal(s.lines.filter((l) => /^cmp\d: /.test(l)).length, 1, 'a line for the fenced host only')
})

t.test('status: a STOPPED whose fence fails shows the agent’s error while it waits, then the UNKNOWN it was sent with', async (t) => {
  const h = await setup(t, { fencing: fencingOn })
  await h.agent.set('fail-127.77.0.1', 'Failed: BMC busy')
  await h.handler(cmp1Down)
  const sleep = h.worker.sleep
  let waiting: Awaited<ReturnType<typeof status>> | undefined
  h.worker.sleep = async (ms) => {
    waiting ??= await status(h)
    return sleep(ms)
  }
  t.equal(await runWorker(h.config, h.worker), 0)
  const line = waiting!.lines.find((l) => l.startsWith('cmp1: '))
  t.match(
    line,
    /^cmp1: fencing failed \(power off failed: Failed: BMC busy \(exit 1\)\): its STOPPED waits, next try \d{4}-[\d-]+T[\d:.]+Z$/,
  )
  t.match(waiting!.cmp1.fence, { state: 'failing', error: /BMC busy/, nextAttemptAt: String })
  const after = await status(h)
  t.match(
    after.lines.find((l) => l.startsWith('cmp1: ')),
    /^cmp1: fencing failed \(power off failed: Failed: BMC busy \(exit 1\)\): STOPPED sent with host_status UNKNOWN at .*, not evacuated: power it off and recover it by hand$/,
  )
})

t.test("status: fencing off (the default), no fencing line and no host's fence", async (t) => {
  const h = await setup(t)
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  const s = await status(h)
  t.notOk(
    s.lines.some((l) => /^(fencing|cmp\d): /.test(l)),
    s.lines.join('\n'),
  )
  t.equal(s.report.fencing, null)
  t.equal(s.cmp1.fence, null)
})

t.test('the fence is recorded before the POST: a POST that fails is retried NORMAL without a second fence', async (t) => {
  const h = await setup(t, { fencing: fencingOn, answer: (n) => (n === 0 ? response(503, 'down') : ok()) })
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(await h.agent.actions(), ['127.77.0.1 off', '127.77.0.1 status'], 'fenced once')
  t.same(hostStatuses(h.posts()), ['NORMAL', 'NORMAL'])
  t.match((await h.state()).ledger.cmp1.notified, { outcome: 'accepted', fenced: { confirmed: true } })
})

t.test('fencing fails: retried with backoff, never NORMAL, then UNKNOWN at the last try before the expiry', async (t) => {
  const h = await setup(t, { fencing: fencingOn, delivery: {} })
  await h.agent.set('fail-127.77.0.1', 'Failed: Connection timed out')
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  const offs = (await h.agent.actions()).filter((a) => a.endsWith(' off'))
  t.ok(offs.length >= 5, `retried: ${offs.length} power-offs`)
  t.same(hostStatuses(h.posts()), ['UNKNOWN'], 'one POST, UNKNOWN; never NORMAL')
  t.ok(h.elapsed() <= DELIVERY.expiry * 1000, `sent within the expiry (${h.elapsed()} ms)`)
  const s = await h.state()
  t.match(s.ledger.cmp1.notified, { event: 'STOPPED', outcome: 'accepted', hostStatus: 'UNKNOWN', fenceError: /Connection timed out/ })
  t.notOk(s.ledger.cmp1.notified.fenced, 'not fenced')
  t.equal(s.counters.fenceFailures, offs.length, 'every failed fence counted')
  const errors = h.logged('error')
  t.equal(errors.length, offs.length, 'an error line per failed fence')
  t.match(errors.at(-1), { msg: /host_status UNKNOWN/, host: 'cmp1', agent: 'fence_fake', error: /Failed: Connection timed out/ })
  const health = readFileSync(join(h.stateDir, 'health'), 'utf8').split('\n')
  t.equal(health[0], 'warning')
  t.match(health[1], /STOPPED for cmp1 sent with host_status UNKNOWN .*fencing failed \(power off failed: Failed: Connection timed out/)
})

t.test('a fence that failed once and then works: NORMAL after the retry, the failure counted', async (t) => {
  const h = await setup(t, { fencing: fencingOn, delivery: { firstAttemptBudget: 0 } })
  await h.agent.set('fail-127.77.0.1', 'Failed: BMC busy')
  await h.handler(cmp1Down)
  const worker = h.worker
  const sleep = worker.sleep
  let once = false
  worker.sleep = async (ms) => {
    if (!once) {
      once = true
      const s = await h.state()
      t.match(s.outbox, [{ host: 'cmp1', attempts: 1, fenceError: /BMC busy/, lastError: /^fencing failed: / }], 'waits for its retry')
      t.equal(hostStatuses(h.posts()).length, 0, 'nothing sent yet')
      await rm(join(h.config, '..', 'fail-127.77.0.1'))
    }
    return sleep(ms)
  }
  t.equal(await runWorker(h.config, worker), 0)
  t.same(hostStatuses(h.posts()), ['NORMAL'])
  const s = await h.state()
  t.equal(s.counters.fenceFailures, 1)
  t.match(s.ledger.cmp1.notified, { fenced: { confirmed: true } })
  t.notOk(s.ledger.cmp1.notified.fenceError, 'no failure said of a fenced host')
})

t.test('takeover: an entry already fenced in the record is sent NORMAL without a second fence', async (t) => {
  const h = await setup(t, { fencing: fencingOn, delivery: { firstAttemptBudget: 0 } })
  await h.handler(cmp1Down)
  const fenced = { at: '2026-11-25T11:59:00.000Z', agent: 'fence_fake', confirmed: true as const }
  await localStore(h.stateDir).transact(async (s) => ({
    next: { ...s, outbox: s.outbox.map((e) => ({ ...e, fenced })) },
    result: undefined,
  }))
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(await h.agent.actions(), [], 'no agent run')
  t.same(h.worker.rec.agents, [])
  t.same(hostStatuses(h.posts()), ['NORMAL'])
  t.same((await h.state()).ledger.cmp1.notified.fenced, fenced, 'the first fence is the one recorded')
})

t.test("disabled (the default): no agent run, the POST's body byte-identical to a config without fencing", async (t) => {
  const bodies: string[] = []
  for (const fencing of [undefined, (a: string) => ({ ...fencingOn(a), enabled: false })]) {
    const h = await setup(t, { ...(fencing ? { fencing } : {}) })
    await h.handler(cmp1Down)
    t.equal(await runWorker(h.config, h.worker), 0)
    t.same(await h.agent.actions(), [])
    t.same(h.worker.rec.agents, [])
    bodies.push(...h.posts().map((p) => JSON.stringify(p)))
  }
  t.equal(bodies.length, 2)
  t.equal(bodies[1], bodies[0])
  const sent = JSON.parse(bodies[0]!)
  t.same(sent.notification.payload, { event: 'STOPPED', cluster_status: 'OFFLINE', host_status: 'NORMAL' })
})

t.test('a host not in fencing.hosts: sent NORMAL as before, no agent run', async (t) => {
  const h = await setup(t, { fencing: fencingOn })
  await h.handler(cmp2Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(await h.agent.actions(), [])
  t.same(hostStatuses(h.posts()), ['NORMAL'])
  t.notOk((await h.state()).ledger.cmp2.notified.fenced)
})

/** fencing.template instead of hosts: every host fenced with `ip` from its node meta. */
const templateOn = (agent: string) => ({ ...fencingOn(agent), hosts: {}, template: { ip: '{meta.bmc_address}' } })
/** The management agent's catalog: GET /v1/catalog/node/<node> with these nodes' meta; null for another node, as Consul answers. */
const catalog =
  (meta: Record<string, Record<string, string>>) =>
  (path: string): HttpResponse => {
    const node = decodeURIComponent(/^\/v1\/catalog\/node\/([^?]+)$/.exec(path)?.[1] ?? '')
    if (!Object.hasOwn(meta, node)) return response(200, 'null')
    return response(200, { Node: { ID: 'x', Node: node, Address: '10.0.0.1', Meta: meta[node] }, Services: {} })
  }

t.test('fencing.template: the options from the node meta in the management catalog, fenced, NORMAL', async (t) => {
  const h = await setup(t, {
    fencing: templateOn,
    consul: catalog({ cmp1: { bmc_address: '127.77.0.1', 'consul-network-segment': '' } }),
    extra: { consul: { token: 'meta-token' } },
  })
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(h.consulAsked(), [['/v1/catalog/node/cmp1', 'meta-token']], "one node's meta, asked with the ACL token")
  t.same(await h.agent.actions(), ['127.77.0.1 off', '127.77.0.1 status'], 'the agent got ip from {meta.bmc_address}')
  t.same(hostStatuses(h.posts()), ['NORMAL'])
  t.match((await h.state()).ledger.cmp1.notified, { outcome: 'accepted', fenced: { confirmed: true } })
})

t.test('fencing.template: a host with its own entry is fenced with it, its meta never asked', async (t) => {
  const h = await setup(t, { fencing: (a) => ({ ...templateOn(a), hosts: { cmp1: { ip: '127.77.0.1' } } }), consul: catalog({}) })
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(h.consulAsked(), [])
  t.same(await h.agent.actions(), ['127.77.0.1 off', '127.77.0.1 status'])
  t.same(hostStatuses(h.posts()), ['NORMAL'])
})

t.test('fencing.template that cannot be filled: a failed fence, retried, never NORMAL, then UNKNOWN', async (t) => {
  const cases: Array<[string, (path: string) => HttpResponse, RegExp]> = [
    ['the node lacks the meta key', catalog({ cmp1: { rack: 'r1' } }), /node cmp1 has no node meta bmc_address/],
    [
      'the meta value would break stdin',
      catalog({ cmp1: { bmc_address: '127.77.0.1\naction=on' } }),
      /node meta bmc_address of cmp1 refused: .*one stdin line/,
    ],
    ['the catalog does not show the node', catalog({}), /node cmp1 is not in the management agent's catalog/],
    ['the agent does not answer', () => response(500, 'No cluster leader'), /node meta of cmp1 is unavailable: .*500 No cluster leader/],
  ]
  for (const [name, consul, reason] of cases) {
    const h = await setup(t, { fencing: templateOn, consul })
    await h.handler(cmp1Down)
    t.equal(await runWorker(h.config, h.worker), 0)
    t.same(await h.agent.actions(), [], `${name}: no agent run`)
    t.same(hostStatuses(h.posts()), ['UNKNOWN'], `${name}: one POST, UNKNOWN; never NORMAL`)
    t.ok(h.consulAsked().length >= 2, `${name}: asked again at each try (${h.consulAsked().length})`)
    const s = await h.state()
    t.match(s.ledger.cmp1.notified, { hostStatus: 'UNKNOWN', fenceError: reason }, name)
    t.notOk(s.ledger.cmp1.notified.fenced, `${name}: not fenced`)
    t.match(h.logged('error').at(-1), { msg: /host_status UNKNOWN/, host: 'cmp1', error: reason }, name)
  }
})

t.test("the handler's first attempt does not fence: the entry is left to the worker, which does", async (t) => {
  const h = await setup(t, { fencing: fencingOn, delivery: { firstAttemptBudget: 1.5 } })
  const handler = await h.handler(cmp1Down)
  t.same(await h.agent.actions(), [], 'no fence in the handler')
  t.same(h.posts(), [], 'no POST either')
  t.equal(handler.rec.spawned.length, 1, 'a worker started')
  t.equal((await h.state()).outbox.length, 1)
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(await h.agent.actions(), ['127.77.0.1 off', '127.77.0.1 status'])
  t.same(hostStatuses(h.posts()), ['NORMAL'])
})

t.test('a host held by a guard is never fenced: only a queued STOPPED reaches the fence step', async (t) => {
  // Two of three computes down at once: the self-isolation guard (at most a third) holds both.
  const h = await setup(t, {
    fencing: (a) => ({ ...fencingOn(a), hosts: { cmp1: { ip: '127.77.0.1' }, cmp2: { ip: '127.77.0.2' } } }),
    guards: { ...GUARDS_OFF, isolation: { maxDownFraction: 0.4 } },
  })
  await h.handler(payload({ controller: 'passing', cmp1: 'critical', cmp2: 'critical', cmp3: 'passing' }))
  const s = await h.state()
  t.same(s.outbox, [], 'nothing queued')
  t.match(s.ledger.cmp1, { guard: 'isolation' })
  t.equal(await runWorker(h.config, h.worker), 0)
  t.same(await h.agent.actions(), [], 'no agent run for a held host')
  t.same(h.posts(), [])
})

t.test('metrics: fence_failures_total from the record', async (t) => {
  const h = await setup(t, { fencing: fencingOn })
  await writeFile(h.config, `${readFileSync(h.config, 'utf8')}metrics:\n  textfile: metrics/mc.prom\n`)
  await h.agent.set('fail-127.77.0.1', 'Failed: Connection timed out')
  await h.handler(cmp1Down)
  t.equal(await runWorker(h.config, h.worker), 0)
  const text = readFileSync(join(h.config, '..', 'metrics', 'mc.prom'), 'utf8')
  const failures = parsePrometheusText(text).samples.find((s) => s.name === 'masakari_consul_fence_failures_total')
  t.equal(failures?.value, (await h.state()).counters.fenceFailures)
  t.ok((failures?.value ?? 0) > 0)
})

const policy = { initialBackoff: 1, maxBackoff: 8, expiry: 60, concurrency: 4 }
const T0 = Date.parse('2026-11-25T12:00:00.000Z')

t.test('afterFenceFailure: another try while it comes before the expiry, else UNKNOWN now', async (t) => {
  const at = (s: number) => new Date(T0 + s * 1000)
  const cases: Array<[string, number, number, ReturnType<typeof afterFenceFailure>]> = [
    ['first failure: retried after the initial backoff', 0, 0, { next: 'retry', retryAt: at(1).toISOString() }],
    ['backoff doubles', 3, 2, { next: 'retry', retryAt: at(7).toISOString() }],
    ['capped at maxBackoff', 40, 7, { next: 'retry', retryAt: at(48).toISOString() }],
    ['the next try just fits, with the slack', 50, 7, { next: 'retry', retryAt: at(58).toISOString() }],
    ['the next try would come within the slack of the expiry: UNKNOWN', 51, 7, { next: 'send-unknown' }],
    ['the next try would pass the expiry: UNKNOWN', 55, 7, { next: 'send-unknown' }],
    ['the expiry passed during the fence: UNKNOWN', 70, 7, { next: 'send-unknown' }],
  ]
  for (const [name, seconds, attempts, want] of cases)
    t.same(afterFenceFailure({ attempts, decidedAt: new Date(T0).toISOString() }, at(seconds), policy), want, name)
})

function entry(host: string, event: 'STOPPED' | 'STARTED', more: Partial<OutboxEntry> = {}): OutboxEntry {
  const n = hostNotification(host, event, new Date(T0))
  return {
    id: `${host}-${event}`,
    host,
    notification: n,
    reason: 'test',
    decidedAt: n.generated_time,
    attempts: 0,
    nextAttemptAt: n.generated_time,
    ...more,
  }
}

t.test('needsFence: a STOPPED of a fenced host, not yet fenced', async (t) => {
  const covers = (h: string) => h === 'cmp1'
  const fenced = { at: 'x', agent: 'fence_ipmilan', confirmed: true as const }
  const cases: Array<[string, OutboxEntry, boolean]> = [
    ['STOPPED of a host with options', entry('cmp1', 'STOPPED'), true],
    ['STARTED: never (the monitor powers nothing on)', entry('cmp1', 'STARTED'), false],
    ['a host without options', entry('cmp2', 'STOPPED'), false],
    ['already fenced (a takeover)', entry('cmp1', 'STOPPED', { fenced }), false],
  ]
  for (const [name, e, want] of cases) t.equal(needsFence(e, covers), want, name)
  t.same(withHostStatus(entry('cmp1', 'STOPPED').notification, 'UNKNOWN').payload, {
    event: 'STOPPED',
    cluster_status: 'OFFLINE',
    host_status: 'UNKNOWN',
  })
})

t.test('healthOf: a fence failing now, and a STOPPED sent UNKNOWN, turn the check warning', async (t) => {
  const now = new Date(T0 + 10_000)
  const failing = {
    ...emptyState(),
    outbox: [entry('cmp1', 'STOPPED', { fenceError: 'power off failed: Failed: Connection timed out (exit 1)' })],
  }
  t.match(healthOf(failing, {}, [], undefined, now), {
    status: 'warning',
    reason: /^fencing cmp1 failed \(power off failed: Failed: Connection timed out/,
  })
  const record = {
    id: 'a',
    event: 'STOPPED' as const,
    outcome: 'accepted' as const,
    at: new Date(T0).toISOString(),
    generatedTime: 'g',
    hostStatus: 'UNKNOWN' as const,
    fenceError: 'no route',
  }
  const sent = { ...emptyState(), ledger: Object.assign(emptyHostRecord<LedgerEntry>(), { cmp1: { firstSeenAt: 'x', notified: record } }) }
  t.match(healthOf(sent, {}, [], undefined, now), {
    status: 'warning',
    reason: /STOPPED for cmp1 sent with host_status UNKNOWN .*fencing failed \(no route\)/,
  })
  t.match(healthOf(sent, {}, [], undefined, new Date(T0 + 3 * 3600_000)), { status: 'passing' }, 'said for an hour, as an expiry')
})

t.test('hostFence: what fencing did for the latest recovery, the outbox before the ledger', async (t) => {
  const fenced = { at: '2026-11-25T12:00:05.000Z', agent: 'fence_ipmilan', confirmed: true as const }
  const record = (event: 'STOPPED' | 'STARTED', s: number, more: object = {}) => ({
    id: `${event}-${s}`,
    event,
    outcome: 'accepted' as const,
    at: new Date(T0 + s * 1000).toISOString(),
    generatedTime: 'g',
    ...more,
  })
  const ledger = (more: Partial<LedgerEntry>): LedgerEntry => ({ firstSeenAt: 'x', ...more })
  const cases: Array<[string, LedgerEntry | undefined, OutboxEntry[], HostFence | null]> = [
    ['never seen', undefined, [], null],
    [
      'its STOPPED waits, fenced (the POST not yet answered)',
      undefined,
      [entry('cmp1', 'STOPPED', { fenced })],
      { state: 'fenced', at: fenced.at, agent: 'fence_ipmilan' },
    ],
    [
      'its STOPPED waits, the fence failing',
      undefined,
      [entry('cmp1', 'STOPPED', { fenceError: 'no route', nextAttemptAt: 'next' })],
      { state: 'failing', error: 'no route', nextAttemptAt: 'next' },
    ],
    [
      'a new STOPPED waits, not fenced yet: the older fence is not this recovery’s',
      ledger({ notified: record('STOPPED', 0, { fenced }) }),
      [entry('cmp1', 'STOPPED')],
      null,
    ],
    [
      'notified, fenced',
      ledger({ notified: record('STOPPED', 0, { fenced }) }),
      [],
      { state: 'fenced', at: fenced.at, agent: 'fence_ipmilan' },
    ],
    [
      'sent UNKNOWN',
      ledger({ notified: record('STOPPED', 0, { hostStatus: 'UNKNOWN', fenceError: 'no route' }) }),
      [],
      { state: 'unknown', at: new Date(T0).toISOString(), error: 'no route' },
    ],
    ['a STOPPED without fencing', ledger({ notified: record('STOPPED', 0) }), [], null],
    ['a STARTED since (the host is back)', ledger({ notified: record('STARTED', 60), unsent: record('STOPPED', 0, { fenced }) }), [], null],
    [
      'the pending STARTED of a fenced host',
      ledger({ notified: record('STOPPED', 0, { fenced }) }),
      [entry('cmp1', 'STARTED')],
      { state: 'fenced', at: fenced.at, agent: 'fence_ipmilan' },
    ],
  ]
  for (const [name, ledgerEntry, pending, want] of cases) t.same(hostFence(ledgerEntry, pending), want, name)
})

t.test('the sender lock lost while fencing: nothing recorded as fenced, nothing sent', async (t) => {
  const store = localStore(join(t.testdir({}), 'state'))
  await store.transact(async (s) => ({ next: { ...s, outbox: [entry('cmp1', 'STOPPED')] }, result: undefined }))
  const sent: unknown[] = []
  let asked = 0
  const deps = {
    store,
    client: () => ({
      send: async (n: unknown) => {
        sent.push(n)
        return { final: true as const, outcome: 'accepted' as const, message: 'ok' }
      },
    }),
    policy,
    now: () => new Date(T0),
    sleep: async () => {},
    logger: recordingLogger(),
    // Held at the check before the fence, lost by its end.
    mayPost: async () => asked++ === 0,
    fence: { covers: () => true, agent: 'fence_fake', fence: async () => ({ fenced: true, runs: [], elapsed: 3000 }) },
  }
  await t.rejects(deliveryPass(deps), { name: 'NotSenderError' })
  t.same(sent, [], 'no POST')
  t.equal(asked, 2, 'asked before the fence and after it')
  t.notOk((await store.read()).outbox[0]!.fenced, 'not recorded as fenced by a controller that lost the lock')
})
