import t from 'tap'
import { askAgent, askAgents, goDurationSeconds } from '../lib/consul/consul-agents.js'
import type { Fetch } from '../lib/openstack/masakari.js'
import { check, response } from './helpers.js'

/** This controller's node name (config.hostname), which every answer that can see nodes lists. */
const OWN = 'ctl'
const ownChecks = [check(OWN, 'passing'), check(OWN, 'passing', 'service:consul')]

/** An agent: `routes` by path ending, else the leader, the own node's checks and the critical list. */
const agentAnswering =
  (
    leader: string,
    critical: unknown[],
    own: unknown[] = ownChecks,
    routes: Record<string, () => ReturnType<typeof response>> = {},
  ): Fetch =>
  async (url) => {
    for (const [end, answer] of Object.entries(routes)) if (url.endsWith(end)) return answer()
    if (url.endsWith('/v1/status/leader')) return response(200, JSON.stringify(leader))
    if (url.endsWith(`/v1/health/node/${OWN}`)) return response(200, own)
    return response(200, critical)
  }

t.test('a leader and the failed nodes from serfHealth', async (t) => {
  const c = await askAgent(
    '127.0.0.1:8500',
    OWN,
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
    agentAnswering('x', [], ownChecks, { '/v1/health/state/critical': () => response(200, '{"not":"an array"}') }),
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
    const c = await askAgent('http://127.0.0.1:8500/', OWN, fetch, 0.05)
    t.equal(c.ok, false)
    if (!c.ok) t.match(c.reason, reason)
  })
}

t.test('only configured networks are asked', async (t) => {
  const asked: string[] = []
  const fetch: Fetch = async (url, init) => {
    asked.push(url)
    return agentAnswering('l', [])(url, init)
  }
  const answers = await askAgents(['management', 'tenant', 'storage'], OWN, { agents: { storage: '127.0.0.3:8500' }, timeout: 1 }, fetch)
  t.same(Object.keys(answers), ['storage'])
  t.ok(asked.every((u) => u.startsWith('http://127.0.0.3:8500/')))
})

const durations: Array<[string, number | undefined]> = [
  ['1s', 1],
  ['400ms', 0.4],
  ['1m30s', 90],
  ['1.5s', 1.5],
  ['250us', 0.00025],
  ['', undefined],
  ['1 s', undefined],
  ['5', undefined],
]
for (const [text, seconds] of durations) {
  t.test(`Go duration ${JSON.stringify(text)} → ${seconds}`, async (t) => {
    t.equal(goDurationSeconds(text), seconds)
  })
}

const withSelf = (self: unknown): Fetch =>
  agentAnswering('127.0.0.1:8300', [check('cmp1', 'critical')], ownChecks, { '/v1/agent/self': () => response(200, JSON.stringify(self)) })

t.test("the agent's gossip tuning comes with its confirmation", async (t) => {
  const c = await askAgent(
    '127.0.0.1:8500',
    OWN,
    withSelf({ DebugConfig: { GossipLANProbeInterval: '400ms', GossipLANSuspicionMult: 2 } }),
    1,
  )
  t.match(c, { ok: true, gossip: { probeInterval: 0.4, suspicionMult: 2 } })
})

t.test('an agent that does not tell its gossip tuning still confirms (the config is used)', async (t) => {
  for (const self of [{ Config: {} }, { DebugConfig: { GossipLANProbeInterval: 'soon', GossipLANSuspicionMult: 2 } }]) {
    const c = await askAgent('127.0.0.1:8500', OWN, withSelf(self), 1)
    t.equal(c.ok, true)
    t.notOk('gossip' in c, JSON.stringify(self))
  }
})

const withMetrics = (metrics: unknown): Fetch =>
  agentAnswering('127.0.0.1:8300', [check('cmp1', 'critical')], ownChecks, {
    '/v1/agent/metrics': () => response(200, JSON.stringify(metrics)),
    '/v1/agent/self': () => response(404, 'not here'),
  })
const gauge = (Name: string, Value: number) => ({ Name, Value, Labels: {} })
const counter = (Name: string, Count: number) => ({ Name, Count, Labels: {} })
const metricsCases: Array<[string, unknown, RegExp | undefined]> = [
  [
    'health score 4 or more (probes failing without nacks)',
    { Gauges: [gauge('consul.memberlist.health.score', 4)], Counters: [] },
    /^memberlist health score 4 of 8$/,
  ],
  [
    'a death declared without enough confirmations',
    { Gauges: [], Counters: [counter('consul.memberlist.degraded.timeout', 1)] },
    /^1 death\(s\) declared without enough peers confirming$/,
  ],
  [
    'both',
    { Gauges: [gauge('consul.memberlist.health.score', 6)], Counters: [counter('consul.memberlist.degraded.timeout', 2)] },
    /score 6 of 8, 2 death/,
  ],
  [
    'a health score of 2 or 3 alone: the agent probed a lone failed host itself just before the interval closed',
    { Gauges: [gauge('consul.memberlist.health.score', 3)], Counters: [] },
    undefined,
  ],
  [
    'a health score of 1 (one late answer on a busy agent) is not enough',
    { Gauges: [gauge('consul.memberlist.health.score', 1)], Counters: [] },
    undefined,
  ],
  [
    'a lone failure in a healthy cluster: score 0, deaths confirmed',
    { Gauges: [gauge('consul.memberlist.health.score', 0)], Counters: [counter('consul.memberlist.msg.dead', 1)] },
    undefined,
  ],
  ['metrics the agent will not give', 'Permission denied', undefined],
]
for (const [name, metrics, degraded] of metricsCases) {
  t.test(`agent metrics: ${name}`, async (t) => {
    const c = await askAgent('127.0.0.1:8500', OWN, withMetrics(metrics), 1)
    t.equal(c.ok, true, 'still a confirmation')
    if (!c.ok) return
    if (degraded) t.match(c.degraded, degraded)
    else t.notOk('degraded' in c)
  })
}

// With ACLs on, a token without node:read gets 200 and lists filtered to nothing: "nothing
// failed" would read as every host recovered.
const blind: Array<[string, unknown[]]> = [
  ['no node at all (a token without node:read)', []],
  ["the own node's service checks but not its serfHealth", [check(OWN, 'passing', 'service:consul')]],
  ['another node only', [check('cmp1', 'passing')]],
]
for (const [name, own] of blind) {
  t.test(`an answer that cannot see the own node is refused, naming the ACL rule: ${name}`, async (t) => {
    const c = await askAgent('127.0.0.1:8500', OWN, agentAnswering('127.0.0.1:8300', [], own), 1)
    t.match(c, { ok: false, refused: true })
    if (!c.ok) t.match(c.reason, /does not show this controller's own node ctl .*node_prefix "" \{ policy = "read" \}/)
  })
}

t.test("the own node's checks are asked, its name escaped", async (t) => {
  const asked: string[] = []
  const fetch: Fetch = async (url, init) => {
    asked.push(url)
    return url.endsWith('/v1/health/node/ctl%201%2Fx') ? response(200, [check('ctl 1/x', 'passing')]) : agentAnswering('l', [])(url, init)
  }
  const c = await askAgent('127.0.0.1:8500', 'ctl 1/x', fetch, 1)
  t.equal(c.ok, true)
  t.ok(asked.includes('http://127.0.0.1:8500/v1/health/node/ctl%201%2Fx'), asked.join(' '))
})
