/**
 * install-watches into temporary agent config dirs, checked by the real `consul validate` (no
 * agent runs: it only reads the directory).
 */
import t, { type Test } from 'tap'
import { chmod, chown, copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main as evaluate } from '../handlers/operator-cli.js'
import { EXIT } from '../lib/run/cli.js'
import { deniedTo, nodeProblems, parseAgentDirs, runsScriptChecks } from '../lib/commands/install-watches.js'
import { NETWORKS } from '../lib/base/networks.js'
import { configYaml, fakeDeps, response, scriptedFetch } from './helpers.js'

const root = join(import.meta.dirname, '..')

/** An agent config dir per network holding the controller's agent config, as on a real controller. */
async function setup(t: Test, extra: Record<string, unknown> = {}) {
  // the state directory exists, as after the README's step 2: a watch holding the token takes its group
  const dir = t.testdir({ agents: { management: {}, tenant: {}, storage: {} }, state: {} })
  for (const n of NETWORKS) await copyFile(join(root, 'consul-config', 'controller', `${n}.json`), join(dir, 'agents', n, 'agent.json'))
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(join(dir, 'state'), extra))
  const flags = NETWORKS.flatMap((n) => ['--agent-config-dir', `${n}=${join(dir, 'agents', n)}`])
  return { dir, config, flags, agents: join(dir, 'agents') }
}

t.test('writes the three watches and the pulse with this install’s paths; consul validate passes on each dir', async (t) => {
  const { config, flags, agents } = await setup(t, { consul: { agents: { management: '192.0.2.1:8500' }, lock: { enabled: false } } })
  const deps = fakeDeps()
  t.equal(
    await evaluate(['install-watches', '--config', config, '--node', '/usr/bin/node', ...flags], deps),
    EXIT.ok,
    deps.rec.stderr.join(''),
  )
  const out = deps.rec.stdout.join('')
  for (const n of NETWORKS) {
    t.match(out, new RegExp(`✓ consul validate ${join(agents, n)}: Configuration is valid`))
    const watch = JSON.parse(await readFile(join(agents, n, `masakari-consul-${n}.json`), 'utf8'))
    t.same(watch.watches[0].args, [
      '/bin/sh',
      join(root, 'consul-config', 'watch.sh'),
      n,
      config,
      join(config, '..', 'state'),
      join(root, 'dist', 'checks-handler.js'),
      '/usr/bin/node',
    ])
    t.equal(watch.watches[0].type, 'checks')
  }
  const pulse = JSON.parse(await readFile(join(agents, 'management', 'masakari-consul-pulse.json'), 'utf8'))
  t.same(pulse.check.args, [
    '/bin/sh',
    join(root, 'consul-config', 'pulse.sh'),
    config,
    join(config, '..', 'state'),
    join(root, 'dist', 'checks-handler.js'),
    '/usr/bin/node',
  ])
  t.equal(pulse.check.id, 'masakari-consul', 'the rest of the shipped definition is kept')
  t.same(await readdir(join(agents, 'tenant')), ['agent.json', 'masakari-consul-tenant.json'], 'the pulse only on the lock’s network')
  t.match(out, /consul reload -http-addr=192\.0\.2\.1:8500\n/)
  t.match(out, /consul reload -http-addr=<the storage agent's HTTP address>/)
})

t.test('the password need not be in this shell: passwordEnv set only in the agents’ environment', async (t) => {
  const { config, flags } = await setup(t, {
    masakari: {
      auth: { username: 'm', userDomainName: 'Default', passwordEnv: 'UNSET_HERE', projectName: 's', projectDomainName: 'Default' },
    },
  })
  const deps = fakeDeps()
  t.equal(await evaluate(['install-watches', '--config', config, ...flags], deps), EXIT.ok, deps.rec.stderr.join(''))
  const bad = join(config, '..', 'bad.yaml')
  await writeFile(bad, 'stateDir: 5\nmasakari: {}\nconsul: {agents: {storage: 7}}\n')
  const refused = fakeDeps()
  t.equal(await evaluate(['install-watches', '--config', bad, ...flags], refused), EXIT.config)
  t.match(refused.rec.stderr.join(''), /invalid config .*bad\.yaml:\n {2}- stateDir: .*\n {2}- consul\.agents\.storage/)
})

t.test(
  'a migrated config: the agents and credentials from upstreamConfig, kolla-style (issue #20: the install stopped at migration)',
  async (t) => {
    const { dir, flags } = await setup(t)
    const conf = join(dir, 'masakarimonitors.conf')
    await writeFile(
      conf,
      '[api]\nauth_url = http://192.0.2.9:5000\nusername = m\npassword = p\nproject_name = s\nuser_domain_id = default\nproject_domain_id = default\ncafile =\n' +
        '[consul]\nagent_manage = 192.0.2.1:8500\nagent_tenant = 192.0.2.2:8500\nagent_storage = 192.0.2.3:8500\n',
    )
    const config = join(dir, 'migrated.yaml')
    await writeFile(config, `hostname: ctl1\nstateDir: ${join(dir, 'state')}\nupstreamConfig: masakarimonitors.conf\n`)
    const deps = fakeDeps()
    t.equal(
      await evaluate(['install-watches', '--config', config, '--node', '/usr/bin/node', ...flags], deps),
      EXIT.ok,
      deps.rec.stderr.join(''),
    )
    const out = deps.rec.stdout.join('')
    for (const addr of ['192.0.2.2:8500', '192.0.2.3:8500']) t.match(out, `consul reload -http-addr=${addr}\n`, 'the agent from [consul]')
    t.notMatch(out, /<the \w+ agent's HTTP address>/, 'every agent known')
  },
)

t.test('--dry-run prints the files and writes nothing', async (t) => {
  const { config, flags, agents } = await setup(t)
  const deps = fakeDeps()
  t.equal(await evaluate(['install-watches', '--dry-run', '--config', config, ...flags], deps), EXIT.ok)
  t.match(
    deps.rec.stdout.join(''),
    new RegExp(`# ${join(agents, 'storage', 'masakari-consul-storage.json')} \\(storage agent; dry run: not written\\)\\n\\{`),
  )
  for (const n of NETWORKS) t.same(await readdir(join(agents, n)), ['agent.json'])
})

t.test('a single-network strategy installs only that network’s watch (and the pulse)', async (t) => {
  const { config, flags, agents } = await setup(t, { strategy: join(root, 'consul-config', 'strategies', 'management-only.yaml') })
  t.equal(await evaluate(['install-watches', '--config', config, ...flags], fakeDeps()), EXIT.ok)
  t.same((await readdir(join(agents, 'management'))).sort(), [
    'agent.json',
    'masakari-consul-management.json',
    'masakari-consul-pulse.json',
  ])
  t.same(await readdir(join(agents, 'storage')), ['agent.json'])
})

t.test('a directory consul validate refuses gets its files put back as they were (exit 78)', async (t) => {
  const { config, flags, agents } = await setup(t)
  await writeFile(join(agents, 'tenant', 'broken.json'), '{"nosuch_key": 1}\n')
  await writeFile(join(agents, 'tenant', 'masakari-consul-tenant.json'), '{"watches": []}\n')
  const deps = fakeDeps()
  t.equal(await evaluate(['install-watches', '--config', config, ...flags], deps), EXIT.config)
  t.match(deps.rec.stdout.join(''), /✗ consul validate .*tenant failed; .*put back as they were:\n[\s\S]*invalid config key nosuch_key/)
  t.equal(await readFile(join(agents, 'tenant', 'masakari-consul-tenant.json'), 'utf8'), '{"watches": []}\n', 'the previous file is back')
  t.notMatch(deps.rec.stdout.join(''), /consul reload/, 'no reload suggested')
})

t.test('no consul binary: exit 69, nothing left behind', async (t) => {
  const { config, flags, agents } = await setup(t)
  const deps = fakeDeps()
  t.equal(await evaluate(['install-watches', '--consul', '/nonexistent/consul', '--config', config, ...flags], deps), EXIT.consul)
  t.match(deps.rec.stdout.join(''), /cannot run \/nonexistent\/consul/)
  for (const n of NETWORKS) t.same(await readdir(join(agents, n)), ['agent.json'])
})

t.test('a missing agent config dir and bad --agent-config-dir values are usage errors', async (t) => {
  const { config } = await setup(t)
  const deps = fakeDeps()
  t.equal(await evaluate(['install-watches', '--config', config, '--agent-config-dir', 'management=/nonexistent/m'], deps), EXIT.usage)
  t.match(
    deps.rec.stderr.join(''),
    /no such agent config directory: \/nonexistent\/m, \/etc\/consul\.d\/tenant|no such agent config directory: \/nonexistent\/m/,
  )
  t.throws(
    () => parseAgentDirs(['mgmt=/x', 'storage', 'tenant=/a', 'tenant=/b']),
    /"mgmt=\/x": expected NETWORK=DIR.*"storage": expected.*tenant: given twice/,
  )
  t.same(parseAgentDirs(['storage=/etc/consul.d/s']), { storage: '/etc/consul.d/s' })
})

t.test('the node the watches will run is checked first: runs, new enough, not hidden from the agents', async (t) => {
  const answers: Record<string, { code: number; output: string } | Error> = {
    '/usr/bin/node': { code: 0, output: 'v20.20.2\n' },
    '/usr/local/bin/node22': { code: 0, output: 'v22.1.0\n' },
    '/usr/bin/node18': { code: 0, output: 'v18.19.0\n' },
    '/root/.nvm/versions/node/v20.1.0/bin/node': { code: 0, output: 'v20.1.0\n' },
    '/home/op/node': { code: 0, output: 'v16.0.0\n' },
    '/opt/broken-node': { code: 127, output: 'error while loading shared libraries' },
    '/nonexistent/node': Object.assign(new Error('spawn /nonexistent/node ENOENT'), { code: 'ENOENT' }),
  }
  const exec = async (file: string) => {
    const a = answers[file]!
    if (a instanceof Error) throw a
    return a
  }
  const cases: Array<[string, RegExp[]]> = [
    ['/usr/bin/node', []],
    ['/usr/local/bin/node22', []],
    ['/usr/bin/node18', [/is v18\.19\.0; masakari-consul needs node 20 or later/]],
    ['/root/.nvm/versions/node/v20.1.0/bin/node', [/under \/root or \/home.*ProtectHome=yes/]],
    ['/home/op/node', [/under \/root or \/home/, /is v16\.0\.0/]],
    ['/opt/broken-node', [/--version exited 127: error while loading shared libraries/]],
    ['/nonexistent/node', [/cannot run \/nonexistent\/node: spawn \/nonexistent\/node ENOENT/]],
  ]
  for (const [node, want] of cases) t.match(await nodeProblems(node, { exec }), want, node)
  for (const [node, want] of cases) t.equal((await nodeProblems(node, { exec })).length, want.length, `${node}: ${want.length} problem(s)`)
})

t.test('install-watches with a node the agents cannot run writes nothing and says why', async (t) => {
  const { config, flags, agents } = await setup(t)
  const deps = fakeDeps()
  const code = await evaluate(['install-watches', '--config', config, '--node', '/nonexistent/node', ...flags], deps)
  t.equal(code, EXIT.usage)
  t.match(deps.rec.stderr.join(''), /--node: cannot run \/nonexistent\/node/)
  for (const n of NETWORKS) t.same(await readdir(join(agents, n)), ['agent.json'], `${n}: nothing written`)
})

t.test("an agent's /v1/agent/self says whether it runs script checks", async (t) => {
  const self = (local: unknown, remote?: unknown) =>
    JSON.stringify({
      Config: { Version: '1.8.7' },
      DebugConfig: { EnableLocalScriptChecks: local, ...(remote === undefined ? {} : { EnableRemoteScriptChecks: remote }) },
    })
  const cases: Array<[string, string, boolean | undefined]> = [
    ['local script checks on', self(true), true],
    ['off', self(false, false), false],
    ['remote ones on (they include local)', self(false, true), true],
    ['no DebugConfig (not an agent)', '{"Config":{}}', undefined],
    ['not JSON', 'Permission denied', undefined],
  ]
  for (const [what, text, want] of cases) t.equal(runsScriptChecks(text), want, what)
})

t.test(
  'the printed steps restart the pulse agent when it runs no script checks (a reload would fail and keep the old config)',
  async (t) => {
    const agents = { management: '192.0.2.1:8500', tenant: '192.0.2.2:8500', storage: '192.0.2.3:8500' }
    const run = async (local: boolean | undefined) => {
      const { config, flags } = await setup(t, { consul: { agents, lock: { enabled: false } } })
      const deps = fakeDeps({
        fetch: async (url) =>
          local !== undefined && url === 'http://192.0.2.1:8500/v1/agent/self'
            ? response(200, { DebugConfig: { EnableLocalScriptChecks: local } })
            : response(500, 'no'),
      })
      t.equal(await evaluate(['install-watches', '--config', config, ...flags], deps), EXIT.ok, deps.rec.stderr.join(''))
      return deps.rec.stdout.join('')
    }
    const off = await run(false)
    t.match(off, /\n {2}systemctl restart consul-management\n {4}the management agent runs no script checks yet: restart it once/)
    t.notMatch(off, /consul reload -http-addr=192\.0\.2\.1:8500/, 'no reload for it: it would fail')
    t.match(off, /consul reload -http-addr=192\.0\.2\.2:8500\n/, 'the others are reloaded')
    const on = await run(true)
    t.match(on, /consul reload -http-addr=192\.0\.2\.1:8500\n/)
    t.notMatch(on, /systemctl restart/)
    const unknown = await run(undefined)
    t.match(
      unknown,
      /consul reload -http-addr=192\.0\.2\.1:8500\n {4}or, if the management agent was started without script checks, instead: systemctl restart consul-management/,
    )
  },
)

/** The agents' addresses the token tests give; the management one is asked by the fetch given. */
const ADDRS = { management: '192.0.2.1:8500', tenant: '192.0.2.2:8500', storage: '192.0.2.3:8500' }
const SECRET = '7c0ffee0-aaaa-bbbb-cccc-000000000001'
/** Printed once when the watches carry a token and this shell has no token for `consul reload`. */
const NO_RELOAD_TOKEN =
  /^! ACLs on: set CONSUL_HTTP_TOKEN_FILE \(or CONSUL_HTTP_TOKEN\) to a token with agent:write on these agents before the reload lines/m

/** install-watches with the agents at ADDRS (the management one runs script checks); what it printed and wrote, and the requests made. */
async function install(
  t: Test,
  consul: Record<string, unknown>,
  argv: string[] | ((dir: string) => string[]) = [],
  before?: (agents: string) => Promise<void>,
  env: Record<string, string> = {},
) {
  const { dir, config, flags, agents } = await setup(t, { consul: { agents: ADDRS, lock: { enabled: false }, ...consul } })
  await before?.(agents)
  const deps = fakeDeps({ env })
  deps.fetch = async () =>
    scriptedFetch(deps.rec, async (url) =>
      url === 'http://192.0.2.1:8500/v1/agent/self'
        ? response(200, { DebugConfig: { EnableLocalScriptChecks: true } })
        : response(500, 'no'),
    )
  const more = typeof argv === 'function' ? argv(dir) : argv
  const code = await evaluate(['install-watches', '--config', config, ...flags, ...more], deps)
  const watch = async (n: string) => JSON.parse(await readFile(join(agents, n, `masakari-consul-${n}.json`), 'utf8'))
  return { code, dir, config, agents, deps, out: deps.rec.stdout.join(''), err: deps.rec.stderr.join(''), watch }
}

t.test(
  "the token of the config's consul.tokenFile (relative to the config): in each watch, named by the printed steps, never printed",
  async (t) => {
    const r = await install(t, { tokenFile: 'consul-token' }, [], async (agents) =>
      writeFile(join(agents, '..', 'consul-token'), `${SECRET}\n`),
    )
    t.equal(r.code, EXIT.ok, r.err)
    for (const n of NETWORKS) t.equal((await r.watch(n)).watches[0].token, SECRET, `${n}: the watch carries it, trimmed`)
    const pulse = JSON.parse(await readFile(join(r.agents, 'management', 'masakari-consul-pulse.json'), 'utf8'))
    t.equal(pulse.check.token, SECRET, 'the pulse check too: the agent registers it in the catalog with it (ACLs)')
    t.notOk(r.out.includes(SECRET), 'the secret is not printed')
    t.match(r.out, NO_RELOAD_TOKEN)
    for (const a of Object.values(ADDRS)) t.ok(r.out.includes(`  consul reload -http-addr=${a}\n`), `${a}: runnable as printed`)
    t.equal(r.out.split('ACLs on').length, 2, 'the note once')
    t.ok(r.out.indexOf('ACLs on') < r.out.indexOf('consul reload'), 'before the reloads')
    t.equal(r.deps.rec.requests[0]?.headers['X-Consul-Token'], SECRET, '/v1/agent/self is asked with it')
  },
)

t.test("the operator's token in this shell (CONSUL_HTTP_TOKEN_FILE): the reloads take it; no warning", async (t) => {
  const r = await install(t, { token: SECRET }, [], undefined, { CONSUL_HTTP_TOKEN_FILE: '/root/.consul-operator-token' })
  t.equal(r.code, EXIT.ok, r.err)
  t.notMatch(r.out, NO_RELOAD_TOKEN)
  t.match(r.out, /^ {4}\(ACLs on: consul reload takes your token from CONSUL_HTTP_TOKEN_FILE; it needs agent:write/m)
  t.ok(r.out.includes(`  consul reload -http-addr=${ADDRS.tenant}\n`))
})

t.test("a watch or pulse holding the token is 0640 with the state directory's group", async (t) => {
  const r = await install(t, { token: SECRET }, [], async (agents) => chown(join(agents, '..', 'state'), 0, 65534))
  t.equal(r.code, EXIT.ok, r.err)
  for (const n of NETWORKS) {
    const s = await stat(join(r.agents, n, `masakari-consul-${n}.json`))
    t.same([s.mode & 0o777, s.gid], [0o640, 65534], `${n}: 0640, the agents' group`)
  }
  const pulse = await stat(join(r.agents, 'management', 'masakari-consul-pulse.json'))
  t.same([pulse.mode & 0o777, pulse.gid], [0o640, 65534], 'the pulse holds it too')
})

t.test('a watch holding the token and no state directory yet: refused before anything is written', async (t) => {
  const r = await install(t, { token: SECRET }, [], async (agents) => rm(join(agents, '..', 'state'), { recursive: true }))
  t.equal(r.code, EXIT.usage)
  t.match(
    r.err,
    /holds the ACL token, readable only by the agents' group, taken from the state directory: ENOENT.*\(create it, owned by the agents' user, first\)/,
  )
  for (const n of NETWORKS) t.same(await readdir(join(r.agents, n)), ['agent.json'], `${n}: nothing written`)
})

t.test('the inline consul.token: in each watch; the printed steps do not show it', async (t) => {
  const r = await install(t, { token: SECRET })
  t.equal(r.code, EXIT.ok, r.err)
  for (const n of NETWORKS) t.equal((await r.watch(n)).watches[0].token, SECRET, n)
  t.notOk(r.out.includes(SECRET))
  t.match(r.out, NO_RELOAD_TOKEN)
  t.ok(r.out.includes(`  consul reload -http-addr=${ADDRS.tenant}\n`))
  t.equal(r.deps.rec.requests[0]?.headers['X-Consul-Token'], SECRET)
})

t.test("--token-file replaces the config's token (its tokenFile is not even read)", async (t) => {
  const mine = (dir: string) => ['--token-file', join(dir, 'mine.token')]
  const write = (agents: string) => writeFile(join(agents, '..', 'mine.token'), 'from-the-option\n')
  const r = await install(t, { tokenFile: '/nonexistent/consul-token' }, mine, write)
  t.equal(r.code, EXIT.ok, r.err)
  for (const n of NETWORKS) t.equal((await r.watch(n)).watches[0].token, 'from-the-option', n)
  t.notOk(r.out.includes('from-the-option'))
  t.ok(r.out.includes(`  consul reload -http-addr=${ADDRS.storage}\n`))
  const inline = await install(t, { token: SECRET }, mine, write)
  t.equal((await inline.watch('tenant')).watches[0].token, 'from-the-option', 'over consul.token too')
})

t.test('without a token anywhere, a token an installed watch already carries is kept, and said', async (t) => {
  const r = await install(t, {}, [], async (agents) => {
    const old = { watches: [{ type: 'checks', args: ['/bin/true'], token: 'put-in-by-hand' }] }
    await writeFile(join(agents, 'tenant', 'masakari-consul-tenant.json'), JSON.stringify(old))
  })
  t.equal(r.code, EXIT.ok, r.err)
  t.equal((await r.watch('tenant')).watches[0].token, 'put-in-by-hand', 'kept')
  t.equal((await r.watch('tenant')).watches[0].args[0], '/bin/sh', 'the rest is the new watch')
  t.notOk('token' in (await r.watch('storage')).watches[0], 'none where there was none')
  t.match(
    r.out,
    new RegExp(
      `! kept the ACL token already in ${join(r.agents, 'tenant', 'masakari-consul-tenant.json')}: neither --token-file nor consul.tokenFile / consul.token of .*config\\.yaml gives one; put it in a file named by consul.tokenFile`,
    ),
  )
  t.notOk(r.out.includes('put-in-by-hand'), 'not printed')
  t.match(r.out, NO_RELOAD_TOKEN, "the agents' ACLs are on: the reloads need a token")
  const given = await install(t, { token: SECRET }, [], async (agents) => {
    await writeFile(join(agents, 'tenant', 'masakari-consul-tenant.json'), JSON.stringify({ watches: [{ token: 'old' }] }))
  })
  t.equal((await given.watch('tenant')).watches[0].token, SECRET, 'a token given replaces the installed one')
  t.notMatch(given.out, /! kept/)
})

t.test('no token at all: the watches carry none and the printed steps are as without ACLs', async (t) => {
  const r = await install(t, {})
  t.equal(r.code, EXIT.ok, r.err)
  for (const n of NETWORKS) t.notOk('token' in (await r.watch(n)).watches[0], n)
  t.ok(r.out.includes(`\n  consul reload -http-addr=${ADDRS.management}\n`))
  t.ok(r.out.includes(`\n  consul reload -http-addr=${ADDRS.storage}\n`))
  t.notMatch(r.out, /CONSUL_HTTP_TOKEN|! kept/)
  t.notOk('X-Consul-Token' in (r.deps.rec.requests[0]?.headers ?? {}), 'nor is one sent')
})

t.test('--dry-run shows where the token comes from, not the token', async (t) => {
  const r = await install(t, { token: SECRET }, ['--dry-run'])
  t.equal(r.code, EXIT.ok, r.err)
  t.notOk(r.out.includes(SECRET))
  t.match(r.out, /"token": "<the token of consul\.token of .*config\.yaml>"/)
})

t.test('an unreadable or empty token file: a clear error naming it, nothing written', async (t) => {
  const cases: Array<[Record<string, unknown>, string[], number, RegExp]> = [
    [
      { tokenFile: 'no-such-token' },
      [],
      EXIT.config,
      /invalid config .*config\.yaml:\n {2}- consul\.tokenFile: cannot read \/.*\/no-such-token: ENOENT/,
    ],
    [{}, ['--token-file', '/nonexistent/t'], EXIT.usage, /--token-file: cannot read \/nonexistent\/t: ENOENT/],
    [{ tokenFile: 'empty' }, [], EXIT.config, /consul\.tokenFile: \/.*\/empty is empty/],
  ]
  for (const [consul, argv, code, message] of cases) {
    const r = await install(t, consul, argv, async (agents) => writeFile(join(agents, '..', 'empty'), '\n'))
    t.equal(r.code, code, String(message))
    t.match(r.err, message)
    for (const n of NETWORKS) t.same(await readdir(join(r.agents, n)), ['agent.json'], `${n}: nothing written`)
  }
})

t.test('an agent that answers 403 to /v1/agent/self: both ways printed, and why it could not be asked', async (t) => {
  const run = async (consul: Record<string, unknown>) => {
    const { config, flags } = await setup(t, { consul: { agents: ADDRS, lock: { enabled: false }, ...consul } })
    const deps = fakeDeps()
    deps.fetch = async () => scriptedFetch(deps.rec, async () => response(403, 'Permission denied'))
    t.equal(await evaluate(['install-watches', '--config', config, ...flags], deps), EXIT.ok, deps.rec.stderr.join(''))
    return deps.rec.stdout.join('')
  }
  const withToken = await run({ token: SECRET })
  t.match(withToken, /\n {2}consul reload -http-addr=192\.0\.2\.1:8500\n {4}or, if the management agent was/)
  t.match(
    withToken,
    /restart consul-management .*\n {4}the management agent answered 403 to \/v1\/agent\/self, so it could not say which: the token of consul\.token of \S*config\.yaml lacks agent:read \(consul-config\/acl\/masakari-consul\.hcl\)\n/,
  )
  const without = await run({})
  t.match(
    without,
    / {4}the management agent answered 403 to \/v1\/agent\/self, so it could not say which: the watches have no ACL token \(give consul\.tokenFile or --token-file\)\n/,
  )
  t.match(without, /consul reload -http-addr=192\.0\.2\.1:8500\n {4}or, if/)
})

t.test("deniedTo: the mode bits of the file and every directory above it, for the agents' user", async (t) => {
  const dir = (mode: number, uid = 0, gid = 0) => ({ path: `/d${mode.toString(8)}`, uid, gid, mode })
  const consul = { uid: 102, gid: 105 }
  const cases: Array<[string, ReturnType<typeof dir>[], { uid: number; gid: number }, string | undefined]> = [
    ['others may run it', [dir(0o755), dir(0o755)], consul, undefined],
    ['a 0700 root directory above it', [dir(0o755), dir(0o700)], consul, '/d700'],
    ['the file not executable by others', [dir(0o754), dir(0o755)], consul, '/d754'],
    ['group x only, the agents group', [dir(0o750, 0, 105), dir(0o755)], consul, undefined],
    ['owner x only, the agents user', [dir(0o700, 102, 0), dir(0o755)], consul, undefined],
    ['owner x only, someone else', [dir(0o700, 7, 105), dir(0o755)], consul, '/d700'],
    ['root may run anything', [dir(0o700, 7, 7)], { uid: 0, gid: 0 }, undefined],
  ]
  for (const [what, chain, who, want] of cases) t.equal(deniedTo(chain, who), want, what)
})

t.test("a node the agents' user (the state directory's owner) cannot run: refused, nothing written", async (t) => {
  const { dir, config, flags, agents } = await setup(t)
  await chown(join(dir, 'state'), 65534, 65534)
  const node = join(dir, 'private', 'node')
  await mkdir(join(dir, 'private'), { mode: 0o700 })
  await writeFile(node, '#!/bin/sh\necho v20.19.0\n', { mode: 0o755 })
  const deps = fakeDeps()
  t.equal(await evaluate(['install-watches', '--config', config, '--node', node, ...flags], deps), EXIT.usage)
  t.match(
    deps.rec.stderr.join(''),
    new RegExp(
      `the agents' user \\(uid 65534, the owner of .*state\\) cannot run ${node}: ${join(dir, 'private')} denies it \\(mode 700\\)`,
    ),
  )
  for (const n of NETWORKS) t.same(await readdir(join(agents, n)), ['agent.json'], `${n}: nothing written`)
  await chmod(join(dir, 'private'), 0o755)
  const ok = fakeDeps()
  t.equal(await evaluate(['install-watches', '--config', config, '--node', node, ...flags], ok), EXIT.ok, ok.rec.stderr.join(''))
})
