/**
 * The test infrastructure for several controllers, on the real stack: three controllers (a
 * Consul server per network each, one monitor each), three computes, Consul ACLs on. Proves the
 * stack and the harness (leaders, failover, a frozen or killed controller, the ACL'd API), not
 * the monitors' coordination. Addresses 127.140-142.0.x.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { parse } from 'yaml'
import { NETWORKS, type Network } from '../../stack/consul.js'
import { isAlive } from '../../stack/openstack.js'
import { startRealStack, waitUntil, type RealStack } from './harness.js'
import { deployedWatch } from '../../stack/real-stack.js'

const controllers = ['ctl1', 'ctl2', 'ctl3']
const computes = ['cmp1', 'cmp2', 'cmp3']
const nodes = [...controllers, ...computes]
let stack: RealStack

/** A raw request to an agent, with or without a token. */
async function agentRequest(node: string, network: Network, path: string, init: { method?: string; body?: string; token?: string } = {}) {
  const res = await fetch(`http://${stack.consul.httpAddr(node, network)}${path}`, {
    method: init.method ?? 'GET',
    body: init.body,
    headers: init.token ? { 'X-Consul-Token': init.token } : {},
    signal: AbortSignal.timeout(10_000),
  })
  return { status: res.status, body: await res.text() }
}

/** Process state from /proc (R, S, T = stopped, ...), or undefined once gone. */
function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
  } catch {
    return undefined
  }
}

/** A stand-in for a monitor process of that controller: its command line holds the config path. */
function fakeMonitorProcess(controller: string): number {
  const child = spawn('/bin/sh', ['-c', 'sleep 600', 'fake-monitor', stack.monitor(controller).configPath], {
    detached: true,
    stdio: 'ignore',
  })
  child.unref()
  t.teardown(() => {
    try {
      process.kill(child.pid!, 'SIGKILL')
    } catch {}
  })
  return child.pid!
}

t.before(async () => {
  const t0 = performance.now()
  stack = await startRealStack(t, { computes, controllers, octet: 140, acl: true })
  t.comment(
    `3 controllers + 3 computes, ACLs on: Consul stack up in ${stack.consul.startMs} ms; ` +
      `with Keystone, masakari-api, tokens, watches and every monitor's first snapshots: ${Math.round(performance.now() - t0)} ms`,
  )
})

t.test('three servers per cluster, all agreeing on one leader', async (t) => {
  for (const network of NETWORKS) {
    const leader = await stack.consul.leader(network)
    t.ok(leader && controllers.includes(leader), `${network}: leader ${leader}`)
    for (const c of controllers) {
      const peers = JSON.parse((await agentRequest(c, network, '/v1/status/peers')).body) as string[]
      t.equal(peers.length, 3, `${network}: ${c} sees three Raft peers`)
      const said = JSON.parse((await agentRequest(c, network, '/v1/status/leader')).body) as string
      t.equal(said, `${stack.consul.address(leader!, network)}:8300`, `${network}: ${c} names ${leader}`)
    }
  }
})

t.test('each controller runs its own monitor: config, state dir, hostname, agents, token', async (t) => {
  t.equal(stack.monitors.length, 3)
  t.equal(new Set(stack.monitors.map((m) => m.stateDir)).size, 3, 'three state dirs')
  t.equal(new Set(stack.monitors.map((m) => m.configPath)).size, 3, 'three configs')
  t.equal(stack.stateDir, stack.monitors[0]!.stateDir, 'the top-level paths are the first controller')
  t.match(stack.token, /^[0-9a-f-]{36}$/)
  for (const m of stack.monitors) {
    t.ok(m.stateDir.startsWith(stack.dir), `${m.controller}: state dir under the stack dir`)
    const config = parse(readFileSync(m.configPath, 'utf8'))
    t.equal(config.hostname, m.controller)
    t.equal(config.stateDir, m.stateDir)
    t.equal(config.consul.token, stack.token)
    for (const n of NETWORKS) t.equal(config.consul.agents[n], stack.consul.httpAddr(m.controller, n), `${m.controller}: own ${n} agent`)
    for (const n of NETWORKS) {
      const watch = JSON.parse(readFileSync(`${stack.consul.configDir(m.controller, n)}/watch-masakari-consul.json`, 'utf8'))
      // As deployed (consul-config/watches/, through watch.sh since #18), with the monitors' token.
      t.same(watch, deployedWatch(m, n, stack.token))
      t.match(watch.watches[0], { type: 'checks', token: stack.token, args: ['/bin/sh', /watch\.sh$/, n, m.configPath, m.stateDir] })
      // the watch ran with its token: an empty payload would have no node in the snapshot
      const snapshot = JSON.parse(readFileSync(`${m.stateDir}/snapshots/${n}.json`, 'utf8'))
      t.same(Object.keys(snapshot.nodes).sort(), [...nodes].sort(), `${m.controller}/${n}: every node in its snapshot`)
    }
  }
})

t.test('ACLs: no token reads nothing; the monitor token reads every check and writes only its KV prefix', async (t) => {
  const token = stack.token!
  for (const network of NETWORKS) {
    for (const via of ['ctl2', 'cmp1']) {
      const anonymous = await agentRequest(via, network, '/v1/health/state/any')
      t.same([anonymous.status, JSON.parse(anonymous.body)], [200, []], `${network} via ${via}: no token → 200 []`)
      const checks = JSON.parse((await agentRequest(via, network, '/v1/health/state/any', { token })).body) as Array<{
        Node: string
        CheckID: string
        Status: string
      }>
      const serf = checks.filter((c) => c.CheckID === 'serfHealth')
      t.same(serf.map((c) => c.Node).sort(), [...nodes].sort(), `${network} via ${via}: the token lists every node's serfHealth`)
      t.ok(
        serf.every((c) => c.Status === 'passing'),
        'all passing',
      )
    }
    // what the monitor asks its own agents besides the checks (gossip tuning, health score)
    for (const path of ['/v1/agent/self', '/v1/agent/metrics']) {
      t.equal((await agentRequest('ctl1', network, path)).status, 403, `${network}: ${path} without token → 403`)
      t.equal((await agentRequest('ctl1', network, path, { token })).status, 200, `${network}: ${path} with the token → 200`)
    }
    const outside = await agentRequest('ctl1', network, '/v1/kv/elsewhere/x', { method: 'PUT', body: 'x', token })
    t.equal(outside.status, 403, `${network}: KV write outside masakari-consul/ → 403`)
    t.match(outside.body, /Permission denied/)
    const inside = await agentRequest('ctl1', network, '/v1/kv/masakari-consul/probe', { method: 'PUT', body: 'x', token })
    t.same([inside.status, inside.body.trim()], [200, 'true'], `${network}: KV write under masakari-consul/ → 200 true`)
    const session = await agentRequest('ctl1', network, '/v1/session/create', { method: 'PUT', body: '{}', token })
    t.equal(session.status, 200, `${network}: session create`)
    const id = (JSON.parse(session.body) as { ID: string }).ID
    const acquire = await agentRequest('ctl1', network, `/v1/kv/masakari-consul/leader?acquire=${id}`, {
      method: 'PUT',
      body: 'ctl1',
      token,
    })
    t.same([acquire.status, acquire.body.trim()], [200, 'true'], `${network}: lock acquired`)
    await agentRequest('ctl1', network, `/v1/session/destroy/${id}`, { method: 'PUT', token })
  }
})

t.test('a frozen controller turns critical as seen from the others, and passing after thaw', async (t) => {
  const victim = 'ctl3'
  const others = controllers.filter((c) => c !== victim)
  const fake = fakeMonitorProcess(victim)
  await waitUntil('the stand-in monitor process', async () => stack.monitor(victim).monitorPids().includes(fake) || undefined, 5_000)
  const t0 = performance.now()
  stack.freezeController(victim)
  const stopped = (pid: number) => waitUntil(`pid ${pid} stopped`, async () => procState(pid) === 'T' || undefined, 2_000)
  await stopped(fake)
  t.pass("the controller's monitor processes are stopped")
  for (const n of NETWORKS) await stopped(stack.consul.pid(victim, n)!)
  t.pass('its three agents are stopped')
  try {
    const seen = await Promise.all(
      NETWORKS.flatMap((n) =>
        others.map((via) => stack.consul.waitForSerf(victim, n, 'critical', 30_000, via).then(() => performance.now() - t0)),
      ),
    )
    t.comment(`freeze → ${victim} critical on every network from ${others.join(' and ')}: ${Math.round(Math.max(...seen))} ms`)
    for (const n of NETWORKS) t.ok(await stack.consul.leader(n), `${n}: the two others still have a leader`)
  } finally {
    stack.thawController(victim)
  }
  await waitUntil('the monitor process to run again', async () => procState(fake) !== 'T' || undefined, 2_000)
  t.pass('the monitor process runs again')
  const t1 = performance.now()
  for (const n of NETWORKS) {
    for (const via of controllers) await stack.consul.waitForSerf(victim, n, 'passing', 30_000, via)
    await stack.consul.waitForLeader(n) // all three agree again (a thawed ex-leader steps down)
  }
  t.comment(`thaw → passing everywhere in ${Math.round(performance.now() - t1)} ms`)
})

t.test("killing the leader's node elects another leader, on each cluster", async (t) => {
  const failedOver = new Set<Network>()
  while (failedOver.size < NETWORKS.length) {
    const network = NETWORKS.find((n) => !failedOver.has(n))!
    const victim = (await stack.consul.waitForLeader(network)).leader
    const led: Network[] = []
    for (const n of NETWORKS) if ((await stack.consul.leader(n)) === victim) led.push(n)
    const m = stack.monitor(victim)
    const indexBefore = JSON.parse(readFileSync(`${m.stateDir}/snapshots/management.json`, 'utf8')).consulIndex
    const fake = fakeMonitorProcess(victim)
    await waitUntil('the stand-in monitor process', async () => m.monitorPids().includes(fake) || undefined, 5_000)

    const t0 = performance.now()
    await stack.killController(victim)
    t.same(stack.consul.nodePids(victim), [], `${victim}: its three agents are gone`)
    t.notOk(isAlive(fake), `${victim}: its monitor processes are gone`)
    const elected = await Promise.all(
      led.map((n) =>
        // a bound against a hang, not a timing assertion: the time is reported
        stack.consul.waitForLeader(n, { except: victim, timeoutMs: 60_000 }).then((r) => ({ n, ...r, ms: performance.now() - t0 })),
      ),
    )
    for (const e of elected) {
      t.comment(`${e.n}: leader ${victim} killed → ${e.leader} leader after ${Math.round(e.ms)} ms`)
      t.not(e.leader, victim, `${e.n}: a new leader, ${e.leader}`)
      failedOver.add(e.n)
    }
    for (const n of NETWORKS) {
      if (!led.includes(n)) t.ok(await stack.consul.leader(n), `${n}: still led by another controller`)
      // Killed, a server turns critical and autopilot's cleanup of dead servers may remove it at
      // once: the journey's CI run saw it gone 0.2 s after critical (efb95a3).
      await stack.consul.waitForSerf(victim, n, ['critical', 'absent'], 30_000)
    }

    // A run that sees what the last one saw is quiet and writes nothing (lib/run/quiet-run.ts):
    // forgotten, the restarted watch's first run is a full one, whose evaluation shows below.
    for (const n of NETWORKS) rmSync(`${m.stateDir}/snapshots/${n}.seen`, { force: true })
    await stack.consul.restartNode(victim)
    for (const n of NETWORKS) t.ok(await stack.consul.leader(n), `${n}: ${victim} back, one leader agreed by all three`)
    // the restarted agents' watches run the controller's monitor again
    await m.waitForEvaluation('management', Number(indexBefore) + 1, 30_000)
    for (const n of NETWORKS) await m.waitForSnapshot(victim, n, 'up', 30_000)
  }
})
