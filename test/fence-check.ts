/** `masakari-consul fence-check` and validate's fence lines, in-process, against the fake fence agent. */
import t, { type Test } from 'tap'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main as evaluate } from '../handlers/operator-cli.js'
import { EXIT } from '../lib/run/cli.js'
import { fakeFenceAgent } from './fake-fence-agent.js'
import { configYaml, fakeDeps, response, scriptedFetch, keystoneAnswer } from './helpers.js'

/** A config fencing cmp1..cmp3 through the fake agent, its password in a 0600 file beside it. */
async function setup(t: Test, fencing: Record<string, unknown> = {}) {
  const dir = t.testdir({})
  const agent = await fakeFenceAgent(dir, 'hunter2')
  await writeFile(join(dir, 'fence-password'), 'hunter2\n')
  await chmod(join(dir, 'fence-password'), 0o600)
  const config = join(dir, 'config.yaml')
  const hosts = { cmp1: { ip: '127.77.0.1' }, cmp2: { ip: '127.77.0.2' }, cmp3: { ip: '127.77.0.3' } }
  const section = {
    enabled: true,
    agent: './fence_fake',
    options: { username: 'admin', lanplus: 1 },
    hosts,
    passwordFile: 'fence-password',
  }
  await writeFile(config, configYaml(join(dir, 'state'), { fencing: { ...section, ...fencing } }))
  return { dir, agent, config }
}

t.test('fence-check: every host on or off, the table, exit 0; nothing powered off', async (t) => {
  const { agent, config } = await setup(t)
  await agent.set('power-127.77.0.2', 'off')
  const deps = fakeDeps()
  t.equal(await evaluate(['fence-check', '--config', config], deps), EXIT.ok, deps.rec.stderr.join('\n'))
  t.equal(deps.rec.stdout.join(''), 'HOST  AGENT       RESULT\ncmp1  fence_fake  on\ncmp2  fence_fake  off\ncmp3  fence_fake  on\n')
  t.same((await agent.actions()).sort(), ['127.77.0.1 status', '127.77.0.2 status', '127.77.0.3 status'], 'status only, once each')
  t.notOk((await agent.cmdlines()).includes('hunter2'), 'the password read from passwordFile went on stdin only')
  t.match(await agent.stdin(), /^password=hunter2$/m)
})

t.test('fence-check: a BMC that does not answer is named with the agent’s message, exit 69; --json', async (t) => {
  const { agent, config } = await setup(t)
  await agent.set('fail-127.77.0.3', 'Failed: Unable to connect/login to fencing device')
  const deps = fakeDeps()
  t.equal(await evaluate(['fence-check', '--config', config], deps), EXIT.consul)
  t.match(deps.rec.stdout.join(''), /^cmp3 {2}fence_fake {2}error: Failed: Unable to connect\/login to fencing device \(exit 1\)$/m)
  t.match(deps.rec.stdout.join(''), /^cmp1 {2}fence_fake {2}on$/m, 'the others still checked')

  const json = fakeDeps()
  t.equal(await evaluate(['fence-check', '--json', '--action', 'monitor', '--config', config], json), EXIT.consul)
  t.same(JSON.parse(json.rec.stdout.join('')), {
    enabled: true,
    action: 'monitor',
    hosts: [
      { host: 'cmp1', agent: 'fence_fake', result: 'ok' },
      { host: 'cmp2', agent: 'fence_fake', result: 'ok' },
      { host: 'cmp3', agent: 'fence_fake', result: 'error', message: 'Failed: Unable to connect/login to fencing device (exit 1)' },
    ],
    notes: [],
    exit: EXIT.consul,
  })
  t.ok((await agent.actions()).includes('127.77.0.1 monitor'), '--action monitor asked monitor')
})

t.test('fence-check: a wrong password fails every host, in the agent’s words', async (t) => {
  const { dir, config } = await setup(t)
  await writeFile(join(dir, 'fence-password'), 'wrong\n')
  const deps = fakeDeps()
  t.equal(await evaluate(['fence-check', '--config', config], deps), EXIT.consul)
  const rows = deps.rec.stdout.join('').trim().split('\n').slice(1)
  t.equal(rows.length, 3)
  for (const r of rows) t.match(r, /fence_fake {2}error: Failed: Unable to obtain correct plug status or plug is not available \(exit 1\)$/)
})

t.test('fence-check: fencing off says so, runs nothing, exit 0', async (t) => {
  const { agent, config } = await setup(t, { enabled: false })
  const deps = fakeDeps()
  t.equal(await evaluate(['fence-check', '--config', config], deps), EXIT.ok)
  t.equal(deps.rec.stdout.join(''), 'fencing is off (fencing.enabled is false): no fence agent to check\n')
  const json = fakeDeps()
  t.equal(await evaluate(['fence-check', '--json', '--config', config], json), EXIT.ok)
  t.same(JSON.parse(json.rec.stdout.join('')), { enabled: false, hosts: [], exit: 0 })
  t.same(await agent.actions(), [])
})

const everythingAnswers = () =>
  scriptedFetch(fakeDeps().rec, (url) => {
    if (url.endsWith('/auth/tokens')) return keystoneAnswer()
    if (url.endsWith('/segments')) return response(200, { segments: [] })
    return response(404, 'no')
  })

t.test('validate: one fence line per host, naming the host, the agent and its error', async (t) => {
  const { agent, config } = await setup(t)
  await agent.set('fail-127.77.0.2', 'Failed: Unable to obtain correct plug status or plug is not available')
  const deps = fakeDeps({ fetch: everythingAnswers() })
  t.equal(await evaluate(['validate', '--config', config], deps), EXIT.consul)
  const fence = deps.rec.stdout
    .join('')
    .split('\n')
    .filter((l) => / fence /.test(l))
  t.same(fence, [
    '✓ fence cmp1 (fence_fake): the BMC answers: power on',
    '✗ fence cmp2 (fence_fake): Failed: Unable to obtain correct plug status or plug is not available (exit 1)',
    '✓ fence cmp3 (fence_fake): the BMC answers: power on',
  ])

  const off = await setup(t, { enabled: false })
  const quiet = fakeDeps({ fetch: everythingAnswers() })
  t.equal(await evaluate(['validate', '--config', off.config], quiet), EXIT.ok, quiet.rec.stdout.join(''))
  t.notMatch(quiet.rec.stdout.join(''), /^. fence /m, 'fencing off: no fence line')
  t.same(await off.agent.actions(), [])
})

const CONSUL = 'http://127.0.0.1:8500'

/**
 * fencing.template with the management agent at CONSUL_HTTP_ADDR, its catalog's node meta and
 * members as given, and a management snapshot of these nodes in the state directory.
 */
async function templated(t: Test, meta: Record<string, Record<string, string>>, nodes?: string[]) {
  const h = await setup(t, { hosts: { cmp1: { ip: '127.77.0.1' } }, template: { ip: '{meta.bmc_address}' } })
  if (nodes) {
    const snapshot = {
      version: 1,
      network: 'management',
      consulIndex: '7',
      receivedAt: '2026-11-25T11:00:00.000Z',
      nodes: {} as Record<string, string>,
    }
    for (const n of nodes) snapshot.nodes[n] = n === 'cmp4' ? 'down' : 'up'
    await mkdir(join(h.dir, 'state', 'snapshots'), { recursive: true })
    await writeFile(join(h.dir, 'state', 'snapshots', 'management.json'), JSON.stringify(snapshot))
  }
  const deps = (answer?: (path: string) => ReturnType<typeof response>) => {
    const d = fakeDeps({ fetch: (url, init) => fetch(url, init), env: { CONSUL_HTTP_ADDR: CONSUL } })
    const fetch = scriptedFetch(d.rec, (url) => {
      if (url.endsWith('/auth/tokens')) return keystoneAnswer()
      if (url.endsWith('/segments')) return response(200, { segments: [] })
      const path = url.slice(CONSUL.length)
      if (answer) return answer(path)
      if (path === '/v1/catalog/nodes')
        return response(
          200,
          Object.entries(meta).map(([Node, Meta]) => ({ Node, Address: '10.0.0.1', Meta })),
        )
      if (path === '/v1/agent/members')
        return response(200, [
          { Name: 'controller', Tags: { role: 'consul' } },
          { Name: 'ctl2', Tags: { role: 'consul' } },
          { Name: 'cmp2', Tags: { role: 'node' } },
        ])
      return response(404, 'no')
    })
    return d
  }
  return { ...h, deps }
}

t.test(
  'fence-check with a template: the management snapshot’s hosts, each with its BMC from its node meta; a missing key named',
  async (t) => {
    const meta = {
      controller: {},
      ctl2: {},
      cmp2: { bmc_address: '127.77.0.2' },
      cmp3: { bmc_address: '127.77.0.3', rack: 'r1' },
      cmp4: {},
      net1: {},
    }
    const { agent, config, deps: depsOf } = await templated(t, meta, ['controller', 'ctl2', 'cmp1', 'cmp2', 'cmp3', 'cmp4', 'cmp5', 'net1'])
    await writeFile(config, `${await readFile(config, 'utf8')}hostNames: {exclude: [net1]}\n`)
    await agent.set('power-127.77.0.3', 'off')
    const deps = depsOf()
    t.equal(await evaluate(['fence-check', '--config', config], deps), EXIT.consul, deps.rec.stderr.join('\n'))
    t.equal(
      deps.rec.stdout.join(''),
      [
        'HOST  AGENT       RESULT',
        'cmp1  fence_fake  on',
        'cmp2  fence_fake  on',
        'cmp3  fence_fake  off',
        "cmp4  fence_fake  not covered: fencing.template cannot be filled: node cmp4 has no node meta bmc_address (or it is empty) in the management agent's catalog",
        'cmp5  fence_fake  not covered: fencing.template cannot be filled: node cmp5 is not in the management agent\'s catalog (http://127.0.0.1:8500): not its Consul node name, or the agent\'s token lacks node_prefix "" { policy = "read" }',
        '',
      ].join('\n'),
      'this controller, the other Consul server and hostNames.exclude are not hosts',
    )
    t.same(
      (await agent.actions()).sort(),
      ['127.77.0.1 status', '127.77.0.2 status', '127.77.0.3 status'],
      'no agent run for a host not covered',
    )
    t.same(
      deps.rec.requests
        .filter((r) => r.url.startsWith(CONSUL))
        .map((r) => r.url.slice(CONSUL.length))
        .sort(),
      ['/v1/agent/members', '/v1/catalog/nodes'],
      'the whole catalog once, not a request per node',
    )

    const json = depsOf()
    t.equal(await evaluate(['fence-check', '--json', '--config', config], json), EXIT.consul)
    t.match(JSON.parse(json.rec.stdout.join('')).hosts[3], { host: 'cmp4', result: 'uncovered', message: /no node meta bmc_address/ })

    const validate = depsOf()
    t.equal(await evaluate(['validate', '--config', config], validate), EXIT.consul)
    const fence = validate.rec.stdout
      .join('')
      .split('\n')
      .filter((l) => / fence /.test(l))
    t.match(fence, [
      /^✓ fence cmp1 /,
      /^✓ fence cmp2 /,
      /^✓ fence cmp3 \(fence_fake\): the BMC answers: power off$/,
      /^✗ fence cmp4 \(fence_fake\): not covered: fencing\.template cannot be filled: node cmp4 has no node meta bmc_address/,
      /^✗ fence cmp5 /,
    ])
  },
)

t.test('fence-check with a template: no snapshot yet, or the agent does not answer, is said', async (t) => {
  const { config, deps: depsOf } = await templated(t, {})
  const deps = depsOf()
  t.equal(await evaluate(['fence-check', '--config', config], deps), EXIT.ok)
  t.equal(deps.rec.stdout.join(''), 'HOST  AGENT       RESULT\ncmp1  fence_fake  on\n', 'the own entries only')
  t.match(deps.rec.stderr, [
    /^warning: fencing\.template: no management snapshot yet \(.*snapshots\/management\.json\): only fencing\.hosts and fencing\.hostsFile are checked$/,
  ])

  const down = await templated(t, {}, ['controller', 'cmp2'])
  const refused = down.deps(() => response(500, 'No cluster leader'))
  t.equal(await evaluate(['fence-check', '--json', '--config', down.config], refused), EXIT.consul)
  const out = JSON.parse(refused.rec.stdout.join(''))
  t.match(out.hosts, [
    { host: 'cmp1', result: 'on' },
    {
      host: 'cmp2',
      result: 'uncovered',
      message: /^fencing\.template cannot be filled: node meta unavailable: GET .*\/v1\/catalog\/nodes answered 500/,
    },
  ])
  t.match(out.notes, [/^fencing\.template: the Consul servers could not be asked \(.*500 No cluster leader\): checked as hosts$/])
})
