import t from 'tap'
import { askAgent, askAgents } from '../lib/consul-agents.js'
import type { Fetch } from '../lib/masakari.js'
import { check, response } from './helpers.js'

const agentAnswering =
  (leader: string, critical: unknown[]): Fetch =>
  async (url) =>
    url.endsWith('/v1/status/leader') ? response(200, JSON.stringify(leader)) : response(200, critical)

t.test('a leader and the failed nodes from serfHealth', async (t) => {
  const c = await askAgent(
    '127.0.0.1:8500',
    agentAnswering('127.0.0.1:8300', [check('cmp1', 'critical'), check('cmp2', 'critical', 'service:web')]),
    1,
  )
  t.ok(c.ok)
  if (c.ok) t.same([...c.critical], ['cmp1'], 'only serfHealth counts')
})

const failing: Array<[string, Fetch, RegExp]> = [
  ['no cluster leader', agentAnswering('', []), /no cluster leader/],
  [
    'agent refuses the connection',
    async () => {
      throw new Error('connect ECONNREFUSED 127.0.0.1:8500')
    },
    /ECONNREFUSED/,
  ],
  ['agent answers 500', async () => response(500, 'No cluster leader'), /answered 500/],
  [
    'agent answers garbage',
    async (url) => (url.endsWith('/leader') ? response(200, '"x"') : response(200, '{"not":"an array"}')),
    /must be a JSON array/,
  ],
  [
    'agent hangs',
    (_url, init) =>
      new Promise((_r, reject) =>
        init.signal.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' }))),
      ),
    /no answer within 0.05 s/,
  ],
]
for (const [name, fetch, reason] of failing) {
  t.test(`${name}: not confirmed, with the reason`, async (t) => {
    const c = await askAgent('http://127.0.0.1:8500/', fetch, 0.05)
    t.equal(c.ok, false)
    if (!c.ok) t.match(c.reason, reason)
  })
}

t.test('only configured networks are asked', async (t) => {
  const asked: string[] = []
  const fetch: Fetch = async (url) => {
    asked.push(url)
    return url.endsWith('/leader') ? response(200, '"l"') : response(200, [])
  }
  const answers = await askAgents(['management', 'tenant', 'storage'], { agents: { storage: '127.0.0.3:8500' }, timeout: 1 }, fetch)
  t.same(Object.keys(answers), ['storage'])
  t.ok(asked.every((u) => u.startsWith('http://127.0.0.3:8500/')))
})
