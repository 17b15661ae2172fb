/**
 * The Prometheus textfile (lib/state/metrics.ts): what renderMetrics says for a given record,
 * snapshots and health (table), that its text is valid exposition format, and that a handler
 * run writes it (atomically, world-readable) only when metrics.textfile is set.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { emptyHostRecord } from '../lib/base/host-record.js'
import { type MetricsInput, renderMetrics } from '../lib/state/metrics.js'
import type { Snapshot } from '../lib/decide/snapshot-shape.js'
import { emptyState, type LedgerEntry, type OutboxEntry, type StoreState } from '../lib/decide/state-shape.js'
import { configYaml, fakeDeps, parsePrometheusText, payload, type PromSample } from './helpers.js'

const PACKAGE_VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version

const NOW = new Date('2026-11-25T12:00:00.000Z')
const T = NOW.getTime() / 1000

function snapshot(network: Snapshot['network'], receivedAt: string, nodes: Record<string, 'up' | 'down' | 'maintenance'>): Snapshot {
  return { version: 1, network, consulIndex: '7', receivedAt, nodes: Object.assign(emptyHostRecord(), nodes) }
}

function waiting(host: string, decidedAt: string): OutboxEntry {
  return {
    id: `id-${host}`,
    host,
    notification: {
      type: 'COMPUTE_HOST',
      hostname: host,
      generated_time: decidedAt,
      payload: { event: 'STOPPED', cluster_status: 'OFFLINE', host_status: 'NORMAL' },
    },
    reason: 'matched row 1',
    decidedAt,
    attempts: 0,
    nextAttemptAt: decidedAt,
  }
}

/** The value of one series, or undefined when the file has no such series. */
function value(samples: PromSample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort())
  return samples.find((s) => `masakari_consul_${name}` === s.name && JSON.stringify(Object.entries(s.labels).sort()) === want)?.value
}

const passing = { status: 'passing', reason: 'ok' } as const
const base = (over: Partial<MetricsInput> = {}): MetricsInput => ({
  state: emptyState(),
  snapshots: {},
  health: passing,
  now: NOW,
  version: '1.2.3-test',
  ...over,
})

const withCounters: StoreState = {
  ...emptyState(),
  counters: { decisions: { STOPPED: 3, STARTED: 1 }, notifications: { accepted: 2, duplicate: 1, 'host-not-found': 1 }, retries: 4 },
}

const cases: Array<[string, MetricsInput, Array<[string, Record<string, string>, number | undefined]>]> = [
  [
    'an empty record: zeros, no snapshot series, no oldest-entry timestamp',
    base(),
    [
      ['decisions_total', { action: 'STOPPED' }, 0],
      ['notifications_total', { outcome: 'expired' }, 0],
      ['notification_retries_total', {}, 0],
      ['outbox_entries', {}, 0],
      ['outbox_oldest_timestamp_seconds', {}, undefined],
      ['snapshot_timestamp_seconds', { network: 'storage' }, undefined],
      ['hosts', { network: 'storage', state: 'up' }, undefined],
      ['health', { status: 'passing' }, 1],
      ['health', { status: 'critical' }, 0],
      ['last_run_timestamp_seconds', {}, T],
    ],
  ],
  [
    "the record's counters as counters",
    base({ state: withCounters }),
    [
      ['decisions_total', { action: 'STOPPED' }, 3],
      ['decisions_total', { action: 'STARTED' }, 1],
      ['notifications_total', { outcome: 'accepted' }, 2],
      ['notifications_total', { outcome: 'duplicate' }, 1],
      ['notifications_total', { outcome: 'host-not-found' }, 1],
      ['notifications_total', { outcome: 'on-maintenance' }, 0],
      ['notification_retries_total', {}, 4],
    ],
  ],
  [
    'hosts per network and state; a host absent from a network is unknown there',
    base({
      snapshots: {
        management: snapshot('management', '2026-11-25T11:59:30.000Z', { ctl: 'up', cmp1: 'up', cmp2: 'maintenance' }),
        storage: snapshot('storage', '2026-11-25T11:58:00.000Z', { ctl: 'up', cmp1: 'down' }),
      },
      state: {
        ...emptyState(),
        ledger: Object.assign(emptyHostRecord<LedgerEntry>(), { cmp3: { firstSeenAt: '2026-11-25T10:00:00.000Z' } }),
      },
    }),
    [
      ['hosts', { network: 'management', state: 'up' }, 2],
      ['hosts', { network: 'management', state: 'maintenance' }, 1],
      ['hosts', { network: 'management', state: 'unknown' }, 1],
      ['hosts', { network: 'storage', state: 'up' }, 1],
      ['hosts', { network: 'storage', state: 'down' }, 1],
      ['hosts', { network: 'storage', state: 'unknown' }, 2],
      ['hosts', { network: 'tenant', state: 'up' }, undefined],
      ['snapshot_timestamp_seconds', { network: 'management' }, T - 30],
      ['snapshot_timestamp_seconds', { network: 'storage' }, T - 120],
    ],
  ],
  [
    'outbox depth and when its oldest entry was decided',
    base({
      state: { ...emptyState(), outbox: [waiting('cmp2', '2026-11-25T11:59:00.000Z'), waiting('cmp1', '2026-11-25T11:55:00.000Z')] },
    }),
    [
      ['outbox_entries', {}, 2],
      ['outbox_oldest_timestamp_seconds', {}, T - 300],
    ],
  ],
  [
    'self-isolation per network; health warning',
    base({
      state: { ...emptyState(), isolation: { storage: { since: '2026-11-25T11:59:00.000Z', reason: '3 of 4 down' } } },
      health: { status: 'warning', reason: 'backlog' },
    }),
    [
      ['self_isolation', { network: 'storage' }, 1],
      ['self_isolation', { network: 'tenant' }, 0],
      ['health', { status: 'warning' }, 1],
      ['health', { status: 'passing' }, 0],
    ],
  ],
  [
    'hosts held, by guard: an unconfirmed recovery shows',
    base({
      state: {
        ...emptyState(),
        ledger: Object.assign(emptyHostRecord<LedgerEntry>(), {
          cmp1: { firstSeenAt: '2026-11-25T11:00:00.000Z', guard: 'unconfirmed' as const },
          cmp2: { firstSeenAt: '2026-11-25T11:00:00.000Z', guard: 'hold' as const },
          cmp3: { firstSeenAt: '2026-11-25T11:00:00.000Z' },
        }),
      },
    }),
    [
      ['held_hosts', { guard: 'unconfirmed' }, 1],
      ['held_hosts', { guard: 'hold' }, 1],
      ['held_hosts', { guard: 'rate-limit' }, 0],
    ],
  ],
]

for (const [name, input, expected] of cases) {
  t.test(`renderMetrics: ${name}`, async (t) => {
    const { samples } = parsePrometheusText(renderMetrics(input))
    for (const [metric, labels, want] of expected) t.equal(value(samples, metric, labels), want, `${metric}${JSON.stringify(labels)}`)
  })
}

/** The file's lines that change when only the time of writing does (what an hour-late read would get wrong). */
function writeTimeLines(input: MetricsInput): string[] {
  const later = renderMetrics({ ...input, now: new Date(input.now.getTime() + 3_600_000) }).split('\n')
  const now = renderMetrics(input).split('\n')
  return now.filter((line, i) => later[i] !== line)
}

t.test("renderMetrics: a snapshot's timestamp is when it was received, whenever the file is written", async (t) => {
  const input = base({ snapshots: { tenant: snapshot('tenant', '2026-11-25T11:00:00.000Z', { ctl: 'up' }) } })
  for (const now of [NOW, new Date(NOW.getTime() + 3_600_000)]) {
    const { samples } = parsePrometheusText(renderMetrics({ ...input, now }))
    t.equal(value(samples, 'snapshot_timestamp_seconds', { network: 'tenant' }), T - 3600, `written at ${now.toISOString()}`)
  }
  t.same(writeTimeLines(input), [`masakari_consul_last_run_timestamp_seconds ${T}`], 'only the run timestamp follows the writing')
})

t.test("renderMetrics: the outbox's oldest timestamp is the earliest decision, whenever the file is written", async (t) => {
  const outbox = [
    waiting('cmp2', '2026-11-25T11:59:00.000Z'),
    waiting('cmp1', '2026-11-25T11:10:00.000Z'),
    waiting('cmp3', '2026-11-25T11:30:00.000Z'),
  ]
  const input = base({ state: { ...emptyState(), outbox } })
  t.equal(value(parsePrometheusText(renderMetrics(input)).samples, 'outbox_oldest_timestamp_seconds'), T - 3000)
  t.same(writeTimeLines(input), [`masakari_consul_last_run_timestamp_seconds ${T}`], 'only the run timestamp follows the writing')
})

t.test('renderMetrics: nothing to time, no sample (an empty outbox, a network without a snapshot)', async (t) => {
  const text = renderMetrics(base({ snapshots: { storage: snapshot('storage', '2026-11-25T11:58:00.000Z', { ctl: 'up' }) } }))
  const { samples, types } = parsePrometheusText(text)
  t.same(
    samples.filter((s) => s.name.startsWith('masakari_consul_outbox_oldest')),
    [],
    'no sample about an oldest entry',
  )
  t.same(
    samples.filter((s) => s.name.startsWith('masakari_consul_snapshot_')).map((s) => s.labels),
    [{ network: 'storage' }],
    'snapshot series only for the network that has one',
  )
  t.equal(types.get('masakari_consul_outbox_oldest_timestamp_seconds'), 'gauge', 'the family is still described')
})

t.test("renderMetrics: build_info says the package's version, value 1", async (t) => {
  const { samples, types } = parsePrometheusText(renderMetrics(base()))
  t.same(
    samples.filter((s) => s.name === 'masakari_consul_build_info'),
    [{ name: 'masakari_consul_build_info', labels: { version: '1.2.3-test' }, value: 1 }],
  )
  t.equal(types.get('masakari_consul_build_info'), 'gauge')
})

t.test('renderMetrics: text exposition; each family HELP then TYPE then its samples; names by the conventions', async (t) => {
  const input = base({
    state: { ...withCounters, outbox: [waiting('cmp1', '2026-11-25T11:55:00.000Z')] },
    snapshots: { management: snapshot('management', '2026-11-25T11:59:30.000Z', { ctl: 'up' }) },
  })
  const text = renderMetrics(input)
  const { types, samples } = parsePrometheusText(text)
  const families = [...types.keys()]
  t.ok(families.length >= 12)
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
  const lines = text.slice(0, -1).split('\n')
  for (const f of families) {
    t.match(f, NAME)
    t.match(f, /^masakari_consul_[a-z]+(_[a-z]+)*$/, `${f}: snake_case, the package's prefix`)
    const help = lines.filter((l) => l.startsWith(`# HELP ${f} `))
    const type = lines.findIndex((l) => l.startsWith(`# TYPE ${f} `))
    const first = lines.findIndex((l) => l === f || l.startsWith(`${f} `) || l.startsWith(`${f}{`))
    t.equal(help.length, 1, `${f}: one HELP`)
    t.match(help[0], /^# HELP \S+ \S/, `${f}: HELP says something`)
    t.ok(lines.indexOf(help[0]!) < type, `${f}: HELP before TYPE`)
    t.ok(first === -1 || type < first, `${f}: TYPE before its samples`)
    t.equal(types.get(f) === 'counter', f.endsWith('_total'), `${f}: counter exactly when _total`)
    t.notMatch(f, /_age_seconds$/, `${f}: a textfile exports timestamps, not ages (stale once written)`)
    if (f.endsWith('_timestamp_seconds')) t.match(help[0], /time\(\) - /, `${f}: HELP says how to get an age`)
  }
  for (const l of lines) t.match(l, /^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S.*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+)$/, l)
  for (const s of samples) {
    t.match(s.name, NAME)
    t.ok(types.has(s.name), `${s.name} is typed`)
    for (const k of Object.keys(s.labels)) t.match(k, /^[a-zA-Z_][a-zA-Z0-9_]*$/, `${s.name}: label ${k}`)
  }
  for (const f of ['snapshot_timestamp_seconds', 'outbox_oldest_timestamp_seconds', 'last_run_timestamp_seconds', 'build_info'])
    t.ok(
      samples.some((s) => s.name === `masakari_consul_${f}`),
      `${f} has a sample here`,
    )
})

t.test('the exposition checker can fail (so the tests above mean something)', async (t) => {
  const bad: Array<[string, string]> = [
    ['no final newline', 'a 1'],
    ['bad value', 'a x\n'],
    ['unescaped quote', 'a{l="x"y"} 1\n'],
    ['TYPE twice', '# TYPE a gauge\n# TYPE a gauge\na 1\n'],
    ['TYPE after its samples', 'a 1\n# TYPE a gauge\n'],
    ['family split', 'a 1\nb 1\na{x="1"} 2\n'],
    ['duplicate series', 'a{x="1"} 1\na{x="1"} 2\n'],
    ['bad metric name', '1a 1\n'],
  ]
  for (const [why, text] of bad) t.throws(() => parsePrometheusText(text), why)
  t.same(parsePrometheusText('# HELP a h\\\\n\n# TYPE a gauge\na{l="q\\"n\\n"} -Inf\n').samples, [
    { name: 'a', labels: { l: 'q"n\n' }, value: Number.NEGATIVE_INFINITY },
  ])
})

const allUp = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing' })
const cmp1Down = payload({ controller: 'passing', cmp1: 'critical', cmp2: 'passing' })

t.test('a handler run writes the textfile when metrics.textfile is set: valid, 0644, atomically', async (t) => {
  const dir = t.testdir({ textfile: {} })
  const stateDir = join(dir, 'state')
  const textfile = join(dir, 'textfile', 'masakari_consul.prom')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { metrics: { textfile } }))
  for (const n of ['management', 'tenant', 'storage'])
    t.equal(await main(['--network', n, '--config', config], fakeDeps({ stdin: allUp })), 0)
  const later = () => new Date(NOW.getTime() + 10_000)
  const deps = fakeDeps({ stdin: cmp1Down, now: later })
  t.equal(await main(['--network', 'storage', '--config', config], deps), 0, deps.rec.stderr.join('\n'))
  const { samples } = parsePrometheusText(await readFile(textfile, 'utf8'))
  t.equal(value(samples, 'decisions_total', { action: 'STOPPED' }), 1)
  t.equal(value(samples, 'hosts', { network: 'storage', state: 'down' }), 1)
  t.equal(value(samples, 'hosts', { network: 'storage', state: 'up' }), 2)
  t.equal(value(samples, 'outbox_entries', {}), 1)
  t.equal(value(samples, 'snapshot_timestamp_seconds', { network: 'storage' }), T + 10)
  t.equal(value(samples, 'snapshot_timestamp_seconds', { network: 'management' }), T)
  t.equal(value(samples, 'health', { status: 'passing' }), 1)
  t.equal(value(samples, 'build_info', { version: PACKAGE_VERSION }), 1, "build_info: package.json's version")
  t.equal((await stat(textfile)).mode & 0o777, 0o644, 'world-readable: node_exporter runs as its own user')
  t.same(await readdir(join(dir, 'textfile')), ['masakari_consul.prom'], 'no temp file left beside it')
  // The counter lives in the record: a later run (another process) still counts it, once.
  t.equal(await main(['--network', 'tenant', '--config', config], fakeDeps({ stdin: allUp, now: later })), 0)
  t.equal(value(parsePrometheusText(await readFile(textfile, 'utf8')).samples, 'decisions_total', { action: 'STOPPED' }), 1)
})

t.test('no textfile when metrics.textfile is unset', async (t) => {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir))
  t.equal(await main(['--network', 'storage', '--config', config], fakeDeps({ stdin: allUp })), 0)
  t.same((await readdir(dir)).sort(), ['config.yaml', 'state'])
  t.notOk((await readdir(stateDir)).some((f) => f.endsWith('.prom')))
})

t.test('a textfile that cannot be written: the run is recorded, exit 74, the health note says why', async (t) => {
  const dir = t.testdir({ 'not-a-dir': '' })
  const stateDir = join(dir, 'state')
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(stateDir, { metrics: { textfile: join(dir, 'not-a-dir', 'm.prom') } }))
  const deps = fakeDeps({ stdin: allUp })
  t.equal(await main(['--network', 'storage', '--config', config], deps), 74)
  t.ok(await readFile(join(stateDir, 'snapshots', 'storage.json')), 'the snapshot is written')
  t.match(await readFile(join(stateDir, 'health'), 'utf8'), /cannot write metrics\.textfile .*not-a-dir\/m\.prom/)
  t.match(deps.rec.stderr.join('\n'), /"level":"error","msg":"cannot write the metrics textfile"/)
})

t.test('metrics.textfile must end in .prom (the collector reads nothing else)', async (t) => {
  const dir = t.testdir({})
  const config = join(dir, 'config.yaml')
  await writeFile(config, configYaml(join(dir, 'state'), { metrics: { textfile: join(dir, 'm.txt') } }))
  const deps = fakeDeps({ stdin: allUp })
  t.equal(await main(['--network', 'storage', '--config', config], deps), 78)
  t.match(deps.rec.stderr.join('\n'), /metrics\.textfile: node_exporter's textfile collector reads only files named \*\.prom/)
})
