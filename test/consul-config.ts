import t from 'tap'
import { execFile } from 'node:child_process'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { NETWORKS } from '../lib/base/networks.js'
import { DEFAULT_STRATEGY, matchStrategy, parseStrategy } from '../lib/decide/strategy.js'

const run = promisify(execFile)
const root = join(import.meta.dirname, '..', 'consul-config')

for (const network of NETWORKS) {
  t.test(`${network}: controller agent + watch and compute agent pass consul validate`, async (t) => {
    const server = await run('consul', ['validate', join(root, 'controller', `${network}.json`), join(root, 'watches', `${network}.json`)])
    t.match(server.stdout, /Configuration is valid/)
    const client = await run('consul', ['validate', join(root, 'compute', `${network}.json`)])
    t.match(client.stdout, /Configuration is valid/)
  })
  t.test(`${network}: the watch runs the bundled handler for its own network`, async (t) => {
    const watch = JSON.parse(await readFile(join(root, 'watches', `${network}.json`), 'utf8'))
    t.match(watch, { watches: [{ type: 'checks' }] })
    const args: string[] = watch.watches[0].args
    t.same(args.slice(0, 3), ['/bin/sh', '/opt/masakari-consul/consul-config/watch.sh', network], 'through watch.sh, for its own network')
    t.match(args[5], /dist\/checks-handler\.js$/)
  })
}

t.test('the fast-detection gossip profile validates with the agent configs', async (t) => {
  for (const role of ['controller', 'compute']) {
    const r = await run('consul', ['validate', join(root, role, 'storage.json'), join(root, 'gossip-fast.json')])
    t.match(r.stdout, /Configuration is valid/, role)
  }
  const profile = JSON.parse(await readFile(join(root, 'gossip-fast.json'), 'utf8'))
  t.match(profile, { gossip_lan: { probe_interval: String, probe_timeout: String, suspicion_mult: Number } })
})

t.test('shipped strategies are valid; default.yaml decides like the built-in default', async (t) => {
  const files = await readdir(join(root, 'strategies'))
  t.ok(files.length >= 2)
  for (const f of files) parseStrategy(await readFile(join(root, 'strategies', f), 'utf8'), f)
  const shipped = parseStrategy(await readFile(join(root, 'strategies', 'default.yaml'), 'utf8'), 'default.yaml')
  for (const m of ['up', 'down'] as const)
    for (const te of ['up', 'down'] as const)
      for (const s of ['up', 'down'] as const) {
        const v = { management: m, tenant: te, storage: s }
        t.equal(matchStrategy(shipped, v).recovery, matchStrategy(DEFAULT_STRATEGY, v).recovery)
      }
  const mgmt = parseStrategy(await readFile(join(root, 'strategies', 'management-only.yaml'), 'utf8'), 'm')
  t.same(mgmt.sequence, ['management'])
})

t.test("the logrotate snippet rotates the example config's logFile as the agents' user, by rename (each run opens it anew)", async (t) => {
  const text = await readFile(join(root, 'logrotate', 'masakari-consul'), 'utf8')
  const example = await readFile(join(root, 'monitor', 'config.yaml'), 'utf8')
  const logFile = /^logFile: (\S+)$/m.exec(example)?.[1]
  t.ok(logFile, 'the example config has a logFile')
  t.match(text, new RegExp(`^${logFile!.replaceAll('.', '\\.')} \\{$`, 'm'), 'the same path')
  t.match(text, /^\s+su consul consul$/m)
  t.match(text, /^\s+create 0640 consul consul$/m, 'as docs/admin-guide.md section 1 has the log directory')
  t.notMatch(text, /^\s+copytruncate/m)
})

t.test('the shipped ACL policy (consul-config/acl) has the rules the monitor needs and nothing more', async (t) => {
  // The end-to-end tests create their tokens with this file (stack/real-stack.ts MONITOR_ACL_RULES).
  const text = await readFile(join(root, 'acl', 'masakari-consul.hcl'), 'utf8')
  const rules = text
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter((l) => l !== '')
  t.same(rules, [
    'node_prefix "" { policy = "read" }',
    'service_prefix "" { policy = "read" }',
    'agent_prefix "" { policy = "read" }',
    'key_prefix "masakari-consul/" { policy = "write" }',
    'session_prefix "" { policy = "write" }',
    'operator = "read"',
  ])
})
