/**
 * The fast validators (isCheck, isSnapshot) skip the schema parse on the hot path; they must
 * accept exactly what their zod schemas accept, or a payload would be taken that the schema
 * rejects (or the reverse: a slow path where none is needed). Property tests: the same
 * generated values through both.
 */
import t from 'tap'
import fc from 'fast-check'
import { isCheck } from '../lib/consul/checks-payload.js'
import { CheckSchema } from '../lib/consul/consul-input.js'
import { isSnapshot, SnapshotSchema } from '../lib/decide/snapshot-shape.js'

const RUNS = 20_000
const protoNames = ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf']

/** Strings near the edges the validators look at: empty, long, control characters, non-ASCII. */
const nodeName = fc.oneof(
  fc.constantFrom(
    '',
    'cmp1',
    ...protoNames,
    'a'.repeat(255),
    'a'.repeat(256),
    'é'.repeat(127),
    'é'.repeat(128),
    'cmp\n1',
    'x\u0085',
    'x\u007f',
    'x\u00a0',
  ),
  fc.string({ unit: 'grapheme', maxLength: 10 }),
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ minLength: 250, maxLength: 260 }),
)
/** A value that is sometimes of the right kind and sometimes not. */
const maybe = <T>(good: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: fc.anything() })

const checkLike = fc.record(
  {
    Node: maybe(nodeName),
    CheckID: maybe(fc.constantFrom('serfHealth', '_node_maintenance', 'service:web', '')),
    Status: maybe(fc.constantFrom('passing', 'warning', 'critical', 'maintenance', 'down', 'Passing', '')),
    Output: fc.string(),
  },
  { requiredKeys: [] },
)

t.test('isCheck accepts exactly what CheckSchema accepts', async (t) => {
  fc.assert(
    fc.property(
      fc.oneof({ weight: 5, arbitrary: checkLike }, { weight: 1, arbitrary: fc.anything({ withNullPrototype: true }) }),
      (value) => {
        const fast = isCheck(value)
        const schema = CheckSchema.safeParse(value).success
        if (fast !== schema) throw new Error(`isCheck ${fast}, CheckSchema ${schema} for ${fc.stringify(value)}`)
      },
    ),
    { numRuns: RUNS },
  )
  t.pass(`${RUNS} values agree`)
})

const nodesLike = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.dictionary(
      fc.oneof(nodeName, fc.constantFrom(...protoNames)),
      maybe(fc.constantFrom('up', 'down', 'maintenance', 'unknown', 'UP')),
      { maxKeys: 6 },
    ),
  },
  { weight: 1, arbitrary: fc.dictionary(fc.string(), fc.constantFrom('up', 'down'), { maxKeys: 3, noNullPrototype: false }) },
  { weight: 1, arbitrary: fc.anything({ withNullPrototype: true }) },
  { weight: 1, arbitrary: fc.array(fc.constantFrom('up', 'down'), { maxLength: 2 }) },
  // inherited enumerable keys: not the table's own
  {
    weight: 1,
    arbitrary: fc.constantFrom('up', 'sideways').map((v) => Object.create({ cmp9: v }, { cmp1: { value: 'up', enumerable: true } })),
  },
)
const snapshotLike = fc.record(
  {
    version: maybe(fc.constantFrom(1, 2, '1')),
    network: maybe(fc.constantFrom('management', 'tenant', 'storage', 'manage', '')),
    consulIndex: maybe(fc.string()),
    receivedAt: maybe(fc.string()),
    nodes: nodesLike,
  },
  { requiredKeys: [] },
)

t.test('isSnapshot accepts exactly what SnapshotSchema accepts', async (t) => {
  fc.assert(
    fc.property(fc.oneof({ weight: 5, arbitrary: snapshotLike }, { weight: 1, arbitrary: fc.anything() }), (value) => {
      const fast = isSnapshot(value)
      const schema = SnapshotSchema.safeParse(value).success
      if (fast !== schema) throw new Error(`isSnapshot ${fast}, SnapshotSchema ${schema} for ${fc.stringify(value)}`)
    }),
    { numRuns: RUNS },
  )
  t.pass(`${RUNS} values agree`)
})

t.test('both accept what JSON.parse gives for prototype-named keys', async (t) => {
  const snap = JSON.parse(
    '{"version":1,"network":"storage","consulIndex":"","receivedAt":"","nodes":{"__proto__":"up","constructor":"down"}}',
  )
  t.equal(isSnapshot(snap), true)
  t.equal(SnapshotSchema.safeParse(snap).success, true)
  const check = JSON.parse('{"Node":"__proto__","CheckID":"serfHealth","Status":"passing"}')
  t.equal(isCheck(check), true)
  t.equal(CheckSchema.safeParse(check).success, true)
})
