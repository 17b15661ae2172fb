/**
 * The sender lock and the shared record against a real Consul agent (`consul agent -dev` on its
 * own loopback address): two controllers, one sender; fencing when the holder's session goes;
 * lock-delay; the session tied to the monitor's own check; the size bound of the record.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import nodeFetch from 'node-fetch'
import { consulAgent } from '../lib/consul/consul-api.js'
import { kvStore, NotSenderError } from '../lib/consul/kv-store.js'
import type { Fetch } from '../lib/openstack/masakari.js'
import { LockSchema, senderLock } from '../lib/consul/sender.js'
import { StateFileError } from '../lib/state/state-errors.js'
import { emptyState, type StoreState } from '../lib/decide/state-shape.js'

const ADDR = '127.201.0.1:8500'
const fetch = nodeFetch as unknown as Fetch
const access = { ssl: false, sslVerify: true }
const agent = consulAgent(ADDR, access, fetch, undefined, 5)
const config = LockSchema.parse({ lockDelay: 2, prefix: 'test-coordination/' })

const consul = spawn('consul', ['agent', '-dev', '-node=ctl', `-bind=127.201.0.1`, `-client=127.201.0.1`, '-log-level=warn'], {
  stdio: 'ignore',
})
t.teardown(() => {
  consul.kill('SIGKILL')
})
await waitFor('the dev agent to have a leader', async () => (await agent.request('GET', '/v1/status/leader')).text.length > 4)

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await probe().catch(() => false)) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

function controller(name: string) {
  const stateDir = mkdtempSync(join(tmpdir(), `coordination-${name}-`))
  const lock = senderLock(agent, config, name, stateDir)
  return { lock, store: kvStore(agent, config, lock, stateDir) }
}
const record = (host: string): StoreState => ({ ...emptyState(), ledger: { [host]: { firstSeenAt: '2026-11-26T00:00:00.000Z' } } })

const a = controller('ctl1')
const b = controller('ctl2')

t.test('two controllers: the first to ask sends, the other is standby and says who sends', async (t) => {
  t.match(await a.lock.acquire(), { sender: true })
  t.match(await b.lock.acquire(), { sender: false, holder: 'ctl1', why: /ctl1 holds the sender lock/ })
  t.match(await a.lock.acquire(), { sender: true }, 'asking again keeps it')
  t.match(await b.lock.peek(), { sender: false, holder: 'ctl1' })
  t.match(await a.lock.peek(), { sender: true })
})

t.test('only the sender writes the shared record; the standby reads it', async (t) => {
  await a.store.transact(async () => ({ next: record('cmp1'), result: undefined }))
  t.same(Object.keys((await b.store.read()).ledger), ['cmp1'])
  await t.rejects(
    b.store.transact(async () => ({ next: record('cmp2'), result: undefined })),
    NotSenderError,
  )
  t.same(Object.keys((await a.store.read()).ledger), ['cmp1'], 'the standby wrote nothing')
})

t.test('fencing: a holder whose session is gone cannot post or write; after lock-delay the other takes over', async (t) => {
  const old = a.lock.session()!
  await agent.ok('PUT', `/v1/session/destroy/${old}`)
  t.equal(await a.lock.stillHeld(), false, 'asked before a POST: not ours any more')
  await t.rejects(
    a.store.transact(async () => ({ next: record('late'), result: undefined })),
    NotSenderError,
    'a late write is refused',
  )
  t.match(await b.lock.acquire(), { sender: false, why: /lock-delay/ }, 'nobody can take it during lock-delay')
  await waitFor('lock-delay to pass', async () => (await b.lock.acquire()).sender, 10_000)
  t.same(Object.keys((await b.store.read()).ledger), ['cmp1'], 'the new sender reads what the old one recorded')
  await b.store.transact(async (s) => ({ next: { ...s, ledger: { ...s.ledger, cmp2: { firstSeenAt: 'x' } } }, result: undefined }))
  t.match(await a.lock.acquire(), { sender: false, holder: 'ctl2' }, 'the old holder, back, is standby')
  t.not(a.lock.session(), old, 'with a new session')
})

t.test("the session is tied to the monitor's own check: a failing monitor loses the lock", async (t) => {
  await agent.ok(
    'PUT',
    '/v1/agent/check/register',
    JSON.stringify({ ID: 'masakari-consul', Name: 'monitor', TTL: '60s', Status: 'passing' }),
  )
  const c = controller('ctl3')
  await agent.ok('PUT', `/v1/session/destroy/${b.lock.session()}`)
  await waitFor('ctl3 to take the lock', async () => (await c.lock.acquire()).sender, 10_000)
  const info = JSON.parse((await agent.ok('GET', `/v1/session/info/${c.lock.session()}`)).text) as Array<{
    Checks?: string[]
    NodeChecks?: string[]
  }>
  t.match(info[0]?.Checks ?? info[0]?.NodeChecks, ['serfHealth', 'masakari-consul'])
  await agent.ok('PUT', '/v1/agent/check/fail/masakari-consul?note=broken')
  await waitFor('the session to be invalidated', async () => !(await c.lock.stillHeld()), 10_000)
  t.pass('the monitor check went critical: the lock is gone')
})

t.test('a record too large for one Consul transaction is refused with its size', async (t) => {
  const d = controller('ctl4')
  await agent.ok('PUT', `/v1/agent/check/pass/masakari-consul`)
  await waitFor('ctl4 to take the lock', async () => (await d.lock.acquire()).sender, 15_000)
  const ledger: StoreState['ledger'] = {}
  // random names do not compress: ~1.2 MB of them
  for (let i = 0; i < 40_000; i++) ledger[`h${Math.random().toString(36).slice(2)}`] = { firstSeenAt: new Date(i).toISOString() }
  await t.rejects(
    d.store.transact(async () => ({ next: { ...emptyState(), ledger }, result: undefined })),
    StateFileError,
  )
  await t.rejects(
    d.store.transact(async () => ({ next: { ...emptyState(), ledger }, result: undefined })),
    /KB compressed, over the 360 KB/,
  )
})
