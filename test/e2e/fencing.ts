/**
 * Fencing on the real stack (issue #21): three controllers, a monitor on each with fencing on
 * (Debian's /usr/sbin/fence_ipmilan), and one real BMC per compute (ipmi_sim, stack/bmc.ts,
 * 127.79.1.x) whose power control kills that compute's three Consul agents: powering a compute
 * off takes it out of the three clusters at once, as pulling its plug would. Masakari's
 * duplicate window is 0; assertions read what Masakari stored and what each BMC received.
 *
 * In order: a compute fails → one power-off, its agents gone, one STOPPED `host_status: NORMAL`;
 * a compute fails with its BMC stopped → retries, never NORMAL, one STOPPED UNKNOWN, the
 * sender's check warning with the reason; a compute fails and the sender is killed right after
 * its decision → still exactly one power-off and one STOPPED NORMAL, from another controller.
 * cmp1's BMC is in `fencing.hosts`; cmp2's and cmp3's come from `fencing.template`, filled from
 * the node meta their management agents register (`{meta.bmc_ip}`, `{meta.bmc_port}`).
 */
import t from 'tap'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BmcStack, startBmcs } from '../../stack/bmc.js'
import { type RealStack, startRealStack, waitUntil } from './harness.js'

const controllers = ['ctl1', 'ctl2', 'ctl3']
const computes = ['cmp1', 'cmp2', 'cmp3']
const storage = 'storage' as const
/** At most 16 characters: ipmi_sim refuses a session for a longer one ("insufficient resources"). */
const PASSWORD = 'bmc-fence-3c9b'
const dir = mkdtempSync(join(tmpdir(), 'masakari-consul-fencing-'))
/** The power-off kills the compute's agents by the pids in this file, written once the agents run. */
const pidFile = (host: string) => join(dir, `${host}.agents`)
let bmcs: BmcStack
let stack: RealStack
const gone = new Set<string>()
const live = () => controllers.filter((c) => !gone.has(c))

t.before(async () => {
  bmcs = await startBmcs({
    dir: join(dir, 'bmc'),
    block: '127.79.1',
    password: PASSWORD,
    // -s KILL: dash's kill; the agents are not restarted by this test (the monitor never powers on).
    hosts: computes.map((name) => ({ name, off: `kill -s KILL $(cat ${pidFile(name)})`, on: 'true' })),
  })
  writeFileSync(join(dir, 'fence-password'), `${PASSWORD}\n`)
  chmodSync(join(dir, 'fence-password'), 0o600)
  stack = await startRealStack(t, {
    computes,
    controllers,
    octet: 150,
    nodeMeta: Object.fromEntries(
      Object.entries(bmcs.fenceHosts())
        .filter(([host]) => host !== 'cmp1')
        .map(([host, bmc]) => [host, { management: { bmc_ip: bmc.ip, bmc_port: String(bmc.ipport) } }]),
    ),
    pulse: '3s',
    // the fence failures' retries last until the last try before the expiry
    delivery: { expiry: 60 },
    monitor: {
      guards: { rateLimit: { maxRecoveries: 0 } },
      fencing: {
        enabled: true,
        agent: 'fence_ipmilan',
        // cipher 3: ipmi_sim does not answer Get Channel Cipher Suites (stack/bmc.ts)
        options: { lanplus: '1', username: 'admin', cipher: '3' },
        // cmp1 by its own entry; the others by the template, filled from each compute's node
        // meta as its management agent registers it (read from the sender's agent's catalog)
        hosts: { cmp1: bmcs.fenceHosts().cmp1 },
        template: { ip: '{meta.bmc_ip}', ipport: '{meta.bmc_port}' },
        passwordFile: join(dir, 'fence-password'),
        timeout: 20,
      },
    },
  })
  for (const c of computes) writeFileSync(pidFile(c), stack.consul.nodePids(c).join(' '))
})

t.teardown(async () => {
  await bmcs?.stop()
  if (t.passing()) rmSync(dir, { recursive: true, force: true })
  else t.comment(`kept ${dir} for inspection (BMC files under bmc/)`)
})

const stored = async (host: string) => (await stack.notifications(host)).map((n) => `${n.payload.event} ${n.payload.host_status}`)
const powerOffs = (host: string) => bmcs.powerLog(host).filter((c) => c.power === 'off').length

async function settled(timeoutMs = 120_000): Promise<void> {
  for (const c of live()) await stack.monitor(c).waitForDelivery(timeoutMs)
}

/**
 * The pulse check as the controller's own management agent has it: the catalog's copy takes a
 * new output only with a new status or every check_update_interval (5 min).
 */
async function pulseCheck(controller: string): Promise<{ Status: string; Output: string } | undefined> {
  const res = await fetch(`http://${stack.consul.httpAddr(controller, 'management')}/v1/agent/checks`)
  return ((await res.json()) as Record<string, { Status: string; Output: string }>)['masakari-consul']
}

t.test('a compute fails: its BMC receives one power-off, its agents are gone, one STOPPED NORMAL', async (t) => {
  stack.consul.freeze('cmp1', storage)
  const [n] = await stack.waitForNotifications('cmp1', 1, 120_000)
  await settled()
  t.equal(powerOffs('cmp1'), 1, 'one power-off')
  t.equal(bmcs.power('cmp1'), 'off')
  t.same(stack.consul.nodePids('cmp1'), [], "its three agents are gone (the BMC's power control killed them)")
  t.same(await stored('cmp1'), ['STOPPED NORMAL'])
  t.equal(n?.payload.event, 'STOPPED')
  const sender = await stack.holder(live())
  const fenced = stack
    .monitor(sender)
    .logLines()
    .find((l) => l.msg === 'host fenced: power off confirmed, STOPPED sent NORMAL' && l.host === 'cmp1')
  t.match(fenced, { agent: 'fence_ipmilan' }, `${sender} logged the confirmed off`)
  t.comment(`fence (off, then status until off) took ${fenced?.elapsed} s`)
  for (const c of live()) if (c !== sender) t.equal(powerOffs('cmp1'), 1, `${c} fenced nothing more`)
})

t.test('a compute fails with its BMC stopped: never NORMAL; one STOPPED UNKNOWN after the retries; the check warns', async (t) => {
  await bmcs.kill('cmp2')
  stack.consul.freeze('cmp2', storage)
  const sender = await stack.holder(live())
  // The retries run until the last try before the delivery expiry (120 s in the harness).
  const m = stack.monitor(sender)
  await waitUntil(
    'a fence failure logged for cmp2',
    async () => m.logLines().find((l) => /^fencing failed/.test(String(l.msg)) && l.host === 'cmp2'),
    90_000,
  )
  t.same(await stored('cmp2'), [], 'nothing stored while the fence fails')
  const warned = await waitUntil(
    `${sender}'s pulse check warning`,
    async () => {
      const c = await pulseCheck(sender)
      return c?.Status === 'warning' ? c : undefined
    },
    60_000,
  )
  t.match(warned.Output, /fencing cmp2 failed/, 'the check says which host and why')
  await stack.waitForNotifications('cmp2', 1, 240_000)
  await settled(180_000)
  t.same(await stored('cmp2'), ['STOPPED UNKNOWN'], 'one STOPPED, UNKNOWN: Masakari records it and does not evacuate')
  t.equal(powerOffs('cmp2'), 0, 'the stopped BMC received nothing')
  const last = m.logLines().find((l) => /at the last try before the expiry/.test(String(l.msg)) && l.host === 'cmp2')
  t.match(last, { level: 'error', agent: 'fence_ipmilan' }, 'one error line naming the host and the agent')
  t.match(String(last?.error), /\S/, "with the agent's own message")
  t.notMatch(String(last?.error), /template cannot be filled/, 'the template was filled from the node meta: the BMC did not answer')
  const after = await waitUntil(
    `${sender}'s pulse check to say the UNKNOWN`,
    async () => {
      const c = await pulseCheck(sender)
      return /cmp2 sent with host_status UNKNOWN/.test(String(c?.Output)) ? c : undefined
    },
    30_000,
  )
  t.equal(after.Status, 'warning', 'the check stays warning after the UNKNOWN, saying so')
})

t.test('the sender killed right after its decision: exactly one power-off and one STOPPED NORMAL, from another', async (t) => {
  const killed = await stack.holder(live())
  const m = stack.monitor(killed)
  stack.consul.freeze('cmp3', storage)
  await waitUntil(
    `${killed}'s decision for cmp3`,
    async () => m.logLines().find((l) => l.msg === 'decision' && l.host === 'cmp3' && l.action === 'STOPPED'),
    120_000,
  )
  await stack.killController(killed)
  gone.add(killed)
  const t0 = Date.now()
  t.comment(`${killed} killed; power-offs received by then: ${powerOffs('cmp3')}`)
  await stack.waitForNotifications('cmp3', 1, 150_000)
  t.comment(`stored ${((Date.now() - t0) / 1000).toFixed(1)} s after the kill (lock-delay 15 s)`)
  await settled()
  t.equal(powerOffs('cmp3'), 1, 'one power-off')
  t.same(await stored('cmp3'), ['STOPPED NORMAL'])
  t.not(await stack.holder(live()), killed)
})

t.test('nothing started by this test survives it', async (t) => {
  t.same(await stack.stop(), [])
})
