/**
 * fencing.template's pure parts (lib/fence/fence-template.ts), by table: its placeholders filled
 * from the node name and meta, a node that lacks a key or holds a value that would break the
 * agent's stdin left without options (with the reason), the precedence hosts > hostsFile >
 * template, and which hosts fence-check asks about.
 */
import t from 'tap'
import type { FencingConfig } from '../lib/fence/fence-config.js'
import {
  checkedHosts,
  type FenceTarget,
  fencesHost,
  fenceTarget,
  fillTemplate,
  needsNodeMeta,
  type NodeMeta,
  templateMetaKeys,
} from '../lib/fence/fence-template.js'
import { loadConfig } from '../lib/config/config.js'
import { memoryConfigEnv } from './helpers.js'

const TEMPLATE = { ip: '{meta.bmc_address}', ipport: 623, lanplus: true, plug: '{node}', username: 'admin-{meta.rack}' }
const UNFILLED = 'fencing.template cannot be filled: '

t.test('fillTemplate: placeholders, missing meta, values that would break stdin', async (t) => {
  const cases: Array<[string, string, NodeMeta, FenceTarget]> = [
    [
      'every placeholder filled; numbers and booleans as written',
      'cmp1',
      { bmc_address: '10.0.0.11', rack: 'r1', other: 'x' },
      { options: { ip: '10.0.0.11', ipport: 623, lanplus: true, plug: 'cmp1', username: 'admin-r1' } },
    ],
    [
      'one key missing: not covered, the key named',
      'cmp2',
      { bmc_address: '10.0.0.12' },
      { reason: `${UNFILLED}node cmp2 has no node meta rack (or it is empty) in the management agent's catalog` },
    ],
    [
      'every missing key at once, sorted; an empty value is missing',
      'cmp3',
      { bmc_address: '' },
      { reason: `${UNFILLED}node cmp3 has no node meta bmc_address, rack (or it is empty) in the management agent's catalog` },
    ],
    [
      'a line break in a meta value: refused, not sent as a second option',
      'cmp4',
      { bmc_address: '10.0.0.14\naction=on', rack: 'r\u0000' },
      {
        reason: `${UNFILLED}node meta bmc_address, rack of cmp4 refused: a fence agent option value is one stdin line: no line break or control character`,
      },
    ],
    [
      'missing and broken, both said',
      'cmp5',
      { bmc_address: '10.0.0.15\u2028' },
      {
        reason:
          `${UNFILLED}node cmp5 has no node meta rack (or it is empty) in the management agent's catalog; ` +
          'node meta bmc_address of cmp5 refused: a fence agent option value is one stdin line: no line break or control character',
      },
    ],
    [
      'a meta value is put in once: a placeholder inside it is not filled again',
      'cmp6',
      { bmc_address: '{node}', rack: '{meta.bmc_address}' },
      { options: { ip: '{node}', ipport: 623, lanplus: true, plug: 'cmp6', username: 'admin-{meta.bmc_address}' } },
    ],
    [
      'a key named like an Object method is not found on the prototype',
      'cmp7',
      {},
      { reason: `${UNFILLED}node cmp7 has no node meta constructor (or it is empty) in the management agent's catalog` },
    ],
  ]
  for (const [name, node, meta, want] of cases) {
    const template = name.includes('Object method') ? { ip: '{meta.constructor}' } : TEMPLATE
    t.same(fillTemplate(template, node, meta), want, name)
  }
  t.same(fillTemplate({ plug: '{node}' }, 'cmp\n8', {}), { reason: `${UNFILLED}the node name would break the agent's stdin` })
  t.same(
    fillTemplate({ ip: '{meta.a}', plug: '$&{node}$1', x: '{nodes} {meta.a b}' }, 'cmp9', { a: '$`' }),
    { options: { ip: '$`', plug: '$&cmp9$1', x: '{nodes} {meta.a b}' } },
    'replacement patterns are text; a placeholder the schema would refuse, and other braces, stay as written',
  )
})

t.test('templateMetaKeys and needsNodeMeta: the catalog is asked only for what the template reads', async (t) => {
  t.same(templateMetaKeys(TEMPLATE), ['bmc_address', 'rack'])
  t.same(templateMetaKeys({ plug: '{node}', ip: '{meta.a}-{meta.a}' }), ['a'])
  t.same(templateMetaKeys(undefined), [])
  const f = fencing({ template: TEMPLATE })
  t.equal(needsNodeMeta(f, 'cmp9'), true)
  t.equal(needsNodeMeta(f, 'cmp1'), false, 'an own entry: no meta')
  t.equal(needsNodeMeta(fencing({ template: { plug: '{node}' } }), 'cmp9'), false, '{node} only: no meta')
  t.equal(needsNodeMeta(fencing(), 'cmp9'), false)
})

function fencing(over: Partial<FencingConfig> = {}): FencingConfig {
  return {
    enabled: true,
    agent: '/usr/sbin/fence_ipmilan',
    options: { username: 'admin', lanplus: 1 },
    hosts: { cmp1: { ip: '10.0.0.1' } },
    timeout: 60,
    statusInterval: 1,
    ...over,
  }
}

t.test('fenceTarget: its own entry over the template, the template over nothing; fencing.options under both', async (t) => {
  const template = { ip: '{meta.bmc_address}', username: 'tmpl' }
  const meta = { bmc_address: '10.0.9.9' }
  const cases: Array<[string, FencingConfig, string, FenceTarget, boolean]> = [
    ['an own entry, no template', fencing(), 'cmp1', { options: { username: 'admin', lanplus: 1, ip: '10.0.0.1' } }, true],
    [
      'an own entry wins over the template (its meta unused)',
      fencing({ template }),
      'cmp1',
      { options: { username: 'admin', lanplus: 1, ip: '10.0.0.1' } },
      true,
    ],
    [
      'no entry, the template, over fencing.options',
      fencing({ template }),
      'cmp2',
      { options: { username: 'tmpl', lanplus: 1, ip: '10.0.9.9' } },
      true,
    ],
    [
      'no entry, no template: not fenced',
      fencing(),
      'cmp2',
      { reason: 'no fencing.hosts or fencing.hostsFile entry for cmp2, and no fencing.template' },
      false,
    ],
    [
      '`constructor` is a host like any other, not Object.prototype’s',
      fencing(),
      'constructor',
      { reason: 'no fencing.hosts or fencing.hostsFile entry for constructor, and no fencing.template' },
      false,
    ],
  ]
  for (const [name, f, host, want, covered] of cases) {
    t.same(fenceTarget(f, host, meta), want, name)
    t.equal(fencesHost(f, host), covered, `${name}: fencesHost`)
  }
  t.equal(fencesHost(fencing({ template }), 'cmp3'), true, 'with a template every host is to be fenced, filled or not')
  t.match(fenceTarget(fencing({ template }), 'cmp3', {}), { reason: /has no node meta bmc_address/ })
})

t.test('precedence hosts > hostsFile > template, through the loaded config', async (t) => {
  const config = `masakari:
  authUrl: http://k/v3
  auth: {userId: u, password: p, projectId: p}
consul: {agents: {management: 127.0.0.1:8500}}
fencing:
  enabled: true
  agent: fence_ipmilan
  hostsFile: bmc.yaml
  hosts:
    cmp1: {ip: 10.0.0.1}
  template: {ip: '{meta.bmc_address}'}
`
  const file = 'cmp1: {ip: 10.9.9.1, ipport: 6231}\ncmp2: {ip: 10.9.9.2}\n'
  const c = await loadConfig('/etc/mc/config.yaml', memoryConfigEnv({ '/etc/mc/config.yaml': config, '/etc/mc/bmc.yaml': file }))
  const meta = { bmc_address: '10.0.5.5' }
  t.same(fenceTarget(c.fencing, 'cmp1', meta), { options: { ip: '10.0.0.1' } }, 'hosts: its entry replaces the file’s whole')
  t.same(fenceTarget(c.fencing, 'cmp2', meta), { options: { ip: '10.9.9.2' } }, 'hostsFile over the template')
  t.same(fenceTarget(c.fencing, 'cmp3', meta), { options: { ip: '10.0.5.5' } }, 'the template for the rest')
})

t.test('checkedHosts: own entries, and with a template the management snapshot’s nodes but the non-hosts', async (t) => {
  const nodes = ['ctl1', 'ctl2', 'cmp1', 'cmp2', 'net1', 'cmp3']
  const not = { own: 'ctl1', servers: new Set(['ctl1', 'ctl2']), exclude: ['net1'] }
  const cases: Array<[string, FencingConfig, string[]]> = [
    ['no template: the own entries only', fencing({ hosts: { cmp9: { ip: 'x' }, cmp1: { ip: 'y' } } }), ['cmp1', 'cmp9']],
    [
      'a template: every host of the snapshot, own entries too, sorted',
      fencing({ template: { plug: '{node}' } }),
      ['cmp1', 'cmp2', 'cmp3'],
    ],
    [
      'an own entry not in the snapshot is still checked',
      fencing({ hosts: { cmp9: { ip: 'x' } }, template: { plug: '{node}' } }),
      ['cmp1', 'cmp2', 'cmp3', 'cmp9'],
    ],
    [
      'an own entry for a controller is checked: it was asked for',
      fencing({ hosts: { ctl2: { ip: 'x' } }, template: {} }),
      ['cmp1', 'cmp2', 'cmp3', 'ctl2'],
    ],
  ]
  for (const [name, f, want] of cases) t.same(checkedHosts(f, nodes, not), want, name)
  t.same(
    checkedHosts(fencing({ hosts: {}, template: {} }), nodes, { own: 'ctl1', servers: new Set(), exclude: [] }),
    ['cmp1', 'cmp2', 'cmp3', 'ctl2', 'net1'],
    'the servers unknown, nothing excluded: only this controller left out',
  )
})
