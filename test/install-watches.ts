/**
 * install-watches into temporary agent config dirs, checked by the real `consul validate` (no
 * agent runs: it only reads the directory).
 */
import t, { type Test } from 'tap'
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main as evaluate } from '../handlers/operator-cli.js'
import { EXIT } from '../lib/run/cli.js'
import { nodeProblems, parseAgentDirs, runsScriptChecks } from '../lib/commands/install-watches.js'
import { NETWORKS } from '../lib/base/networks.js'
import { configYaml, fakeDeps, response } from './helpers.js'

const root = join(import.meta.dirname, '..')

/** An agent config dir per network holding the controller's agent config, as on a real controller. */
async function setup(t: Test, extra: Record<string, unknown> = {}) {
  const dir = t.testdir({ agents: { management: {}, tenant: {}, storage: {} } })
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
