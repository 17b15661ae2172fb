import t, { type Test } from 'tap'
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { EXIT } from '../lib/run/cli.js'
import { DEFAULT_CONFIG_PATH } from '../lib/config/config.js'
import { realDeps } from '../lib/commands/runtime.js'
import { check, configYaml, fakeDeps, payload, readState } from './helpers.js'

async function setup(t: Test, extra: Record<string, unknown> = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, extra))
  return { dir, stateDir, config }
}

const allUp = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
const cmp1Down = payload({ controller: 'passing', cmp1: 'critical', cmp2: 'passing' })

/** Every file of the state directory but the health note, which a refusal writes on purpose. */
async function stateFiles(stateDir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {}
  for (const name of [...(await readdir(stateDir)), ...(await readdir(join(stateDir, 'snapshots'))).map((n) => `snapshots/${n}`)].sort())
    if (name !== 'health' && name !== 'snapshots') files[name] = await readFile(join(stateDir, name), 'utf8').catch(() => '(directory)')
  return files
}

async function feed(config: string, network: string, stdin: string | Uint8Array, extraArgs: string[] = []) {
  const deps = fakeDeps({ stdin })
  const code = await main(['--network', network, '--config', config, ...extraArgs], deps)
  return { code, deps }
}

t.test('three networks all up: snapshots written, nothing queued, no worker', async (t) => {
  const { stateDir, config } = await setup(t)
  for (const n of ['management', 'tenant', 'storage']) {
    const { code, deps } = await feed(config, n, allUp)
    t.equal(code, 0, deps.rec.stderr.join('\n'))
    t.same(deps.rec.spawned, [])
  }
  t.same(
    (await readdir(join(stateDir, 'snapshots'))).sort(),
    ['management.json', 'management.seen', 'storage.json', 'storage.seen', 'tenant.json', 'tenant.seen'],
    'each network: its snapshot, and what its last successful run saw (lib/run/quiet-run.ts)',
  )
  const state = JSON.parse((await readState(stateDir))!)
  t.same(state.outbox, [])
  t.same(Object.keys(state.ledger).sort(), ['cmp1', 'cmp2'], 'own node not in the ledger')
})

t.test('storage down on cmp1 queues exactly one STOPPED and starts the worker', async (t) => {
  const { stateDir, config } = await setup(t)
  for (const n of ['management', 'tenant', 'storage']) await feed(config, n, allUp)
  const { code, deps } = await feed(config, 'storage', cmp1Down)
  t.equal(code, 0)
  t.same(deps.rec.spawned, [config])
  const state = JSON.parse((await readState(stateDir))!)
  t.equal(state.outbox.length, 1)
  t.match(state.outbox[0], { host: 'cmp1', notification: { hostname: 'cmp1', payload: { event: 'STOPPED' } } })
  const decision = deps.rec.stderr.map((l) => JSON.parse(l)).find((l) => l.msg === 'decision')
  t.match(decision, {
    host: 'cmp1',
    vector: { management: 'up', tenant: 'up', storage: 'down' },
    row: 1,
    action: 'STOPPED',
    reason: /row 1/,
  })
  t.ok(deps.rec.logFile.length > 0, 'decisions also go to the log file')
  // Consul re-runs the watch on any other change: still one.
  await feed(config, 'storage', cmp1Down)
  await feed(config, 'tenant', allUp)
  t.equal(JSON.parse((await readState(stateDir))!).outbox.length, 1)
})

t.test('--dry-run prints decisions and writes nothing', async (t) => {
  const { stateDir, config } = await setup(t)
  for (const n of ['management', 'tenant']) await feed(config, n, allUp)
  const before = await readState(stateDir)
  const snap = await readFile(join(stateDir, 'snapshots', 'management.json'), 'utf8')
  const { code, deps } = await feed(config, 'storage', cmp1Down, ['--dry-run'])
  t.equal(code, 0)
  t.match(deps.rec.stdout.join(''), /cmp1\tmanagement=up tenant=up storage=down\twould send STOPPED/)
  t.equal(await readState(stateDir), before)
  t.equal(await readFile(join(stateDir, 'snapshots', 'management.json'), 'utf8'), snap)
  t.rejects(readFile(join(stateDir, 'snapshots', 'storage.json')))
  t.same(deps.rec.spawned, [])
})

// Bad input: clear error, non-zero exit, state as it was.
const badStdin: Array<[string, string | Uint8Array, RegExp]> = [
  [
    'invalid UTF-8',
    Buffer.concat([Buffer.from(cmp1Down.slice(0, 30)), Buffer.from([0xc3, 0x28]), Buffer.from(cmp1Down.slice(30))]),
    /not valid UTF-8/,
  ],
  [
    'a node name with a newline',
    payload({ controller: 'passing', 'cmp1\nFAKE LOG LINE': 'critical' }),
    /node "cmp1\\nFAKE LOG LINE"\): Node: contains a control character/,
  ],
  ['a node name over 255 bytes', payload({ controller: 'passing', ['x'.repeat(300)]: 'critical' }), /Node: longer than 255 bytes/],
  ['truncated JSON', cmp1Down.slice(0, 100), /not valid JSON/],
  ['malformed JSON', '[{"Node": cmp1}]', /not valid JSON/],
  ['a non-array', '{"checks": []}', /must be a JSON array/],
  ['an unknown check status', JSON.stringify([{ Node: 'cmp1', CheckID: 'serfHealth', Status: 'down' }]), /Status/],
  ['missing fields', JSON.stringify([{ Node: 'cmp1' }]), /CheckID/],
  ['empty stdin', '', /stdin is empty/],
]
for (const [name, stdin, message] of badStdin) {
  t.test(`bad stdin: ${name}`, async (t) => {
    const { stateDir, config } = await setup(t)
    for (const n of ['management', 'tenant', 'storage']) await feed(config, n, allUp)
    await feed(config, 'storage', cmp1Down)
    const state = await readState(stateDir)
    const snap = await readFile(join(stateDir, 'snapshots', 'storage.json'), 'utf8')
    const { code, deps } = await feed(config, 'storage', stdin)
    t.equal(code, EXIT.badInput)
    t.match(deps.rec.stderr.at(-1), message)
    t.match(deps.rec.stderr.at(-1), /^checks-handler: error:/)
    t.notMatch(deps.rec.stderr.at(-1), /\n/, 'one line')
    t.equal(await readState(stateDir), state, 'ledger and outbox unchanged')
    t.equal(await readFile(join(stateDir, 'snapshots', 'storage.json'), 'utf8'), snap, 'snapshot unchanged')
    t.same(deps.rec.spawned, [])
  })
}

// With Consul ACLs on, a watch token without node:read gets a payload that hides nodes: the
// controller's own node missing says so (it is in every cluster it watches).
const blindPayloads: Array<[string, string, RegExp]> = [
  ['an empty list', '[]', /lists no check at all, not even this controller's own node \(controller\)/],
  [
    "checks of other nodes, not the controller's own",
    payload({ cmp1: 'passing', cmp2: 'critical' }),
    /does not show this controller's own node controller/,
  ],
  [
    "the controller's service checks but not its serfHealth",
    JSON.stringify([check('controller', 'passing', 'service:consul'), check('cmp1', 'critical')]),
    /does not show this controller's own node controller/,
  ],
]
for (const [name, stdin, message] of blindPayloads) {
  t.test(`a payload that cannot see nodes is refused, naming the ACL rule: ${name}`, async (t) => {
    const { stateDir, config } = await setup(t)
    for (const n of ['management', 'tenant', 'storage']) await feed(config, n, allUp)
    const before = await stateFiles(stateDir)
    const { code, deps } = await feed(config, 'storage', stdin)
    t.equal(code, EXIT.badInput)
    t.match(deps.rec.stderr.at(-1), /^checks-handler: error: the storage watch's payload /)
    t.match(deps.rec.stderr.at(-1), message)
    t.match(deps.rec.stderr.at(-1), /node_prefix "" \{ policy = "read" \}/)
    const logged = deps.rec.logFile.map((l) => JSON.parse(l)).find((l) => l.level === 'error')
    t.match(logged, { msg: "checks payload without this controller's own node refused", network: 'storage', reason: message })
    t.match(
      await readFile(join(stateDir, 'health'), 'utf8'),
      /^critical\nthe storage watch's payload .*node_prefix "" \{ policy = "read" \}/,
    )
    t.same(await stateFiles(stateDir), before, 'snapshots, seen notes and state.json unchanged')
    t.same(deps.rec.spawned, [])
  })
}

t.test('invalid config: every problem reported, nothing written', async (t) => {
  const dir = t.testdir({
    'config.yaml': 'stateDir: ./state\nfirstSight: sometimes\nmasakari:\n  authUrl: not-a-url\n  auth: {username: u}\n',
  })
  const { code, deps } = await feed(join(dir, 'config.yaml'), 'storage', allUp)
  t.equal(code, EXIT.config)
  const err = deps.rec.stderr.join('\n')
  t.match(err, /config\.yaml/)
  t.match(err, /firstSight/)
  t.match(err, /masakari\.authUrl/)
  t.rejects(readdir(join(dir, 'state')), 'no state dir created')
})

t.test('invalid strategy file: named with row and reason, nothing written', async (t) => {
  const dir = t.testdir({ 'strategy.yaml': 'sequence: [manage, storage]\nmatrix:\n  - {health: [up, down, down], action: [recovery]}\n' })
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(join(dir, 'state'), { strategy: 'strategy.yaml' }))
  const { code, deps } = await feed(config, 'storage', cmp1Down)
  t.equal(code, EXIT.config)
  t.match(deps.rec.stderr.join('\n'), /strategy\.yaml[\s\S]*matrix row 1 .*3 health values but sequence has 2/)
  t.rejects(readdir(join(dir, 'state')))
})

t.test('corrupt state file: clear error, file left for the operator, the snapshot not written either', async (t) => {
  const { stateDir, config } = await setup(t)
  await feed(config, 'storage', allUp)
  const snap = await readFile(join(stateDir, 'snapshots', 'storage.json'), 'utf8')
  await writeFile(join(stateDir, 'state.json'), '{"version":1,"ledger":')
  const { code, deps } = await feed(config, 'storage', cmp1Down)
  t.equal(code, EXIT.stateFile)
  t.match(deps.rec.stderr.at(-1), /state\.json: not valid JSON/)
  t.equal(await readState(stateDir), '{"version":1,"ledger":')
  t.equal(await readFile(join(stateDir, 'snapshots', 'storage.json'), 'utf8'), snap, 'snapshot unchanged')
  const fresh = await feed(config, 'tenant', cmp1Down)
  t.equal(fresh.code, EXIT.stateFile)
  t.same((await readdir(join(stateDir, 'snapshots'))).sort(), ['storage.json'], 'no snapshot for a first run that failed')
})

t.test("another network's corrupt snapshot: clear error, this network's snapshot not written", async (t) => {
  const { stateDir, config } = await setup(t)
  for (const n of ['management', 'storage']) await feed(config, n, allUp)
  const state = await readState(stateDir)
  const snap = await readFile(join(stateDir, 'snapshots', 'storage.json'), 'utf8')
  await writeFile(join(stateDir, 'snapshots', 'management.json'), '{"version":1,')
  const { code, deps } = await feed(config, 'storage', cmp1Down)
  t.equal(code, EXIT.stateFile)
  t.match(deps.rec.stderr.at(-1), /management\.json: not valid JSON/)
  t.equal(await readFile(join(stateDir, 'snapshots', 'storage.json'), 'utf8'), snap)
  t.equal(await readState(stateDir), state)
})

t.test('no --network: usage error naming the choices, nothing run', async (t) => {
  const { config } = await setup(t)
  const deps = fakeDeps()
  t.equal(await main(['--config', config], deps), EXIT.usage)
  t.match(deps.rec.stderr.join(''), /--network is required \(one of management, tenant, storage\)/)
  t.same(deps.rec.logFile, [], 'no run logged')
})

t.test('--network without a value or with an unknown one: usage error', async (t) => {
  const { config } = await setup(t)
  for (const argv of [
    ['--network', '--config', config],
    ['--network', 'backup', '--config', config],
  ]) {
    const deps = fakeDeps()
    t.equal(await main(argv, deps), EXIT.usage, argv.join(' '))
    t.match(deps.rec.stderr.join(''), /Choices: "management", "tenant", "storage"/)
  }
})

t.test('no --config: the default config path is the one read', async (t) => {
  const { stateDir, config } = await setup(t)
  const deps = fakeDeps({ stdin: allUp })
  const read: string[] = []
  const text = await readFile(config, 'utf8')
  deps.configEnv.readFile = async (path) => {
    read.push(path)
    return text
  }
  t.equal(await main(['--network', 'storage'], deps), 0, deps.rec.stderr.join('\n'))
  t.same(read, [DEFAULT_CONFIG_PATH])
  t.ok(await readState(stateDir), 'the run used it')
})

t.test('--config without a value: usage error; the default config is not used instead', async (t) => {
  const deps = fakeDeps({ stdin: allUp })
  const read: string[] = []
  deps.configEnv.readFile = async (path) => {
    read.push(path)
    throw new Error('not to be read')
  }
  t.equal(await main(['--network', 'storage', '--config'], deps), EXIT.usage)
  t.match(deps.rec.stderr.join(''), /Not enough arguments following: config/)
  t.same(read, [])
})

t.test('a config file that does not exist: config error naming it, nothing written', async (t) => {
  const dir = t.testdir({})
  const deps = fakeDeps({ stdin: allUp })
  t.equal(await main(['--network', 'storage', '--config', join(dir, 'missing.yaml')], deps), EXIT.config)
  t.match(deps.rec.stderr.at(-1), /invalid config .*missing\.yaml/)
  t.match(deps.rec.stderr.join('\n'), /cannot read it: ENOENT/)
  t.same(await readdir(dir), [])
})

t.test('--help: exit 0, nothing run', async (t) => {
  const help = fakeDeps()
  t.equal(await main(['--help'], help), 0, '--help is not an error')
  t.same(help.rec.spawned, [])
  t.same(help.rec.logFile, [])
})

t.test('state directory that cannot be written: clear error naming the path, nothing half-written', async (t) => {
  const dir = t.testdir({ 'not-a-dir': 'a file where the state directory should be' })
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(join(dir, 'not-a-dir')))
  const { code, deps } = await feed(config, 'storage', cmp1Down)
  t.equal(code, EXIT.stateFile)
  t.match(deps.rec.stderr.at(-1), /checks-handler: error: .*(ENOTDIR|EEXIST).*not-a-dir/)
  t.equal(await readFile(join(dir, 'not-a-dir'), 'utf8'), 'a file where the state directory should be')
  t.same(deps.rec.spawned, [])
})

// Prototype-named nodes: kept by the handler's edge (stdin → snapshot) and by the evaluator's and
// the ledger's tables (Maps and null-prototype records), through state.json and back.
const protoNames = ['constructor', 'toString', 'hasOwnProperty', '__proto__']
const protoPayload = (down: string[]) =>
  JSON.stringify(['controller', 'cmp1', ...protoNames].map((n) => check(n, down.includes(n) ? 'critical' : 'passing')))

t.test('prototype-named nodes: the snapshot keeps every one of them', async (t) => {
  const { stateDir, config } = await setup(t)
  const { code, deps } = await feed(config, 'storage', protoPayload(['constructor', '__proto__']))
  t.equal(code, 0, deps.rec.stderr.join('\n'))
  const snap = JSON.parse(await readFile(join(stateDir, 'snapshots', 'storage.json'), 'utf8'))
  t.same(Object.keys(snap.nodes), ['controller', 'cmp1', ...protoNames])
  t.equal(Object.getOwnPropertyDescriptor(snap.nodes, '__proto__')?.value, 'down')
  t.equal(snap.nodes.constructor, 'down')
})

t.test('prototype-named nodes: decisions and the ledger round-trip through state.json', async (t) => {
  const { stateDir, config } = await setup(t)
  for (const n of ['management', 'tenant', 'storage']) {
    const { code, deps } = await feed(config, n, protoPayload([]))
    t.equal(code, 0, deps.rec.stderr.join('\n'))
  }
  const { code } = await feed(config, 'storage', protoPayload(['constructor', '__proto__']))
  t.equal(code, 0)
  const state = JSON.parse((await readState(stateDir))!)
  t.same(Object.keys(state.ledger).sort(), ['cmp1', ...protoNames].sort())
  t.same(state.outbox.map((e: { host: string }) => e.host).sort(), ['__proto__', 'constructor'])
})

t.test('logFile is a symlink: nothing written through it, the decision still made, exit 74, the health note says why', async (t) => {
  const { dir, stateDir, config } = await setup(t)
  await writeFile(join(dir, 'target.txt'), 'precious\n')
  await mkdir(stateDir, { recursive: true })
  await symlink(join(dir, 'target.txt'), join(stateDir, 'decisions.log'))
  for (const n of ['management', 'tenant', 'storage']) await feed(config, n, allUp)
  const deps = fakeDeps({ stdin: cmp1Down })
  deps.appendLog = realDeps().appendLog
  t.equal(await main(['--network', 'storage', '--config', config], deps), EXIT.stateFile)
  t.equal(await readFile(join(dir, 'target.txt'), 'utf8'), 'precious\n')
  const warnings = deps.rec.stderr.filter((l) => /^\{.*cannot append to logFile/.test(l))
  t.equal(warnings.length, 1, 'said once in the log on stderr')
  t.match(JSON.parse(warnings[0]!), { level: 'error', logFile: join(stateDir, 'decisions.log'), error: /is a symlink/ })
  t.ok(
    deps.rec.stderr.some((l) => /"msg":"evaluated"/.test(l)),
    'the run went on',
  )
  t.equal(JSON.parse((await readState(stateDir))!).outbox.length, 1, 'the decision is recorded')
  t.match(deps.rec.stderr.at(-1), /^checks-handler: error: decisions were recorded, but: cannot append to logFile .*decisions\.log/)
  t.match(await readFile(join(stateDir, 'health'), 'utf8'), /^warning\ncannot append to logFile .*is a symlink/)
})

t.test(
  "logFile that cannot be opened (as Consul's user: EACCES; here a file in its directory's place): exit 74, health at warning",
  async (t) => {
    const { dir, stateDir, config } = await setup(t, { logFile: 'not-a-dir/decisions.log' })
    await writeFile(join(dir, 'not-a-dir'), '')
    for (const n of ['management', 'tenant']) await feed(config, n, allUp)
    const deps = fakeDeps({ stdin: allUp })
    deps.appendLog = realDeps().appendLog
    t.equal(await main(['--network', 'storage', '--config', config], deps), EXIT.stateFile)
    t.match(
      await readFile(join(stateDir, 'health'), 'utf8'),
      /^warning\ncannot append to logFile .*not-a-dir\/decisions\.log \((EEXIST|ENOTDIR)/,
    )
    t.ok(await readFile(join(stateDir, 'snapshots', 'storage.json')), 'the snapshot is written')
  },
)

t.test('--pulse with an unwritable logFile: exit 0 (a critical check would end the sender session), health note at warning', async (t) => {
  const { dir, stateDir, config } = await setup(t, { logFile: 'not-a-dir/decisions.log' })
  await writeFile(join(dir, 'not-a-dir'), '')
  for (const n of ['management', 'tenant', 'storage']) await feed(config, n, allUp)
  const deps = fakeDeps()
  deps.appendLog = realDeps().appendLog
  t.equal(await main(['--pulse', '--config', config], deps), 0)
  t.match(await readFile(join(stateDir, 'health'), 'utf8'), /^warning\ncannot append to logFile /)
})

t.test('log.level: lines below it are not written', async (t) => {
  const { config } = await setup(t, { log: { level: 'warn' } })
  for (const n of ['management', 'tenant', 'storage']) await feed(config, n, allUp)
  const { code, deps } = await feed(config, 'storage', cmp1Down)
  t.equal(code, 0)
  const levels = deps.rec.logFile.map((l) => JSON.parse(l).level)
  t.ok(levels.length > 0, 'the STOPPED decision is a warn line')
  t.same([...new Set(levels)], ['warn'], 'no info line')
  t.same([...new Set(deps.rec.stderr.map((l) => JSON.parse(l).level))], ['warn'])
})
