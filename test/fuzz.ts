/**
 * Fuzzing the edges with fast-check, in-process (no node per case): generated stdin payloads
 * through the checks handler's main(), and generated config and strategy files through
 * loadConfig and parseStrategy. Every input is either processed correctly or rejected with
 * the documented error: never a crash, a stack trace, another exit code, or a changed state
 * directory on rejection.
 */
import t from 'tap'
import fc from 'fast-check'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { runWatch } from '../lib/run/watch-run.js'
import { EXIT, guarded } from '../lib/run/cli.js'
import { ConfigError, loadConfig } from '../lib/config/config.js'
import { CheckSchema } from '../lib/consul/consul-input.js'
import { StoreStateSchema } from '../lib/decide/state-shape.js'
import { parseStrategy, StrategyError } from '../lib/decide/strategy.js'
import { check, configYaml, fakeDeps } from './helpers.js'

const STDIN_RUNS = Number(process.env.FUZZ_RUNS ?? 10_000)
const FILE_RUNS = 3_000
/** FUZZ_SEED=<seed> replays a failing run (fast-check prints the seed). */
const seed = process.env.FUZZ_SEED === undefined ? {} : { seed: Number(process.env.FUZZ_SEED) }
const NETWORKS = ['management', 'tenant', 'storage'] as const

/** tmpfs when there is one: 10,000 runs each fsync a state file. */
async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'mc-fuzz-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

// ---------------------------------------------------------------- stdin

// Object.prototype's own names (constructor, toString, …) are ordinary hosts everywhere; the test
// below feeds them through the whole pipeline on purpose.
// Weights: about half the generated arrays are valid throughout, the rest carry one bad value.
const nodeName = fc.oneof(
  { weight: 30, arbitrary: fc.constantFrom('controller', 'cmp1', 'cmp2', 'cmp3', 'compute-10', 'nœud-é', '__proto__', 'a'.repeat(255)) },
  { weight: 6, arbitrary: fc.string({ minLength: 1, maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom('a'.repeat(256), 'é'.repeat(128), 'x'.repeat(10_000), 'cmp\n1', 'c\u0000', 'c\u0085', '') },
)
const status = fc.oneof(
  { weight: 60, arbitrary: fc.constantFrom('passing', 'critical', 'warning', 'maintenance') },
  { weight: 1, arbitrary: fc.constantFrom('down', 'PASSING', '', 'unknown') },
)
const checkId = fc.constantFrom('serfHealth', 'serfHealth', 'serfHealth', '_node_maintenance', 'service:nova-compute', 'service:web')
const goodCheck = fc
  .tuple(
    nodeName,
    status,
    checkId,
    fc.oneof(
      { weight: 30, arbitrary: fc.constantFrom('', 'Agent alive and reachable') },
      { weight: 1, arbitrary: fc.constant('o'.repeat(200_000)) },
    ),
  )
  .map(([node, s, id, output]) => check(node, s, id, { Output: output }))
/** One field of a check with a value of the wrong kind, or missing. */
const badCheck = fc
  .tuple(goodCheck, fc.constantFrom('Node', 'CheckID', 'Status'), fc.oneof(fc.anything(), fc.constant(undefined)))
  .map(([c, field, value]) => ({ ...c, [field]: value }))
/**
 * Most arrays carry the controller's own serfHealth (configYaml's hostname) somewhere, as every
 * watch that can see nodes does; the others are refused (lib/run/watch-run.ts).
 */
const checksArray = fc
  .tuple(
    fc.array(fc.oneof({ weight: 100, arbitrary: goodCheck }, { weight: 1, arbitrary: badCheck }), { maxLength: 30 }),
    fc.nat(),
    fc.constantFrom(true, true, true, false),
    fc.constantFrom('passing', 'critical', 'warning'),
  )
  .map(([a, at, own, s]) => (own ? [...a.slice(0, at % (a.length + 1)), check('controller', s), ...a.slice(at % (a.length + 1))] : a))

const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'))
const stdinCase: fc.Arbitrary<{ kind: string; bytes: Uint8Array }> = fc.oneof(
  { weight: 8, arbitrary: checksArray.map((a) => ({ kind: 'checks', bytes: utf8(JSON.stringify(a)) })) },
  {
    weight: 2,
    arbitrary: fc.tuple(checksArray, fc.nat()).map(([a, at]) => {
      const text = JSON.stringify(a)
      return { kind: 'truncated', bytes: utf8(text.slice(0, at % (text.length + 1))) }
    }),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(checksArray, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 })).map(([a, at, junk]) => {
      const bytes = Buffer.from(JSON.stringify(a))
      const i = at % (bytes.length + 1)
      return { kind: 'bytes inserted', bytes: new Uint8Array(Buffer.concat([bytes.subarray(0, i), junk, bytes.subarray(i)])) }
    }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => ({ kind: 'random bytes', bytes })) },
  { weight: 1, arbitrary: fc.jsonValue().map((v) => ({ kind: 'any JSON', bytes: utf8(JSON.stringify(v) ?? 'null') })) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        '',
        '   \n',
        'null',
        '{}',
        '\ufeff[]',
        '['.repeat(100_000),
        `[${'['.repeat(5_000)}${']'.repeat(5_000)}]`,
        JSON.stringify([{ ...check('cmp1', 'passing'), Definition: JSON.parse(`${'['.repeat(3000)}${']'.repeat(3000)}`) }]),
        JSON.stringify([check('cmp1', 'passing'), check('cmp1', 'critical'), check('cmp1', 'passing')]),
      )
      .map((s) => ({ kind: 'edge', bytes: utf8(s) })),
  },
)

// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROL_OR_STACK = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|\s+at \S+ \(/

/** What the handler must accept: UTF-8, JSON, an array, every element a check by the schema. */
function accepts(bytes: Uint8Array): unknown[] | undefined {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    return undefined
  }
  // A list without the controller's own serfHealth (an empty one too) is refused: every cluster
  // has its node; Consul's ACLs answer a token that may not read nodes so (lib/run/watch-run.ts).
  if (!Array.isArray(value) || !value.every((c) => CheckSchema.safeParse(c).success)) return undefined
  return value.some((c) => c.Node === 'controller' && c.CheckID === 'serfHealth') ? value : undefined
}

/** The reduction the README describes: serfHealth passing/critical → up/down, any _node_maintenance → maintenance. */
function expectedNodes(checks: unknown[]): Record<string, string> {
  const out = new Map<string, string>()
  const maint = new Set<string>()
  for (const c of checks as Array<{ Node: string; CheckID: string; Status: string }>) {
    if (c.CheckID === 'serfHealth' && c.Status === 'passing') out.set(c.Node, 'up')
    else if (c.CheckID === 'serfHealth' && c.Status === 'critical') out.set(c.Node, 'down')
    else if (c.CheckID === '_node_maintenance') maint.add(c.Node)
  }
  for (const n of maint) out.set(n, 'maintenance')
  return Object.fromEntries([...out].sort())
}

async function stateFiles(stateDir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {}
  for (const name of ['state.json', ...(await readdir(join(stateDir, 'snapshots')).catch(() => [])).map((n) => `snapshots/${n}`)])
    files[name] = await readFile(join(stateDir, name), 'utf8').catch(() => '(absent)')
  return files
}

t.test(`${STDIN_RUNS} generated stdin payloads: processed, or rejected with one line and exit 65, state unchanged`, async (t) => {
  const dir = await scratch()
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { logFile: '' }))
  const counts: Record<string, number> = {}
  // The state directory changes only when a payload is accepted: what it holds is read then,
  // and a rejected payload must leave exactly that.
  let current = await stateFiles(stateDir)
  let runs = 0
  await fc.assert(
    fc.asyncProperty(stdinCase, fc.constantFrom(...NETWORKS), async ({ kind, bytes }, network) => {
      // Random names pile up in the ledger: start afresh now and then, or each run reads and
      // evaluates thousands of hosts.
      if (++runs % 100 === 0) {
        await rm(stateDir, { recursive: true, force: true })
        current = await stateFiles(stateDir)
      }
      const accepted = accepts(bytes)
      const deps = fakeDeps({ stdin: bytes })
      // What main() runs once yargs has parsed the (here constant) arguments: yargs would cost
      // more than the rest of a rejected run, for nothing the fuzz varies.
      const code = await guarded(
        'checks-handler',
        async () => runWatch({ network, config, dryRun: false, consulIndex: '7' }, deps).then(() => 0),
        deps.stderr,
      )
      counts[`${kind}: ${code}`] = (counts[`${kind}: ${code}`] ?? 0) + 1
      const errors = deps.rec.stderr.filter((l) => l.startsWith('checks-handler:'))
      // A failing case may have changed the state: the runs fast-check makes to shrink it
      // compare against what is there now, so each reports its own failure.
      const after = await stateFiles(stateDir)
      const before = current
      current = after
      if (accepted) {
        if (code !== 0) throw new Error(`exit ${code} for a valid payload: ${errors.join(' | ')}`)
        const snap = JSON.parse(after[`snapshots/${network}.json`]!)
        const got = Object.fromEntries(Object.entries(snap.nodes).sort())
        if (JSON.stringify(got) !== JSON.stringify(expectedNodes(accepted))) throw new Error(`snapshot ${JSON.stringify(got)}`)
        // (absent until a run has something to record)
        const state = after['state.json'] === '(absent)' ? undefined : StoreStateSchema.safeParse(JSON.parse(after['state.json']!))
        if (state && !state.success) throw new Error(`state.json no longer valid: ${state.error.message}`)
      } else {
        if (code !== EXIT.badInput) throw new Error(`exit ${code} (not ${EXIT.badInput}) for bad input: ${errors.join(' | ')}`)
        if (errors.length !== 1 || !/^checks-handler: error: \S/.test(errors[0]!) || CONTROL_OR_STACK.test(errors[0]!))
          throw new Error(`not one clean error line: ${JSON.stringify(errors)}`)
        if (errors[0]!.length > 2000) throw new Error(`error line of ${errors[0]!.length} characters`)
        if (JSON.stringify(after) !== JSON.stringify(before)) throw new Error('state directory changed')
        if (deps.rec.spawned.length > 0) throw new Error('a worker was started')
      }
    }),
    { numRuns: STDIN_RUNS, ...seed },
  )
  t.ok((counts['checks: 0'] ?? 0) > STDIN_RUNS / 5, `enough accepted payloads: ${JSON.stringify(counts)}`)
  t.ok(
    Object.keys(counts).some((k) => k.endsWith(`: ${EXIT.badInput}`)),
    'and rejected ones',
  )
})

t.test('prototype-named nodes accepted through the whole pipeline keep state.json valid', async (t) => {
  const dir = await scratch()
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { logFile: '' }))
  const names = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__', 'cmp1']
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.constantFrom(...names), fc.constantFrom('passing', 'critical')), { minLength: 1, maxLength: 6 }),
      fc.constantFrom(...NETWORKS),
      async (nodes, network) => {
        const code = await main(
          ['--network', network, '--config', config],
          fakeDeps({ stdin: JSON.stringify([check('controller', 'passing'), ...nodes.map(([n, s]) => check(n, s))]) }),
        )
        if (code !== 0) throw new Error(`exit ${code}`)
      },
    ),
    { numRuns: 200 },
  )
  t.pass()
})

// ---------------------------------------------------------------- config and strategy files

const validConfig = {
  stateDir: '/var/lib/mc',
  hostname: 'ctl1',
  firstSight: 'notify',
  guards: {
    hold: { recovery: 5, back: 5 },
    isolation: { maxDownFraction: 0.5, maxDownCount: null, window: 30 },
    rateLimit: { maxRecoveries: 5, window: 300 },
  },
  consul: { agents: { storage: '127.0.0.1:8500' }, timeout: 1 },
  masakari: {
    authUrl: 'http://127.0.0.1:5000/v3',
    auth: { username: 'u', userDomainName: 'Default', password: 'p', projectName: 's', projectDomainName: 'Default' },
    delivery: { initialBackoff: 1, maxBackoff: 30, expiry: 600, concurrency: 4 },
  },
}

/** Every path to a leaf (or a node) of a plain JSON tree. */
function paths(value: unknown, prefix: string[] = []): string[][] {
  if (typeof value !== 'object' || value === null) return [prefix]
  return [prefix, ...Object.entries(value).flatMap(([k, v]) => paths(v, [...prefix, k]))]
}

function mutate(base: unknown, at: string[], value: unknown, remove: boolean): unknown {
  const copy = structuredClone(base) as Record<string, unknown>
  if (at.length === 0) return remove ? undefined : value
  if (typeof copy !== 'object' || copy === null) return copy
  let node = copy
  for (const k of at.slice(0, -1)) {
    // an earlier mutation replaced or removed this branch: nothing left to change
    if (typeof node[k] !== 'object' || node[k] === null) return copy
    node = node[k] as Record<string, unknown>
  }
  if (remove) delete node[at.at(-1)!]
  else node[at.at(-1)!] = value
  return copy
}

/** YAML text: the valid document with one to three mutations, or text garbled at random. */
const fileText = (base: unknown) =>
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .array(
          fc.tuple(
            fc.oneof(
              { weight: 3, arbitrary: fc.constantFrom(...paths(base)) },
              // a key of the operator's own, at any level
              {
                weight: 1,
                arbitrary: fc
                  .tuple(
                    fc.constantFrom(...paths(base)),
                    fc.oneof(
                      fc.string({ unit: 'binary', maxLength: 8 }),
                      fc.constantFrom('a\nb', 'x\u0085', 'k\r', '__proto__', 'constructor'),
                    ),
                  )
                  .map(([p, k]) => [...p, k]),
              },
            ),
            fc.oneof(fc.jsonValue(), fc.string({ unit: 'binary' }), fc.constantFrom('', '\n', 'a: b', '[1, 2]', null)),
            fc.boolean(),
          ),
          {
            minLength: 1,
            maxLength: 3,
          },
        )
        .map((muts) => JSON.stringify(muts.reduce((doc, [at, v, rm]) => mutate(doc, at, v, rm), base) ?? null, null, 1)),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.nat(), fc.constant(JSON.stringify(base, null, 1))).map(([n, s]) => s.slice(0, n % (s.length + 1))),
    },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom('', '---\n', 'a: [', '!!binary foo', '*x', '? [a]\n: b', 'key: &a [*a]', '%YAML 9.9\n---\na: 1'),
    },
  )

/** A problem line names where: a key of the file (top-level names), a strategy row, or the file as a whole. */
const NAMED =
  /^(\(top level\)|stateDir|hostname|strategy|firstSight|logFile|log|metrics|guards|consul|masakari|file|sequence|matrix|cannot read it|not valid YAML|no row has action)(?=[:\s.[]|$)/

function checkProblems(kind: string, source: string, message: string, problems: string[]): void {
  if (!message.startsWith(`invalid ${kind} ${source}:\n  - `)) throw new Error(`message does not name the file: ${message}`)
  if (problems.length === 0) throw new Error('no problem listed')
  for (const p of problems) {
    if (p.trim() === '' || /[\n\r]/.test(p)) throw new Error(`problem not on one line: ${JSON.stringify(p)}`)
    // An unknown key is named by itself (strict config: "a: unknown key …").
    if (!NAMED.test(p) && !/^[^\n]+: (unknown key|not allowed)/.test(p)) throw new Error(`problem does not say where: ${JSON.stringify(p)}`)
  }
}

t.test(`${FILE_RUNS} generated config files: a Config, or a ConfigError whose every line says where`, async (t) => {
  const source = '/etc/mc/config.yaml'
  await fc.assert(
    fc.asyncProperty(fileText(validConfig), async (text) => {
      const env = {
        readFile: async (p: string) => (p === source ? text : Promise.reject(new Error(`ENOENT: ${p}`))),
        env: {},
        hostname: () => 'h',
      }
      try {
        await loadConfig(source, env)
      } catch (err) {
        if (!(err instanceof ConfigError)) throw new Error(`${(err as Error).name}: ${(err as Error).message}`)
        checkProblems('config', source, err.message, err.problems)
      }
    }),
    { numRuns: FILE_RUNS, ...seed },
  )
  t.pass()
})

const validStrategy = {
  sequence: ['manage', 'tenant', 'storage'],
  matrix: [
    { health: ['up', 'up', 'down'], action: ['recovery'] },
    { health: ['down', 'up', 'up'], action: [] },
  ],
}

t.test(`${FILE_RUNS} generated strategy files: a Strategy, or a StrategyError whose every line says where`, async (t) => {
  const source = '/etc/mc/strategy.yaml'
  fc.assert(
    fc.property(fileText(validStrategy), (text) => {
      try {
        const s = parseStrategy(text, source)
        if (!s.rows.some((r) => r.recovery)) throw new Error('a strategy without a recovery row was accepted')
      } catch (err) {
        if (!(err instanceof StrategyError)) throw new Error(`${(err as Error).name}: ${(err as Error).message}`)
        checkProblems('strategy', source, err.message, err.problems)
      }
    }),
    { numRuns: FILE_RUNS, ...seed },
  )
  t.pass()
})
