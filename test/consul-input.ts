import t from 'tap'
import { InputError, nodeStates, parseChecks } from '../lib/consul-input.js'
import { check } from './helpers.js'

t.test('a recorded Consul 1.8.7 payload reduces to per-node states from serfHealth', async (t) => {
  const checks = parseChecks(
    JSON.stringify([
      check('cmp1', 'passing'),
      check('cmp1', 'critical', 'service:web'),
      check('cmp2', 'critical'),
      check('cmp2', 'passing', 'service:web'),
      check('cmp3', 'passing'),
      check('cmp3', 'critical', '_node_maintenance'),
    ]),
  )
  t.same(nodeStates(checks), { cmp1: 'up', cmp2: 'down', cmp3: 'maintenance' })
})

t.test('fields added by later Consul versions are ignored', async (t) => {
  const newer = check('cmp1', 'critical', 'serfHealth', {
    Namespace: 'default',
    Partition: 'default',
    PeerName: '',
    Interval: '',
    Timeout: '',
    ExposedPort: 0,
  })
  t.same(nodeStates(parseChecks(JSON.stringify([newer]))), { cmp1: 'down' })
})

t.test('a node whose serfHealth is neither passing nor critical is left unknown', async (t) => {
  t.same(nodeStates(parseChecks(JSON.stringify([check('cmp1', 'warning')]))), {})
})

t.test('an empty cluster is an empty snapshot', async (t) => {
  t.same(nodeStates(parseChecks('[]')), {})
})

const bad: Array<[string, string, RegExp]> = [
  ['empty stdin', '', /stdin is empty/],
  ['truncated JSON', JSON.stringify([check('cmp1', 'passing')]).slice(0, 40), /not valid JSON/],
  ['not JSON at all', 'Agent not live', /not valid JSON/],
  ['an object, not an array', '{"Node":"cmp1"}', /must be a JSON array.*got object/],
  ['null', 'null', /got null/],
  ['unknown check status', JSON.stringify([check('cmp1', 'flapping')]), /check #0 \(node cmp1\): Status/],
  ['missing Node', JSON.stringify([{ CheckID: 'serfHealth', Status: 'passing' }]), /check #0: Node/],
  ['missing Status', JSON.stringify([{ Node: 'cmp9', CheckID: 'serfHealth' }]), /check #0 \(node cmp9\): Status/],
  ['element not an object', '[1]', /check #0/],
]
for (const [name, input, message] of bad) {
  t.test(`rejects ${name}`, async (t) => {
    t.throws(() => parseChecks(input), { name: 'InputError', message })
    t.throws(() => parseChecks(input), InputError)
  })
}

t.test('node names like constructor, toString, hasOwnProperty, __proto__ are ordinary hosts', async (t) => {
  const names = ['constructor', 'toString', 'hasOwnProperty', '__proto__']
  const checks = parseChecks(
    JSON.stringify([
      ...names.map((n) => check(n, n === 'toString' ? 'critical' : 'passing')),
      check('__proto__', 'critical', '_node_maintenance'),
    ]),
  )
  const states = nodeStates(checks)
  t.same(Object.keys(states).sort(), [...names].sort())
  t.equal(states.constructor, 'up')
  t.equal(states.toString, 'down')
  t.equal(Object.getOwnPropertyDescriptor(states, '__proto__')?.value, 'maintenance')
  t.same(
    JSON.parse(JSON.stringify(states)),
    JSON.parse('{"constructor":"up","toString":"down","hasOwnProperty":"up","__proto__":"maintenance"}'),
  )
  t.equal(nodeStates([]).constructor, undefined, 'an absent node is absent, not an inherited function')
})
