import t from 'tap'
import { DEFAULT_STRATEGY, matchStrategy, parseStrategy, StrategyError } from '../lib/decide/strategy.js'

const upstreamDefault = `
sequence: [manage, tenant, storage]
matrix:
  - {health: [up, up, up], action: []}
  - {health: [up, up, down], action: [recovery]}
  - {health: [up, down, up], action: []}
  - {health: [up, down, down], action: [recovery]}
  - {health: [down, up, up], action: []}
  - {health: [down, up, down], action: [recovery]}
  - {health: [down, down, up], action: []}
  - {health: [down, down, down], action: [recovery]}
`

t.test('upstream masakari-monitors matrix.yaml loads unchanged and agrees with the built-in default', async (t) => {
  const s = parseStrategy(upstreamDefault, 'matrix.yaml')
  t.same(s.sequence, ['management', 'tenant', 'storage'])
  for (const m of ['up', 'down'] as const)
    for (const te of ['up', 'down'] as const)
      for (const st of ['up', 'down'] as const) {
        const v = { management: m, tenant: te, storage: st }
        t.equal(matchStrategy(s, v).recovery, matchStrategy(DEFAULT_STRATEGY, v).recovery, `${m}/${te}/${st}`)
      }
})

t.test('single-network strategy (management only)', async (t) => {
  const s = parseStrategy('sequence: [manage]\nmatrix:\n  - {health: [down], action: [recovery]}\n', 'mgmt.yaml')
  t.same(s.sequence, ['management'])
  t.match(matchStrategy(s, { management: 'down', storage: 'unknown' }), { row: 1, recovery: true })
  t.match(matchStrategy(s, { management: 'up', storage: 'down' }), { row: null, recovery: false, allUp: true })
})

// The spec's default table, row by row, plus every vector it does not list.
const defaultTable: Array<[string, string, string, number | null, boolean]> = [
  ['up', 'up', 'down', 1, true],
  ['up', 'down', 'down', 2, true],
  ['down', 'up', 'down', 3, true],
  ['down', 'down', 'down', 4, true],
  ['up', 'up', 'up', null, false],
  ['down', 'up', 'up', null, false],
  ['up', 'down', 'up', null, false],
  ['down', 'down', 'up', null, false],
]
for (const [m, te, st, row, recovery] of defaultTable) {
  t.test(`default strategy: management=${m} tenant=${te} storage=${st}`, async (t) => {
    t.match(matchStrategy(DEFAULT_STRATEGY, { management: m as 'up', tenant: te as 'up', storage: st as 'up' }), { row, recovery })
  })
}

const unclear: Array<[string, Record<string, string>, RegExp]> = [
  ['storage unknown (left the cluster)', { management: 'up', tenant: 'up', storage: 'unknown' }, /storage is unknown/],
  ['storage in maintenance', { management: 'up', tenant: 'up', storage: 'maintenance' }, /storage is maintenance/],
  ['management absent while storage down', { tenant: 'up', storage: 'down' }, /management is unknown/],
]
for (const [name, vector, reason] of unclear) {
  t.test(`no recovery when ${name}`, async (t) => {
    const m = matchStrategy(DEFAULT_STRATEGY, vector)
    t.equal(m.recovery, false)
    t.equal(m.row, null)
    t.match(m.reason, reason)
  })
}

const invalid: Array<[string, string, RegExp[]]> = [
  [
    'row length differs from the sequence',
    'sequence: [manage, tenant, storage]\nmatrix:\n  - {health: [up, down], action: [recovery]}\n',
    [/matrix row 1 .*has 2 health values but sequence has 3/],
  ],
  [
    'value other than up/down',
    'sequence: [storage]\nmatrix:\n  - {health: [dead], action: [recovery]}\n',
    [/matrix row 1 .*health\[0\] is "dead", expected up or down/],
  ],
  [
    'row listed twice',
    'sequence: [storage]\nmatrix:\n  - {health: [down], action: [recovery]}\n  - {health: [down], action: [recovery]}\n',
    [/matrix row 2 .*repeats row 1/],
  ],
  [
    'contradicting rows',
    'sequence: [storage]\nmatrix:\n  - {health: [down], action: [recovery]}\n  - {health: [down], action: []}\n',
    [/matrix row 2 .*contradicts row 1/],
  ],
  [
    'unknown action',
    'sequence: [storage]\nmatrix:\n  - {health: [down], action: [reboot]}\n',
    [/action\[0\] is "reboot", expected one of: recovery/],
  ],
  ['unknown network', 'sequence: [mgmt]\nmatrix:\n  - {health: [down], action: [recovery]}\n', [/sequence\[0\]: unknown network "mgmt"/]],
  [
    'a network named like an Object property',
    'sequence: [constructor, storage]\nmatrix:\n  - {health: [down, down], action: [recovery]}\n',
    [/sequence\[0\]: unknown network "constructor"/],
  ],
  ['network twice', 'sequence: [manage, management]\nmatrix:\n  - {health: [down, down], action: [recovery]}\n', [/listed twice/]],
  ['no matrix', 'sequence: [storage]\n', [/matrix/]],
  ['not YAML', 'sequence: [storage\nmatrix: {', [/not valid YAML/]],
  ['no recovery row', 'sequence: [storage]\nmatrix:\n  - {health: [down], action: []}\n', [/never recover/]],
  // Healthy hosts would be evacuated, 5 per 300 s: up everywhere is what "back" means (STARTED).
  [
    'a recovery for a host up on every network',
    'sequence: [manage, tenant, storage]\nmatrix:\n  - {health: [up, up, down], action: [recovery]}\n  - {health: [up, up, up], action: [recovery]}\n',
    [/^matrix row 2 \(health \[up, up, up\]\): action \[recovery\] for a host up on every network/],
  ],
  [
    'a recovery for a host up on its one network',
    'sequence: [storage]\nmatrix:\n  - {health: [down], action: [recovery]}\n  - {health: [up], action: [recovery]}\n',
    [/^matrix row 2 .*up on every network/],
  ],
  [
    'an all-up recovery as the only recovery row, with the other problems of the file',
    'sequence: [manage, storage]\nmatrix:\n  - {health: [up, up], action: [recovery]}\n  - {health: [down, gone], action: []}\n',
    [/^matrix row 1 .*up on every network/, /^matrix row 2 .*"gone"/],
  ],
  [
    'several problems at once',
    'sequence: [storage, tenant]\nmatrix:\n  - {health: [down], action: [recovery]}\n  - {health: [down, sideways], action: [fix]}\n',
    [/row 1 .*has 1 health/, /row 2 .*"sideways"/, /row 2 .*"fix"/],
  ],
]
for (const [name, text, messages] of invalid) {
  t.test(`rejects ${name}, naming file, row and reason`, async (t) => {
    const err = t.throws(() => parseStrategy(text, '/etc/masakari-consul/strategy.yaml')) as StrategyError
    t.ok(err instanceof StrategyError)
    t.match(err.message, /\/etc\/masakari-consul\/strategy\.yaml/)
    for (const m of messages)
      t.ok(
        err.problems.some((p) => m.test(p)),
        `a problem matches ${m}: ${err.problems.join(' | ')}`,
      )
  })
}

t.test('an all-up row with no action, and recoveries with any network up, still pass', async (t) => {
  const s = parseStrategy(
    'sequence: [manage, storage]\nmatrix:\n  - {health: [up, up], action: []}\n  - {health: [up, down], action: [recovery]}\n',
    's.yaml',
  )
  t.same(s.rows, [
    { health: ['up', 'up'], recovery: false },
    { health: ['up', 'down'], recovery: true },
  ])
})

t.test('values from the file with line breaks stay on their problem line, escaped', async (t) => {
  const err = t.throws(() =>
    parseStrategy('sequence: ["man\\nage", storage]\nmatrix:\n  - {health: ["up\\r\\nx", down], action: ["re\\u2028covery"]}\n', '/s.yaml'),
  ) as StrategyError
  t.type(err, StrategyError)
  t.ok(err.problems.length >= 3, err.problems.join(' | '))
  for (const p of err.problems) t.notMatch(p, /[\n\r\u2028]/, p)
  t.ok(err.problems.some((p) => p.includes('unknown network "man\\nage"')))
  t.ok(err.problems.some((p) => p.includes('health[0] is "up\\r\\nx"')))
  t.ok(err.problems.some((p) => p.includes('action[0] is "re\\u2028covery"')))
})
