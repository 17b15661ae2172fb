/**
 * The quiet run (lib/quiet-run.ts): a watch run with nothing new ends before anything is
 * loaded; every doubt makes a full run.
 */
import t, { type Test } from 'tap'
import { chmodSync, existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { isQuietRun, notePath, ownRuntimeDir, payloadDigest, seenPath } from '../lib/quiet-run.js'
import { check, configYaml, fakeDeps, payload } from './helpers.js'

const allUp = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
const cmp1Down = payload({ controller: 'passing', cmp1: 'critical', cmp2: 'passing' })
const bytes = (text: string) => Buffer.from(text)
/** Files older than the settling time, as a config is when the watches run. */
const backdate = (path: string) => utimesSync(path, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))

/** A config and strategy written a minute ago, a runtime dir of our own, three full runs done. */
async function setup(t: Test) {
  const dir = t.testdir({})
  const runtime = join(dir, 'runtime')
  const saved = process.env.XDG_RUNTIME_DIR
  process.env.XDG_RUNTIME_DIR = runtime
  t.teardown(() => {
    if (saved === undefined) delete process.env.XDG_RUNTIME_DIR
    else process.env.XDG_RUNTIME_DIR = saved
  })
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  const strategy = join(dir, 'matrix.yaml')
  writeFileSync(strategy, 'sequence: [storage]\nmatrix:\n  - { health: [down], action: [recovery] }\n')
  writeFileSync(config, configYaml(stateDir, { strategy }))
  backdate(config)
  backdate(strategy)
  const full = async (network: string, stdin: string) => {
    const deps = fakeDeps({ stdin })
    t.equal(await main(['--network', network, '--config', config], deps), 0, deps.rec.stderr.join('\n'))
  }
  for (const n of ['management', 'tenant', 'storage']) await full(n, allUp)
  const dirOf = ownRuntimeDir(join(runtime, `masakari-consul-${process.getuid?.() ?? 0}`))!
  const quiet = (stdin: string, network = 'storage') => isQuietRun(network, config, bytes(stdin), dirOf)
  return { dir, stateDir, config, strategy, full, quiet, runtime: dirOf }
}

t.test('the same payload again is quiet; a node that changed is not', async (t) => {
  const h = await setup(t)
  t.ok(h.quiet(allUp), 'same payload: quiet')
  t.notOk(h.quiet(cmp1Down), 'cmp1 down: a full run')
  t.ok(existsSync(seenPath(h.stateDir, 'storage')))
})

t.test('only what the monitor looks at counts: a service check is not, its own check is', async (t) => {
  const h = await setup(t)
  const base = JSON.parse(allUp) as unknown[]
  const serviceOutput = JSON.stringify(base.map((c) => ({ ...(c as object), Output: 'changed' })))
  t.ok(h.quiet(serviceOutput), 'outputs changed: quiet')
  const serviceCritical = JSON.stringify([...base, check('cmp1', 'critical', 'service:nova-compute')])
  t.ok(h.quiet(serviceCritical), 'a service check critical: quiet (liveness is serfHealth)')
  const maintenance = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' }, ['cmp2'])
  t.notOk(h.quiet(maintenance), 'maintenance on cmp2: a full run')
  const ownCheck = JSON.stringify([...base, check('controller', 'critical', 'masakari-consul')])
  t.notOk(h.quiet(ownCheck), "the monitor's own check (the sender lock's) changed: a full run")
})

t.test('a changed config or strategy file is never trusted', async (t) => {
  const h = await setup(t)
  writeFileSync(h.config, `${configYaml(h.stateDir, { strategy: h.strategy })}# edited\n`)
  backdate(h.config)
  t.notOk(h.quiet(allUp), 'config edited: a full run')
  await h.full('storage', allUp)
  t.ok(h.quiet(allUp), 'after one full run with it: quiet again')
  writeFileSync(h.strategy, 'sequence: [storage]\nmatrix:\n  - { health: [down], action: [] }\n')
  backdate(h.strategy)
  t.notOk(h.quiet(allUp), 'strategy edited: a full run')
})

t.test('a file changed just before a full run read it leaves no note to trust', async (t) => {
  const h = await setup(t)
  writeFileSync(h.config, `${configYaml(h.stateDir, { strategy: h.strategy })}# edited\n`) // mtime: now
  await h.full('storage', allUp)
  backdate(h.config)
  t.notOk(h.quiet(allUp), 'the note still has the old identity')
})

t.test('work waiting (the wake file) makes every run full', async (t) => {
  const h = await setup(t)
  writeFileSync(join(h.stateDir, 'wake'), `${Math.ceil(Date.now() / 1000) + 30}\n`)
  t.notOk(h.quiet(allUp))
})

t.test('a full run forgets what it saw until it has succeeded', async (t) => {
  const h = await setup(t)
  // A state.json that cannot be read: the run fails after it has forgotten the digest.
  chmodSync(h.stateDir, 0o755)
  writeFileSync(join(h.stateDir, 'state.json'), '{ torn')
  const deps = fakeDeps({ stdin: allUp })
  t.not(await main(['--network', 'storage', '--config', h.config], deps), 0, 'the run fails')
  t.notOk(existsSync(seenPath(h.stateDir, 'storage')), 'nothing seen')
  t.notOk(h.quiet(allUp), 'so the next run is full too')
})

t.test('anything the full run would refuse is a full run: it says what is wrong', async (t) => {
  const h = await setup(t)
  for (const [what, stdin] of [
    ['empty array', '[]'],
    ['not JSON', '[{'],
    ['bad status', JSON.stringify([check('cmp1', 'bogus')])],
    ['not UTF-8', '\uFFFD'],
  ] as const)
    t.notOk(h.quiet(stdin), what)
  t.notOk(isQuietRun('storage', h.config, Buffer.from([0xff, 0xfe]), h.runtime), 'invalid UTF-8')
})

t.test('a runtime directory others can write is not trusted', async (t) => {
  const h = await setup(t)
  chmodSync(h.runtime, 0o777)
  t.equal(ownRuntimeDir(h.runtime), undefined)
  chmodSync(h.runtime, 0o700)
  t.equal(ownRuntimeDir(h.runtime), h.runtime)
  mkdirSync(join(h.dir, 'not-a-dir-parent'))
  writeFileSync(join(h.dir, 'not-a-dir-parent', 'file'), '')
  t.equal(ownRuntimeDir(join(h.dir, 'not-a-dir-parent', 'file')), undefined, 'a file in its place')
  t.match(notePath(h.runtime, h.config), /%2F.*config\.yaml\.json$/, 'one note per config path')
})

t.test('the digest is exact: one line per looked-at check, in payload order', async (t) => {
  const checks = [check('a', 'passing'), check('a', 'passing', 'service:x'), check('b', 'critical', 'masakari-consul')]
  const parsed = JSON.parse(JSON.stringify(checks))
  t.equal(payloadDigest(parsed, 'masakari-consul'), 'a\tserfHealth\tpassing\nb\tmasakari-consul\tcritical\n')
  t.equal(payloadDigest(parsed, 'other'), 'a\tserfHealth\tpassing\n')
})
