/**
 * `npm run demo`: the monitor on a local real stack. Three Consul clusters on loopback (one
 * controller, three computes), a real Keystone and masakari-api; a storage failure is injected
 * on one compute and the decision, Masakari's stored notification and the recovery are shown.
 * `--keep` leaves everything running and prints how to poke it by hand.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { NETWORKS, startConsulStack, type ConsulStack } from '../stack/consul.js'
import { freePort, startOpenStack, type OpenStack } from '../stack/openstack.js'

const keep = process.argv.includes('--keep')
const root = join(import.meta.dirname, '..')
const handler = join(root, 'dist', 'checks-handler.js')
const evaluate = join(root, 'dist', 'evaluate.js')
const computes = ['compute1', 'compute2', 'compute3']
const victim = 'compute2'

const say = (text: string) => process.stdout.write(`\n== ${text}\n`)
const note = (text: string) => process.stdout.write(`   ${text}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(250)
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'masakari-consul-demo-'))
  const configPath = join(dir, 'monitor', 'config.yaml')
  const stateDir = join(dir, 'state')
  let openstack: OpenStack | undefined
  let consul: ConsulStack | undefined
  const stop = async () => {
    await consul?.stop()
    await openstack?.stop()
  }
  process.on('SIGINT', () => void stop().then(() => process.exit(130)))
  try {
    say('Starting a real Keystone and masakari-api on 127.0.0.1 (SQLite)')
    openstack = await startOpenStack({
      dir: join(dir, 'openstack'),
      keystonePort: await freePort(),
      masakariPort: await freePort(),
      log: note,
    })
    const segment = await openstack.createSegment('demo')
    for (const c of computes) await openstack.addHost(segment, c)
    note(`failover segment "demo" with hosts ${computes.join(', ')}`)

    await mkdir(join(dir, 'monitor'), { recursive: true })
    await writeFile(join(dir, 'monitor', 'password'), openstack.monitor.password, { mode: 0o600 })
    await writeFile(
      configPath,
      stringify({
        stateDir,
        hostname: 'controller',
        masakari: {
          authUrl: openstack.authUrl,
          auth: {
            username: openstack.monitor.username,
            userDomainName: 'Default',
            passwordFile: 'password',
            projectName: 'service',
            projectDomainName: 'Default',
          },
          region: openstack.region,
        },
      }),
    )
    note(`monitor config: ${configPath}`)

    say('Starting three Consul clusters (management, tenant, storage): one controller, three computes')
    consul = await startConsulStack({
      dir: join(dir, 'consul'),
      computes,
      octet: 40,
      controllerConfig: Object.fromEntries(
        NETWORKS.map((n) => [
          n,
          [{ watches: [{ type: 'checks', args: [process.execPath, handler, '--network', n, '--config', configPath] }] }],
        ]),
      ),
      log: note,
    })
    for (const n of NETWORKS)
      note(`${n}: controller agent at ${consul.httpAddr('controller', n)} runs checks-handler.js --network ${n} on every health change`)
    await until('the first snapshots', async () => {
      for (const n of NETWORKS) await readFile(join(stateDir, 'snapshots', `${n}.json`))
      return true
    })

    say('What the monitor sees now (node dist/evaluate.js status):')
    process.stdout.write(execFileSync(process.execPath, [evaluate, 'status', '--config', configPath], { encoding: 'utf8' }))
    note("every host is up on every network: nothing to send (the watch's first firing sends nothing).")

    say(`Injecting a storage failure on ${victim}: freezing its storage agent (SIGSTOP), as a cut storage link would`)
    const t0 = Date.now()
    consul.freeze(victim, 'storage')
    const detect = await consul.waitForSerf(victim, 'storage', 'critical', 60_000)
    note(`Consul's gossip declared ${victim} failed on storage after ${(detect / 1000).toFixed(1)} s (serfHealth critical)`)
    note('the monitor holds a recovery for guards.hold.recovery (5 s by default) so that a flapping link sends nothing, then decides')
    const stopped = await until('the STOPPED notification in Masakari', async () =>
      (await openstack!.listNotifications()).find((n) => n.hostname === victim && n.payload?.event === 'STOPPED'),
    )
    note(`Masakari stored it ${((Date.now() - t0) / 1000).toFixed(1)} s after the fault`)
    const decision = (await readFile(join(stateDir, 'decisions.log'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .find((l) => l.msg === 'decision' && l.host === victim && l.action === 'STOPPED')
    note(
      `the decision: ${victim} is ${Object.entries(decision.vector)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}; ${decision.reason} → STOPPED`,
    )
    note(
      `Masakari's stored notification: ${JSON.stringify({ uuid: stopped.notification_uuid, hostname: stopped.hostname, event: stopped.payload.event, status: stopped.status, generated_time: stopped.generated_time })}`,
    )
    process.stdout.write(execFileSync(process.execPath, [evaluate, 'status', '--config', configPath], { encoding: 'utf8' }))

    say(`Recovering ${victim}'s storage link (SIGCONT)`)
    consul.thaw(victim, 'storage')
    const started = await until('the STARTED notification in Masakari', async () =>
      (await openstack!.listNotifications()).find((n) => n.hostname === victim && n.payload?.event === 'STARTED'),
    )
    note(`${victim} is back on every network; Masakari stored STARTED (${started.notification_uuid})`)
    const all = (await openstack.listNotifications()).reverse()
    note(
      `Masakari holds ${all.length} notification(s) in all: ${all.map((n) => `${n.hostname} ${n.payload?.event}`).join(', ')}. Exactly one per change.`,
    )

    if (keep) {
      say('Still running (--keep). Poke it by hand:')
      for (const c of computes)
        note(`freeze ${c}'s storage link: kill -STOP ${consul.pid(c, 'storage')}   (thaw: kill -CONT ${consul.pid(c, 'storage')})`)
      note(`see the table: node ${evaluate} status --config ${configPath} [--json]`)
      note(`decision log: tail -f ${join(stateDir, 'decisions.log')}`)
      note(`stop everything: kill ${process.pid}   (or Ctrl-C)`)
      process.on('SIGTERM', () => void stop().then(() => process.exit(0)))
      await new Promise(() => {})
    }
    say('Done: tearing everything down')
  } finally {
    if (!keep) await stop()
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`)
    process.exit(1)
  },
)
