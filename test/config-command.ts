/** `masakari-consul config` in-process: each effective setting with where it came from, secrets never printed. */
import t, { type Test } from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main as evaluate } from '../handlers/operator-cli.js'
import type { Setting } from '../lib/commands/config-command.js'
import { EXIT } from '../lib/run/cli.js'
import { fakeDeps } from './helpers.js'

/** A kolla-ansible style masakarimonitors.conf, with the [host] and [consul] options a consul driver user sets. */
const upstream = `[DEFAULT]
hostname = ctl1
debug = False

[api]
region = RegionTwo
auth_url = http://10.0.0.10:5000
user_domain_id = default
project_name = service
project_domain_id = default
username = masakari
password = upstream-secret
cafile =

[host]
monitoring_driver = consul
monitoring_interval = 10
monitoring_samples = 3
api_retry_max = 3

[consul]
agent_manage = 192.168.101.1:8500
matrix_config_file = matrix.yaml
`

async function files(t: Test, yaml: string | undefined) {
  const dir = t.testdir({})
  const conf = join(dir, 'masakarimonitors.conf')
  await writeFile(conf, upstream)
  await writeFile(join(dir, 'matrix.yaml'), 'sequence: [management, tenant, storage]\nmatrix: []\n')
  const config = join(dir, 'config.yaml')
  if (yaml !== undefined) await writeFile(config, yaml.replace('UPSTREAM', conf))
  return { dir, conf, config }
}

/** The command's output as key → the rest of its line ("RegionOne  (from …)"). */
function lines(stdout: string[]): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of stdout.join('').split('\n').slice(1)) {
    const m = /^(\S+)\s+= (.*)$/.exec(line)
    if (m) out.set(m[1]!, m[2]!)
  }
  return out
}

t.test('each setting with where it came from: this file and key, upstream section and option, a variable, the default', async (t) => {
  const { dir, conf, config } = await files(t, 'upstreamConfig: UPSTREAM\nstateDir: state\nmasakari:\n  region: RegionOne\n')
  const deps = fakeDeps({ env: { OS_INTERFACE: 'internal' } })
  t.equal(await evaluate(['config', '--config', config], deps), EXIT.ok)
  const got = lines(deps.rec.stdout)
  t.equal(got.get('stateDir'), `${join(dir, 'state')}  (from ${config}: stateDir)`)
  t.equal(got.get('masakari.region'), `RegionOne  (from ${config}: masakari.region)`)
  t.equal(got.get('masakari.authUrl'), `http://10.0.0.10:5000  (from [api] auth_url in ${conf})`)
  t.equal(got.get('masakari.interface'), 'internal  (from OS_INTERFACE)')
  t.equal(got.get('masakari.auth.username'), `masakari  (from [api] username in ${conf})`)
  t.equal(got.get('guards.hold.recovery'), `20  (from [host] monitoring_samples = 3, monitoring_interval = 10 in ${conf}: (3 − 1) × 10 s)`)
  t.equal(got.get('masakari.delivery.expiry'), `30  (from [host] api_retry_max = 3 × api_retry_interval = 10 (its default) in ${conf})`)
  t.equal(got.get('masakari.delivery.concurrency'), '4  (default)')
  t.equal(got.get('consul.agents.management'), `192.168.101.1:8500  (from [consul] agent_manage in ${conf})`)
  t.equal(got.get('strategy'), `${join(dir, 'matrix.yaml')}  (from [consul] matrix_config_file in ${conf})`)
  t.equal(got.get('hostname'), `ctl1  (from [DEFAULT] hostname in ${conf})`)
  t.equal(got.get('resync'), '60  (default)')
  t.equal(got.get('masakari.caFile'), '(not set: system CAs)  (default)', "upstream's empty cafile is not set")
  t.equal(got.get('masakari.endpoint'), "(not set: from the token's catalog)  (default)")
  t.match(deps.rec.stdout.join(''), new RegExp(`\nwarning: options in ${conf} not used here: \\[DEFAULT\\] debug `))
})

t.test('secrets are never printed, only where they came from', async (t) => {
  const { config } = await files(t, 'upstreamConfig: UPSTREAM\n')
  for (const json of [false, true]) {
    const deps = fakeDeps({ env: { CONSUL_HTTP_TOKEN: 'consul-acl-secret' } })
    t.equal(await evaluate(['config', '--config', config, ...(json ? ['--json'] : [])], deps), EXIT.ok)
    const out = deps.rec.stdout.join('')
    t.notMatch(out, 'upstream-secret')
    t.notMatch(out, 'consul-acl-secret')
    if (json) continue
    t.match(lines(deps.rec.stdout).get('masakari.auth.password'), /^\(set, from \[api\] password in \S+masakarimonitors\.conf\)$/)
    t.equal(lines(deps.rec.stdout).get('consul.token'), '(set, from CONSUL_HTTP_TOKEN)')
  }
})

t.test('--json: the config file, every setting as {key, value, from}, the warnings', async (t) => {
  const { conf, config } = await files(t, 'upstreamConfig: UPSTREAM\n')
  const deps = fakeDeps()
  t.equal(await evaluate(['config', '--config', config, '--json'], deps), EXIT.ok)
  const out = JSON.parse(deps.rec.stdout.join('')) as { config: string; settings: Setting[]; warnings: string[] }
  t.equal(out.config, config)
  const by = new Map(out.settings.map((s) => [s.key, s]))
  t.same(by.get('masakari.authUrl'), { key: 'masakari.authUrl', value: 'http://10.0.0.10:5000', from: `[api] auth_url in ${conf}` })
  t.same(by.get('masakari.auth.password'), { key: 'masakari.auth.password', secret: true, from: `[api] password in ${conf}` })
  t.same(by.get('guards.hold.recovery')?.value, 20)
  t.same(by.get('masakari.endpoint'), { key: 'masakari.endpoint', unset: "from the token's catalog", from: 'default' })
  t.equal(out.warnings.length, 1)
})

t.test("upstream's file given as --config: its settings are from its sections, none from a YAML file", async (t) => {
  const { conf } = await files(t, undefined)
  const deps = fakeDeps()
  t.equal(await evaluate(['config', '--config', conf], deps), EXIT.ok)
  const got = lines(deps.rec.stdout)
  t.equal(got.get('upstreamConfig'), `${conf}  (from --config ${conf}, upstream's file itself)`)
  t.equal(got.get('hostname'), `ctl1  (from [DEFAULT] hostname in ${conf})`)
  t.equal(got.get('stateDir'), '/var/lib/masakari-consul  (default)')
})

t.test('an invalid config: its problems, exit 78, no settings', async (t) => {
  const { config } = await files(t, 'upstreamConfig: UPSTREAM\nresync: 1\n')
  const deps = fakeDeps()
  t.equal(await evaluate(['config', '--config', config], deps), EXIT.config)
  t.same(deps.rec.stdout, [])
  t.match(deps.rec.stderr.join(''), /resync: Too small/)
})
