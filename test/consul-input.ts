import t from 'tap'
import { decodeStdin, InputError, NODE_NAME_MAX_BYTES, nodeStates, STDIN_MAX_BYTES } from '../lib/consul/checks-payload.js'
import { parseChecks } from '../lib/consul/consul-input.js'
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
  ['unknown check status', JSON.stringify([check('cmp1', 'flapping')]), /check #0 \(node "cmp1"\): Status/],
  ['missing Node', JSON.stringify([{ CheckID: 'serfHealth', Status: 'passing' }]), /check #0: Node/],
  ['missing Status', JSON.stringify([{ Node: 'cmp9', CheckID: 'serfHealth' }]), /check #0 \(node "cmp9"\): Status/],
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

const invalidUtf8: Array<[string, number[]]> = [
  ['a stray continuation byte', [0x5b, 0x22, 0x80, 0x22, 0x5d]],
  ['0xff', [0x5b, 0xff, 0x5d]],
  ['an overlong encoding of /', [0x5b, 0x22, 0xc0, 0xaf, 0x22, 0x5d]],
  ['an encoded surrogate', [0x5b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x5d]],
  ['a truncated sequence at the end', [0x5b, 0x22, 0xe2, 0x82]],
]
for (const [name, bytes] of invalidUtf8) {
  t.test(`stdin with ${name} is rejected, not decoded with replacement characters`, async (t) => {
    t.throws(() => decodeStdin(Uint8Array.from(bytes)), { name: 'InputError', message: /^stdin is not valid UTF-8 \(\d+ bytes received\)/ })
  })
}

t.test('valid UTF-8 stdin decodes as is', async (t) => {
  const text = JSON.stringify([check('nœud-é', 'passing')])
  t.equal(decodeStdin(Buffer.from(text)), text)
})

t.test('stdin over the size limit is rejected with the limit named', async (t) => {
  t.equal(STDIN_MAX_BYTES, 256 * 1024 * 1024)
  t.throws(() => decodeStdin(Buffer.allocUnsafe(STDIN_MAX_BYTES + 1)), { name: 'InputError', message: /larger than the 256 MiB limit/ })
})

t.test('node names: at most 255 bytes (not characters); 255 bytes pass', async (t) => {
  t.equal(NODE_NAME_MAX_BYTES, 255)
  t.same(Object.keys(nodeStates(parseChecks(JSON.stringify([check('a'.repeat(255), 'passing')])))), ['a'.repeat(255)])
  t.same(Object.keys(nodeStates(parseChecks(JSON.stringify([check('é'.repeat(127), 'passing')])))), ['é'.repeat(127)], '254 bytes')
  for (const long of ['a'.repeat(256), 'é'.repeat(128)]) {
    const err = t.throws(() => parseChecks(JSON.stringify([check('cmp1', 'passing'), check(long, 'critical')]))) as Error
    t.type(err, InputError)
    t.match(err.message, /^invalid checks on stdin: check #1 \(node "[aé]{64}…" \(\d+ characters\)\): Node: longer than 255 bytes/)
  }
})

t.test('node names with control characters are rejected; the error shows them escaped, on one line', async (t) => {
  for (const [name, shown] of [
    ['cmp\n1', '"cmp\\n1"'],
    ['cmp\u00001', '"cmp\\u00001"'],
    ['cmp\u00851', '"cmp\\u00851"'],
    ['cmp\u007f', '"cmp\\u007f"'],
  ] as const) {
    const err = t.throws(() => parseChecks(JSON.stringify([check(name, 'passing')]))) as Error
    t.type(err, InputError)
    t.ok(err.message.includes(`check #0 (node ${shown}): Node: contains a control character`), err.message)
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
    t.notMatch(err.message, /[\u0000-\u001f\u007f-\u009f]/, 'no control character in the message')
  }
})
