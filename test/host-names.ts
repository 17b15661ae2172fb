import t from 'tap'
import type { z } from 'zod'
import { type HostNameMapping, HostNamesSchema, masakariHostName, mapsNames } from '../lib/consul/host-names.js'

const m = (given: Partial<z.input<typeof HostNamesSchema>>): HostNameMapping => HostNamesSchema.parse(given)
const table: Array<[string, string, HostNameMapping, Record<string, string> | undefined, string]> = [
  ['no mapping keeps the name', 'cmp1.example.org', m({}), undefined, 'cmp1.example.org'],
  ['stripDomain: true cuts at the first dot', 'cmp1.example.org', m({ stripDomain: true }), undefined, 'cmp1'],
  ['stripDomain: true leaves a short name', 'cmp1', m({ stripDomain: true }), undefined, 'cmp1'],
  ['stripDomain: a domain cuts only that suffix', 'cmp1.rack2.example.org', m({ stripDomain: 'example.org' }), undefined, 'cmp1.rack2'],
  ['stripDomain: another domain is kept', 'cmp1.other.net', m({ stripDomain: '.example.org' }), undefined, 'cmp1.other.net'],
  ['regex with replacement', 'consul-cmp1', m({ regex: { match: '^consul-(.*)$', replace: '$1' } }), undefined, 'cmp1'],
  ['regex that does not match keeps the name', 'cmp1', m({ regex: { match: '^consul-(.*)$', replace: '$1' } }), undefined, 'cmp1'],
  [
    'regex, then stripDomain',
    'consul-cmp1.example.org',
    m({ regex: { match: '^consul-', replace: '' }, stripDomain: true }),
    undefined,
    'cmp1',
  ],
  [
    'explicit map wins over everything',
    'cmp1.example.org',
    m({ map: { 'cmp1.example.org': 'compute-01' }, stripDomain: true, metaKey: 'mh' }),
    { mh: 'x' },
    'compute-01',
  ],
  [
    'a node not in the map is rewritten',
    'cmp2.example.org',
    m({ map: { 'cmp1.example.org': 'compute-01' }, stripDomain: true }),
    undefined,
    'cmp2',
  ],
  [
    'meta key from the node meta',
    'cmp1.example.org',
    m({ metaKey: 'masakari_host', stripDomain: true }),
    { masakari_host: 'compute-01' },
    'compute-01',
  ],
  [
    'meta key absent on the node: the rewrite',
    'cmp1.example.org',
    m({ metaKey: 'masakari_host', stripDomain: true }),
    { rack: '2' },
    'cmp1',
  ],
  ['meta key, no meta known: the rewrite', 'cmp1.example.org', m({ metaKey: 'masakari_host', stripDomain: true }), undefined, 'cmp1'],
  ['a node named like an Object property is not mapped by the prototype', 'constructor', m({ map: {} }), undefined, 'constructor'],
]
for (const [name, node, mapping, meta, want] of table) {
  t.test(name, async (t) => {
    t.equal(masakariHostName(node, mapping, meta), want)
  })
}

t.test('mapsNames: only a mapping that changes something', async (t) => {
  t.equal(mapsNames(m({})), false)
  t.equal(mapsNames(m({ stripDomain: true })), true)
  t.equal(mapsNames(m({ metaKey: 'k' })), true)
})

t.test('an invalid regular expression is a config problem at its path', async (t) => {
  const r = HostNamesSchema.safeParse({ regex: { match: '(', replace: '' } })
  t.equal(r.success, false)
  t.same(
    r.error?.issues.map((i) => i.path.join('.')),
    ['regex.match'],
  )
})
