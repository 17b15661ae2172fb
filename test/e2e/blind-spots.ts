/**
 * Never silently blind (#18), on the real stack: one controller (ACLs on, the example config's
 * guards, the rate limit lifted for nine recoveries in a row), the pulse every 5 s, resync 15 s.
 * For each injection a compute's storage agent is frozen while it is in force. What must follow,
 * whatever the injection: Masakari stores exactly one STOPPED for that host within `resync` +
 * 15 s of the injection's end, or the monitor's own Consul check is non-passing, with the
 * reason, within two pulse intervals. Each case also asserts which of the two it is.
 *
 * Every wait is for a positive signal (a stored notification, the check's status, a log line);
 * the one timed span is the injected fault itself (an agent refusing for 3 s).
 */
import t, { type Test } from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { parse, stringify } from 'yaml'
import { notePath, runtimeDir, writeSeen } from '../../lib/run/quiet-run.js'
import type { Check } from '../../lib/consul/checks-payload.js'
import { freePort } from '../../stack/openstack.js'
import { deployedWatch } from '../../stack/real-stack.js'
import { HANDLER, MONITOR_ACL_RULES, type RealStack, startRealStack, waitUntil } from './harness.js'

const computes = ['cmp1', 'cmp2', 'cmp3', 'cmp4', 'cmp5', 'cmp6', 'cmp7', 'cmp8', 'cmp9']
const storage = 'storage' as const
const PULSE_S = 5
const RESYNC_S = 15
const CHECK_ID = 'masakari-consul'

// Consul under systemd has no XDG_RUNTIME_DIR: the runtime dir is $TMPDIR/masakari-consul-<uid>,
// here one of this test's own (the agents inherit this environment).
const tmp = mkdtempSync(join(tmpdir(), 'blind-spots-'))
process.env.TMPDIR = tmp
delete process.env.XDG_RUNTIME_DIR
const RUNTIME = runtimeDir()

const stack: RealStack = await startRealStack(t, {
  computes,
  octet: 200,
  acl: true,
  pulse: `${PULSE_S}s`,
  monitor: { resync: RESYNC_S, guards: { rateLimit: { maxRecoveries: 0 } } },
})
// Kept when a case failed: the stack's logs are in it.
t.teardown(() => (t.passing() ? rmSync(tmp, { recursive: true, force: true }) : undefined))

const headers = { 'X-Consul-Token': stack.token! }
const agentUrl = (network: 'management' | 'storage') => `http://${stack.consul.httpAddr('controller', network)}`
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** The monitor's own check as the controller's management agent has it now. */
async function ownCheck(): Promise<{ Status: string; Output: string }> {
  const res = await fetch(`${agentUrl('management')}/v1/agent/checks`, { headers })
  const checks = (await res.json()) as Record<string, { Status: string; Output: string }>
  return checks[CHECK_ID] ?? { Status: 'absent', Output: '' }
}

type Outcome = { kind: 'stopped'; afterMs: number } | { kind: 'check'; status: string; output: string; afterMs: number }

/**
 * From `since` (the injection's end, or its start for one that stays): the first of a STOPPED
 * stored for `host` or the monitor's check non-passing, whichever comes first.
 */
async function outcome(host: string, since: number, timeoutMs = (RESYNC_S + 15) * 1000 + 30_000): Promise<Outcome> {
  return waitUntil<Outcome>(
    `a STOPPED for ${host} or the monitor's check non-passing`,
    async () => {
      if ((await stack.notifications(host)).some((n) => n.payload.event === 'STOPPED'))
        return { kind: 'stopped', afterMs: Date.now() - since }
      const c = await ownCheck()
      if (c.Status !== 'passing') return { kind: 'check', status: c.Status, output: c.Output, afterMs: Date.now() - since }
      return undefined
    },
    timeoutMs,
  )
}

/** Exactly one STOPPED for the host once the monitor is idle, within resync + 15 s of `since`. */
async function oneStopped(t: Test, host: string, since: number): Promise<number> {
  const [first] = await stack.waitForNotifications(host, 1, (RESYNC_S + 15) * 1000 + 30_000)
  const afterMs = Date.now() - since
  await stack.waitForDelivery(60_000)
  t.same(
    (await stack.notifications(host)).map((n) => n.payload.event),
    ['STOPPED'],
    `exactly one STOPPED for ${host} (${first!.payload.event})`,
  )
  t.ok(afterMs <= (RESYNC_S + 15) * 1000, `stored ${secs(afterMs)} after the injection's end (≤ resync + 15 s)`)
  return afterMs
}

/**
 * When the monitor first met the fault after `since`: its first error line, or a failed run's
 * note (watch.sh, pulse.sh), whichever came first.
 */
function faultShownAt(since: number): number {
  const errors = stack
    .logLines()
    .filter((l) => l.level === 'error')
    .map((l) => Date.parse(String(l.time)))
  const notes = readdirSync(stack.stateDir)
    .filter((f) => /^failed-[a-z-]+$/.test(f))
    .map((f) => statSync(join(stack.stateDir, f)).mtimeMs)
  return Math.min(...[...errors, ...notes].filter((at) => at >= since))
}

/** The check non-passing with a reason that names the cause, within two pulses of the monitor meeting the fault. */
async function checkFails(t: Test, host: string, since: number, reason: RegExp): Promise<number> {
  const o = await outcome(host, since, 120_000)
  t.equal(o.kind, 'check', `the monitor's check is non-passing (${JSON.stringify(o)})`)
  if (o.kind !== 'check') return o.afterMs
  t.match(o.output, reason, 'the check says why')
  const afterMs = since + o.afterMs - faultShownAt(since)
  t.ok(afterMs <= 2 * PULSE_S * 1000, `non-passing ${secs(afterMs)} after the monitor met the fault (≤ two pulses)`)
  return afterMs
}

/** Thaws the host and waits until the monitor has seen it up and is idle again. */
async function recover(host: string): Promise<void> {
  stack.consul.thaw(host, storage)
  await stack.waitForSnapshot(host, storage, 'up', 60_000)
  await waitUntil('the monitor check passing again', async () => ((await ownCheck()).Status === 'passing' ? true : undefined), 90_000)
  await stack.waitForDelivery(60_000)
}

type MonitorConfig = { consul: { agents: Record<string, string>; token?: string } }

async function editConfig(edit: (c: MonitorConfig) => void): Promise<void> {
  const config = parse(await readFile(stack.configPath, 'utf8')) as MonitorConfig
  edit(config)
  await writeFile(stack.configPath, stringify(config))
}

const figures: string[] = []
const note = (what: string, ms: number, how: string) => figures.push(`${what}: ${how} ${secs(ms)}`)

t.test('a planted quiet note in a runtime dir another uid made: not trusted, STOPPED', async (t) => {
  const host = 'cmp3'
  t.teardown(() => stack.consul.thaw(host, storage)) // a failed case must not hold the next one (burst, isolation)
  const configNote = notePath(RUNTIME, stack.configPath)
  await waitUntil('the quiet note of the all-up runs', async () => (existsSync(configNote) ? true : undefined), 60_000)
  // What the storage watch's payload will say once the host has failed, as the monitor digests it.
  const checks = (await (await fetch(`${agentUrl(storage)}/v1/health/state/any`, { headers })).json()) as Check[]
  for (const c of checks) if (c.Node === host && c.CheckID === 'serfHealth') c.Status = 'critical'
  // A decoy state directory whose digest matches that payload, and the note pointed at it.
  const decoy = join(tmp, 'decoy')
  cpSync(stack.stateDir, decoy, { recursive: true, filter: (p) => !p.endsWith('.lock') })
  await writeSeen(decoy, storage, checks, CHECK_ID)
  const planted = { ...JSON.parse(readFileSync(configNote, 'utf8')), stateDir: decoy }
  writeFileSync(configNote, `${JSON.stringify(planted)}\n`)
  execFileSync('chown', ['-R', '65534:65534', RUNTIME])
  execFileSync('chmod', ['0777', RUNTIME])
  const start = Date.now()
  stack.consul.freeze(host, storage)
  t.teardown(() => rmSync(RUNTIME, { recursive: true, force: true }))
  note('planted quiet note', await oneStopped(t, host, start), 'STOPPED stored after the fault')
  t.notOk(
    readdirSync(join(decoy, 'snapshots')).some((f) => statSync(join(decoy, 'snapshots', f)).mtimeMs > start),
    'nothing written to the decoy',
  )
  rmSync(RUNTIME, { recursive: true, force: true })
  await recover(host)
})

t.test('the own storage agent refusing for 3 s at decision time: asked again, STOPPED', async (t) => {
  const host = 'cmp1'
  t.teardown(() => stack.consul.thaw(host, storage)) // a failed case must not hold the next one (burst, isolation)
  const target = stack.consul.httpAddr('controller', storage).split(':')
  const proxy = await tcpProxy(target[0]!, Number(target[1]))
  t.teardown(() => proxy.close())
  await editConfig((c) => {
    c.consul.agents.storage = `127.0.0.1:${proxy.port}`
  })
  proxy.refuse()
  stack.consul.freeze(host, storage)
  await waitUntil(
    'the monitor to find its storage agent refusing when it decides',
    async () =>
      stack
        .logLines()
        .some((l) => l.msg === 'own agent did not confirm; its network counts as unknown for recoveries' && l.network === storage)
        ? true
        : undefined,
    60_000,
  )
  t.same(await stack.notifications(host), [], 'nothing sent while unconfirmed')
  await new Promise((r) => setTimeout(r, 3000)) // the injected fault: 3 s more of refusal
  await proxy.accept()
  const end = Date.now()
  note('own agent refusing 3 s', await oneStopped(t, host, end), 'STOPPED stored after the agent answered again')
  await editConfig((c) => {
    c.consul.agents.storage = stack.consul.httpAddr('controller', storage)
  })
  await recover(host)
})

t.test("a token without node:read in the monitor's config: the check is critical and says so; restored, STOPPED", async (t) => {
  const host = 'cmp2'
  t.teardown(() => stack.consul.thaw(host, storage)) // a failed case must not hold the next one (burst, isolation)
  const rules = MONITOR_ACL_RULES.split('\n')
    .filter((l) => !l.startsWith('node_prefix'))
    .join('\n')
  const blind = crypto.randomUUID()
  for (const n of ['management', 'tenant', 'storage'] as const)
    await stack.consul.createToken(n, 'masakari-consul-no-node-read', rules, blind)
  await editConfig((c) => {
    c.consul.token = blind
  })
  const start = Date.now()
  stack.consul.freeze(host, storage)
  await stack.waitForSnapshot(host, storage, 'down', 60_000).catch(() => {})
  note(
    'token without node:read',
    await checkFails(t, host, start, /ACL|node_prefix|node:read|cannot read nodes|403/),
    'check non-passing after the monitor met it',
  )
  t.same(await stack.notifications(host), [], 'no STOPPED on a view that cannot see nodes')
  await editConfig((c) => {
    c.consul.token = stack.token
  })
  note('token restored', await oneStopped(t, host, Date.now()), 'STOPPED stored after the token was restored')
  await recover(host)
})

t.test('a read-only runtime dir: notes and code cache cannot be written, runs go on, STOPPED', async (t) => {
  const host = 'cmp4'
  t.teardown(() => stack.consul.thaw(host, storage)) // a failed case must not hold the next one (burst, isolation)
  mkdirSync(RUNTIME, { recursive: true, mode: 0o700 })
  execFileSync('mount', ['--bind', RUNTIME, RUNTIME])
  let mounted = true
  const unmount = () => {
    if (mounted) execFileSync('umount', [RUNTIME])
    mounted = false
  }
  t.teardown(unmount)
  execFileSync('mount', ['-o', 'remount,bind,ro', RUNTIME])
  const start = Date.now()
  stack.consul.freeze(host, storage)
  const afterMs = await oneStopped(t, host, start)
  note('read-only runtime dir', afterMs, 'STOPPED stored after the fault')
  unmount()
  await recover(host)
})

t.test('a corrupted code cache: never crashes a run, STOPPED', async (t) => {
  const host = 'cmp5'
  t.teardown(() => stack.consul.thaw(host, storage)) // a failed case must not hold the next one (burst, isolation)
  const cache = () => readdirSync(RUNTIME).find((f) => f.endsWith('.code-cache'))
  await waitUntil('a code cache written by a full run', async () => cache(), 60_000).catch(async () => {
    // No full run since the runtime dir was emptied: the pulse's deep look makes one.
    execFileSync(process.execPath, [HANDLER, '--pulse', '--config', stack.configPath])
    return waitUntil('a code cache', async () => cache(), 30_000)
  })
  const path = join(RUNTIME, cache()!)
  const bytes = readFileSync(path)
  bytes[Math.floor(bytes.length / 2)]! ^= 0xff
  writeFileSync(path, bytes)
  const start = Date.now()
  stack.consul.freeze(host, storage)
  note('corrupted code cache', await oneStopped(t, host, start), 'STOPPED stored after the fault')
  await recover(host)
})

t.test('a torn state.json: the check is non-passing with the reason, or the record is elsewhere and STOPPED', async (t) => {
  const host = 'cmp6'
  t.teardown(() => stack.consul.thaw(host, storage)) // a failed case must not hold the next one (burst, isolation)
  const path = join(stack.stateDir, 'state.json')
  const whole = existsSync(path) ? readFileSync(path) : undefined
  if (whole) writeFileSync(path, whole.subarray(0, Math.floor(whole.length / 2)))
  else writeFileSync(path, '{"version":1,"ledger":{')
  const start = Date.now()
  stack.consul.freeze(host, storage)
  const o = await outcome(host, start)
  if (o.kind === 'check') {
    t.match(o.output, /state\.json/, 'the check names the torn file')
    const afterMs = start + o.afterMs - faultShownAt(start)
    t.ok(afterMs <= 2 * PULSE_S * 1000, `non-passing ${secs(afterMs)} after the monitor met the fault (≤ two pulses)`)
    note('torn state.json', afterMs, 'check non-passing after the monitor met it')
    if (whole) writeFileSync(path, whole)
    else rmSync(path)
    note('state.json restored', await oneStopped(t, host, Date.now()), 'STOPPED stored after the repair')
  } else {
    note('torn state.json (the record is in Consul KV)', await oneStopped(t, host, start), 'STOPPED stored after the fault')
    if (whole) writeFileSync(path, whole)
  }
  await recover(host)
})

t.test('a stale concurrent handler finishing after a newer run: the newer view stays, STOPPED', async (t) => {
  const host = 'cmp7'
  t.teardown(() => stack.consul.thaw(host, storage)) // a failed case must not hold the next one (burst, isolation)
  const res = await fetch(`${agentUrl(storage)}/v1/health/state/any`, { headers })
  const index = res.headers.get('x-consul-index') ?? ''
  const payloadFile = join(tmp, 'stale-payload.json')
  writeFileSync(payloadFile, await res.text())
  // The stale run: its payload (all up) read now, then stopped until a newer run has recorded.
  // Through a link to the config: no quiet note for that path, so it is a full run, as a stale
  // run whose payload differed from what was seen would be.
  const link = join(dirname(stack.configPath), 'config-link.yaml')
  if (!existsSync(link)) symlinkSync(stack.configPath, link)
  const stdin = openSync(payloadFile, 'r')
  const child = spawn(process.execPath, [HANDLER, '--network', storage, '--config', link], {
    stdio: [stdin, 'ignore', 'ignore'],
    env: { ...process.env, CONSUL_INDEX: index },
  })
  const size = statSync(payloadFile).size
  // Polled tightly: the run reads its payload first, then loads for a tenth of a second.
  const readAll = () => Number(/pos:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/fdinfo/0`, 'utf8'))?.[1]) >= size
  const deadline = Date.now() + 10_000
  while (!readAll() && Date.now() < deadline) await new Promise((r) => setImmediate(r))
  process.kill(child.pid!, 'SIGSTOP')
  t.equal(child.exitCode, null, 'the stale run stopped after reading its payload, before it finished')
  const start = Date.now()
  stack.consul.freeze(host, storage)
  await stack.waitForSnapshot(host, storage, 'down', 60_000)
  const exited = new Promise((r) => child.on('exit', r))
  process.kill(child.pid!, 'SIGCONT')
  await exited
  t.equal(JSON.parse(readFileSync(join(stack.stateDir, 'snapshots', 'storage.json'), 'utf8')).nodes[host], 'down', 'the newer view stays')
  note('stale concurrent handler', await oneStopped(t, host, start), 'STOPPED stored after the fault')
  await recover(host)
})

t.test('an unreadable password file: the check is critical with the reason; restored, STOPPED', async (t) => {
  const host = 'cmp8'
  t.teardown(() => stack.consul.thaw(host, storage)) // a failed case must not hold the next one (burst, isolation)
  const password = join(dirname(stack.configPath), 'password')
  renameSync(password, `${password}.away`)
  mkdirSync(password) // unreadable as a file whoever we are (root reads any mode)
  const start = Date.now()
  stack.consul.freeze(host, storage)
  note('unreadable password file', await checkFails(t, host, start, /password/), 'check non-passing after the monitor met it')
  rmSync(password, { recursive: true })
  renameSync(`${password}.away`, password)
  note('password file restored', await oneStopped(t, host, Date.now()), 'STOPPED stored after the repair')
  await recover(host)
})

t.test('the node in the storage watch missing: each failed run is noted, the resync decides, STOPPED', async (t) => {
  const host = 'cmp9'
  t.teardown(() => stack.consul.thaw(host, storage)) // a failed case must not hold the next one (burst, isolation)
  const m = stack.monitors[0]!
  const broken = deployedWatch(m, storage, stack.token) as { watches: Array<{ args: string[] }> }
  broken.watches[0]!.args[broken.watches[0]!.args.length - 1] = '/nonexistent/bin/node'
  stack.consul.writeControllerConfig(storage, 'watch-masakari-consul', broken, 'controller')
  await stack.consul.reloadController(storage, 'controller')
  t.teardown(async () => {
    stack.consul.writeControllerConfig(storage, 'watch-masakari-consul', deployedWatch(m, storage, stack.token), 'controller')
    await stack.consul.reloadController(storage, 'controller')
  })
  await waitUntil('a failed storage watch run noted', async () => existsSync(join(stack.stateDir, 'failed-storage')) || undefined, 30_000)
  t.match(readFileSync(join(stack.stateDir, 'failed-storage'), 'utf8'), /exit 127.*nonexistent/, 'the note names the missing node')
  const start = Date.now()
  stack.consul.freeze(host, storage)
  note('node missing in the watch', await oneStopped(t, host, start), 'STOPPED stored after the fault')
  stack.consul.writeControllerConfig(storage, 'watch-masakari-consul', deployedWatch(m, storage, stack.token), 'controller')
  await stack.consul.reloadController(storage, 'controller')
  await recover(host)
})

t.test('figures', async (t) => {
  for (const f of figures) t.comment(f)
  t.pass(`${figures.length} figures`)
})

/** A TCP proxy to an agent that can refuse connections (listener closed) and accept again. */
async function tcpProxy(host: string, port: number) {
  const listenPort = await freePort()
  const sockets = new Set<net.Socket>()
  let server: net.Server | undefined
  const open = () =>
    new Promise<void>((resolve) => {
      server = net.createServer((client) => {
        const upstream = net.connect(port, host)
        sockets.add(client).add(upstream)
        client.pipe(upstream).pipe(client)
        const drop = () => {
          client.destroy()
          upstream.destroy()
        }
        client.on('error', drop).on('close', drop)
        upstream.on('error', drop).on('close', drop)
      })
      server.listen(listenPort, '127.0.0.1', resolve)
    })
  await open()
  return {
    port: listenPort,
    refuse() {
      server?.close()
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
    accept: () => open(),
    close() {
      server?.close()
      for (const s of sockets) s.destroy()
    },
  }
}
