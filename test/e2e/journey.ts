/**
 * The operator's journey (issue #20), on the real stack: three controllers (a Consul server per
 * network each) and three computes, ACLs on, every agent running as the `consul` user and
 * started WITHOUT script checks, as Debian's units start them before masakari-consul exists.
 * Each controller then gets the README's "Install on three controllers" steps, run as commands:
 * the package from `npm pack` installed into an empty prefix, the directories, a kolla-style
 * masakarimonitors.conf migrated by `upstreamConfig`, the monitor's ACL token from the shipped
 * policy, `validate` as the agents' user, `install-watches` and every line it prints executed
 * verbatim, `status` as root. Then a compute fails (one STOPPED) and a controller fails (no
 * notification, no error line).
 *
 * The one stand-in is systemd: there is none here. Each controller's PATH has a `systemctl`
 * that turns `systemctl restart consul-NETWORK` into a restart of that controller's agent
 * (SIGKILL, then the same command line, as the same user).
 */
import t, { type Test } from 'tap'
import { execFile, execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type ConsulStack, NETWORKS, type Network, startConsulStack } from '../../stack/consul.js'
import { freePort, type OpenStack, startOpenStack } from '../../stack/openstack.js'
import { monitorAt, type MonitorImpl } from '../../stack/real-stack.js'
import { ROOT, waitUntil } from './harness.js'

const controllers = ['ctl1', 'ctl2', 'ctl3']
const computes = ['cmp1', 'cmp2', 'cmp3']
const OCTET = 236
/** Debian's consul package runs the agents as this user; so do the watches and the pulse. */
const AGENTS_USER = 'consul'

const id = (flag: '-u' | '-g') => Number(execFileSync('id', [flag, AGENTS_USER], { encoding: 'utf8' }).trim())
const user = { uid: id('-u'), gid: id('-g') }

interface Run {
  code: number
  output: string
}

/** A command line as an operator types it, through the shell, with the controller's PATH. */
function sh(line: string, path: string): Promise<Run> {
  // the operator's own token, with agent:write: what the printed `consul reload` lines use
  const env = { PATH: path, LANG: 'C.UTF-8', CONSUL_HTTP_TOKEN_FILE: operatorTokenFile }
  return new Promise((resolve) => {
    // env -u: tap adds its process-info hook to every child's NODE_OPTIONS; a command run as the
    // agents' user cannot write tap's files. The operator's shell has no such hook.
    execFile('/usr/bin/env', ['-u', 'NODE_OPTIONS', '/bin/sh', '-c', line], { env, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` })
    })
  })
}

/** kolla-ansible's masakari-monitors.conf as it renders (unversioned auth_url, empty cafile), with the consul driver. */
function kollaConf(os: OpenStack, agents: Record<Network, string>): string {
  return `[DEFAULT]
debug = False
log_dir = /var/log/kolla/masakari
transport_url = rabbit://openstack:secret@127.0.0.1:5672//

[api]
region = ${os.region}
auth_url = ${os.authUrl.replace(/\/v3\/?$/, '')}
user_domain_id = default
project_name = ${os.monitor.projectName}
project_domain_id = default
username = ${os.monitor.username}
password = ${os.monitor.password}
cafile =
api_interface = public

[host]
monitoring_driver = consul
monitoring_interval = 5
restrict_to_remotes = true
disable_ipmi_check = true

[consul]
agent_manage = ${agents.management}
agent_tenant = ${agents.tenant}
agent_storage = ${agents.storage}

[oslo_concurrency]
lock_path = /var/lib/masakari/tmp
`
}

/** One controller as installed: its /etc, /var/lib and PATH, all under the journey's directory. */
interface Controller {
  name: string
  etc: string
  configPath: string
  conf: string
  tokenFile: string
  stateDir: string
  /** the controller's PATH: its systemctl, the prefix's bin, the system's */
  path: string
  monitor: MonitorImpl
}

let dir: string
let prefix: string
let consul: ConsulStack
let openstack: OpenStack
const installed = new Map<string, Controller>()
const token = randomUUID()
/** The operator's token (here the clusters' master token), root 0600, as in an operator's shell profile. */
const masterToken = randomUUID()
let operatorTokenFile = ''

t.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'masakari-consul-journey-'))
  chmodSync(dir, 0o755) // the agents' user walks into the prefix, /etc and /var/lib below it
  prefix = join(dir, 'prefix')
  mkdirSync(prefix)
  operatorTokenFile = join(dir, 'operator-token')
  writeFileSync(operatorTokenFile, masterToken, { mode: 0o600 })
  t.teardown(async () => {
    await consul?.stop()
    await openstack?.stop()
    for (const c of installed.values()) for (const pid of c.monitor.monitorPids()) process.kill(pid, 'SIGKILL')
  })
  openstack = await startOpenStack({
    dir: join(dir, 'openstack'),
    keystonePort: await freePort(),
    masakariPort: await freePort(),
    duplicateInterval: 0, // so that a double would be counted
    log: (m) => t.comment(m),
  })
  await startRestartServer()
  const segment = await openstack.createSegment('journey')
  for (const host of computes) await openstack.addHost(segment, host)
  consul = await startConsulStack({
    dir: join(dir, 'consul'),
    computes,
    controllers,
    octet: OCTET,
    acl: { masterToken },
    user,
    log: (m) => t.comment(m),
  })
})

t.test('the package: npm pack, then npm install -g --offline into an empty prefix', async (t) => {
  execFileSync(process.execPath, [join(ROOT, 'build.mjs')], { cwd: ROOT, stdio: 'ignore' })
  const packed = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' })
  const { filename } = (JSON.parse(packed) as Array<{ filename: string }>)[0]!
  const r = await sh(`npm install -g --offline --no-audit --no-fund --prefix ${prefix} ${join(dir, filename)}`, '/usr/bin:/bin')
  t.equal(r.code, 0, r.output)
  t.ok(statSync(join(prefix, 'bin', 'masakari-consul')).isFile(), 'masakari-consul on the prefix bin')
})

t.test(
  "the monitor's ACL policy and token (step 4): the shipped policy, one SecretID, by the consul commands in each cluster",
  async (t) => {
    const hcl = join(prefix, 'lib/node_modules/masakari-consul/consul-config/acl/masakari-consul.hcl')
    for (const n of NETWORKS) {
      const agent = `-http-addr=${consul.httpAddr('ctl1', n)} -token-file=${operatorTokenFile}`
      for (const line of [
        `consul acl policy create ${agent} -name masakari-consul -rules @${hcl}`,
        // node identities: node:write on the controllers' own nodes, so that the agents register the pulse check
        `consul acl token create ${agent} -policy-name masakari-consul ${controllers.map((c) => `-node-identity=${c}:${n}`).join(' ')} -secret=${token}`,
      ]) {
        // Right after its election a 1.8 server answers 500 "currently in legacy mode" for a while (shared/notes/real-stack.md).
        const r = await waitUntil(
          `${line} to work`,
          async () => {
            const r = await sh(line, '/usr/bin:/bin')
            if (r.code !== 0 && /legacy mode/.test(r.output)) return undefined
            return r
          },
          60_000,
        )
        t.equal(r.code, 0, `${n}: ${line.split(' -')[0]}: ${r.output.trim().split('\n')[0]}`)
      }
    }
  },
)

for (const name of controllers) {
  t.test(`${name}: the README's install steps, each command run as written`, async (t) => {
    const c = await installController(t, name)
    installed.set(name, c)
    t.equal(statSync(c.stateDir).uid, user.uid, 'the state directory belongs to the agents user')
  })
}

t.test("every controller's monitor runs as the agents' user and sees every node up on every network", async (t) => {
  for (const c of installed.values())
    for (const n of NETWORKS) for (const host of [...controllers, ...computes]) await c.monitor.waitForSnapshot(host, n, 'up', 60_000)
  for (const c of installed.values()) {
    // the pulse (a script check: the restart printed for the management agent took it in)
    await waitUntil(
      `the masakari-consul check of ${c.name} passing`,
      async () =>
        (await consul.health('management', c.name)).some(
          (h) => h.Node === c.name && h.CheckID === 'masakari-consul' && h.Status === 'passing',
        ) || undefined,
      60_000,
    )
    const snapshot = join(c.stateDir, 'snapshots', 'storage.json')
    t.equal(statSync(snapshot).uid, user.uid, `${c.name}: the watch wrote its snapshot as ${AGENTS_USER}`)
  }
})

t.test('status as root, in between: it answers, and leaves nothing the agents user cannot use', async (t) => {
  const c = installed.get('ctl1')!
  const r = await sh(`masakari-consul status --config ${c.configPath}`, c.path)
  t.equal(r.code, 0, r.output)
  for (const host of computes) t.ok(new RegExp(`^${host} +up +up +up `, 'm').test(r.output), `${host}: up on every network`)
  t.same(notOwnedBy(c.stateDir, user.uid), [], 'every file in the state directory still belongs to the agents user')
})

t.test('a compute fails: Masakari stores exactly one STOPPED for it', async (t) => {
  const before = Date.now()
  consul.freeze('cmp1', 'storage')
  try {
    const [stored] = await waitForNotifications('cmp1', 1, 120_000)
    for (const c of installed.values()) await c.monitor.waitForDelivery(120_000)
    t.same(
      (await notifications('cmp1')).map((n) => n.payload.event),
      ['STOPPED'],
      'one notification, a STOPPED',
    )
    t.comment(`freeze → STOPPED stored in ${Date.parse(`${stored!.created_at}Z`) - before} ms (Masakari's second-resolution clock)`)
    t.same(errorLines(before), [], 'no error line in any monitor log')
  } finally {
    consul.thaw('cmp1', 'storage')
  }
  await waitForNotifications('cmp1', 2, 120_000)
  for (const c of installed.values()) await c.monitor.waitForDelivery(120_000)
  t.same(
    (await notifications('cmp1')).map((n) => n.payload.event),
    ['STOPPED', 'STARTED'],
    'back: one STARTED',
  )
})

t.test('a controller fails: no notification for it, and no error line', async (t) => {
  const victim = 'ctl3'
  const survivors = [...installed.values()].filter((c) => c.name !== victim)
  const before = Date.now()
  await consul.killNode(victim)
  for (const pid of installed.get(victim)!.monitor.monitorPids()) process.kill(pid, 'SIGKILL')
  for (const n of NETWORKS) {
    // A dead server is marked critical, then autopilot's cleanup of dead servers may force it out
    // of the catalog within a fraction of a second (seen: 0.2 s, which the blocking query waiting
    // for critical missed): either is Consul having seen the failure.
    await consul.waitForSerf(victim, n, ['critical', 'absent'], 60_000, 'ctl1')
    // the positive signal that the survivors decided on it: their watches recorded it down or
    // gone (then waitForDelivery: no run of theirs is left)
    for (const c of survivors) await c.monitor.waitForSnapshot(victim, n, ['down', 'absent'], 60_000)
  }
  for (const c of survivors) await c.monitor.waitForDelivery(60_000)
  t.same(await notifications(victim), [], 'Masakari has no notification for the controller')
  t.same(errorLines(before), [], 'no error line in the surviving monitors logs')
  for (const c of survivors) {
    const explain = await sh(`masakari-consul explain ${victim} --config ${c.configPath}`, c.path)
    t.match(explain.output, /decision: no action/, `${c.name}: explain shows no action for ${victim}`)
  }
})

/** The README's steps on one controller; resolves with where it is installed. */
async function installController(t: Test, name: string): Promise<Controller> {
  const root = join(dir, name)
  const etc = join(root, 'etc', 'masakari-consul')
  const upstreamDir = join(root, 'etc', 'masakarimonitors')
  const stateDir = join(root, 'var', 'lib', 'masakari-consul')
  const bin = join(root, 'bin')
  for (const d of [root, join(root, 'etc'), join(root, 'var'), join(root, 'var', 'lib'), upstreamDir, bin]) {
    mkdirSync(d, { recursive: true })
    chmodSync(d, 0o755)
  }
  const path = `${bin}:${join(prefix, 'bin')}:/usr/sbin:/usr/bin:/sbin:/bin`
  writeSystemctl(bin, name)
  const conf = join(upstreamDir, 'masakarimonitors.conf')
  const agents = Object.fromEntries(NETWORKS.map((n) => [n, consul.httpAddr(name, n)])) as Record<Network, string>
  writeFileSync(conf, kollaConf(openstack, agents))
  const configPath = join(etc, 'config.yaml')
  const tokenFile = join(etc, 'consul-token')
  const run = async (line: string): Promise<Run> => {
    const r = await sh(line, path)
    t.comment(`${name}$ ${line}\n${r.output.trimEnd()}`)
    return r
  }
  const must = async (line: string): Promise<Run> => {
    const r = await run(line)
    if (r.code !== 0) throw new Error(`${name}: \`${line}\` exited ${r.code}:\n${r.output}`)
    return r
  }
  // 2. directories
  await must(`install -d -o ${AGENTS_USER} -g ${AGENTS_USER} -m 0750 ${stateDir}`)
  await must(`install -d -o root -g ${AGENTS_USER} -m 0750 ${etc}`)
  // 3. migrate: upstream's file kept as it is; it holds the password, so the agents' user owns it, 0600
  await must(`chown ${AGENTS_USER}:${AGENTS_USER} ${conf} && chmod 0600 ${conf}`)
  writeFileSync(
    configPath,
    [
      `hostname: ${name}                       # this controller's Consul node name`,
      `stateDir: ${stateDir}`,
      `upstreamConfig: ${conf}`,
      'consul:',
      `  tokenFile: ${tokenFile}`,
      '',
    ].join('\n'),
  )
  // 4. the token (the policy and token exist in the clusters: created once, before)
  await must(`install -o ${AGENTS_USER} -g ${AGENTS_USER} -m 0600 /dev/null ${tokenFile}`)
  writeFileSync(tokenFile, `${token}\n`)
  // 5. check: the effective config, then validate as the agents' user
  const effective = await must(`masakari-consul config --config ${configPath}`)
  t.match(effective.output, /authUrl/, 'config prints the effective settings')
  const validate = await run(`runuser -u ${AGENTS_USER} -- masakari-consul validate --config ${configPath}`)
  t.equal(validate.code, 0, `${name}: validate as ${AGENTS_USER} passes`)
  t.notMatch(validate.output, /✗/, 'no ✗ line')
  t.match(validate.output, /log_dir|transport_url/, "upstream's options that do nothing here are named")
  // 6. install-watches, then every line it prints
  const dirs = NETWORKS.map((n) => `--agent-config-dir ${n}=${consul.configDir(name, n)}`).join(' ')
  const install = await must(`masakari-consul install-watches --config ${configPath} ${dirs}`)
  const steps = printedCommands(install.output)
  t.ok(steps.length >= NETWORKS.length, `${name}: a command per agent printed`)
  t.match(steps.join('\n'), /systemctl restart consul-management/, 'the management agent runs no script checks yet: a restart')
  for (const line of steps) await must(line)
  // 7. see it (as root)
  const status = await must(`masakari-consul status --config ${configPath}`)
  t.match(status.output, /cmp1/)
  const monitor = monitorAt(name, { configPath, stateDir }, consul.httpAddr(name, 'management'), token)
  return { name, etc, configPath, conf, tokenFile, stateDir, path, monitor }
}

/** The command lines install-watches prints after "Now load them into each agent:": two-space indented. */
function printedCommands(output: string): string[] {
  const tail = output.slice(output.indexOf('Now load them into each agent:'))
  return tail
    .split('\n')
    .filter((l) => /^ {2}\S/.test(l))
    .map((l) => l.trim())
}

/** The systemd stand-in on one controller's PATH: asks this test to restart that controller's agent. */
function writeSystemctl(bin: string, controller: string): void {
  const file = join(bin, 'systemctl')
  writeFileSync(
    file,
    `#!${process.execPath}
// systemd stand-in for the journey test: \`systemctl restart consul-NETWORK\` on ${controller}
const [verb, unit] = process.argv.slice(2)
fetch('http://127.0.0.1:${restartPort}/' + verb + '/${controller}/' + unit, { method: 'POST' })
  .then(async (r) => { const text = await r.text(); if (!r.ok) { console.error(text); process.exit(1) } })
  .catch((e) => { console.error(e.message); process.exit(1) })
`,
  )
  chmodSync(file, 0o755)
}

let restartPort = 0
/** The test's side of the systemctl stand-in: restart = SIGKILL the agent, start it again (same args, same user). */
async function startRestartServer(): Promise<void> {
  const server = createServer((req, res) => {
    const m = /^\/restart\/([a-z0-9-]+)\/consul-([a-z]+)$/.exec(req.url ?? '')
    const network = m?.[2] as Network | undefined
    if (req.method !== 'POST' || !m || !network || !NETWORKS.includes(network)) {
      res.writeHead(400).end(`systemctl stand-in: only "restart consul-<network>" (got ${req.url})\n`)
      return
    }
    consul
      .kill(m[1]!, network)
      .then(() => consul.restart(m[1]!, network))
      .then(
        () => res.writeHead(200).end(),
        (err: Error) => res.writeHead(500).end(`${err.message}\n`),
      )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  restartPort = (server.address() as AddressInfo).port
}

function notOwnedBy(path: string, uid: number): string[] {
  const found: string[] = []
  for (const f of readdirSync(path, { recursive: true, encoding: 'utf8' })) {
    const p = join(path, f)
    if (statSync(p).uid !== uid) found.push(p)
  }
  return found
}

async function notifications(host: string) {
  return (await openstack.listNotifications()).filter((n) => n.hostname === host).sort((a, b) => a.created_at.localeCompare(b.created_at))
}

function waitForNotifications(host: string, count: number, timeoutMs: number) {
  return waitUntil(
    `${count} notification(s) for ${host}`,
    async () => {
      const got = await notifications(host)
      return got.length >= count ? got : undefined
    },
    timeoutMs,
    `logs: ${consul.logDir}, ${openstack.logDir}, ${[...installed.values()].map((c) => c.stateDir).join(', ')}`,
  )
}

/** Error lines of every installed monitor's decision log since `since` (ms). */
function errorLines(since: number): unknown[] {
  return [...installed.values()].flatMap((c) =>
    c.monitor.logLines().filter((l) => l.level === 'error' && Date.parse(String(l.time)) >= since),
  )
}
