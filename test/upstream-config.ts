import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { checkConfig, type ConfigEnv, loadConfig } from '../lib/config/config.js'
import { parseStrategy } from '../lib/decide/strategy.js'
import { fromUpstream, isUpstreamConfig, parseIni } from '../lib/openstack/upstream-config.js'

const dir = join(import.meta.dirname, 'fixtures', 'upstream')
/** The end of the warning that names the ignored options. */
const IGNORED_WHY =
  " (upstream's logging, messaging, API service and other monitors are its own; polling, IPMI and pacemaker have no meaning with Consul's watches; domain-, system- or trust-scoped auth and client certificates are not supported)"
const sample = readFileSync(join(dir, 'masakarimonitors.conf.sample'), 'utf8')
const matrix = readFileSync(join(dir, 'matrix.yaml.sample'), 'utf8')

/** Upstream's sample with some options uncommented, as an operator edits it. */
function edited(values: Record<string, Record<string, string>>): string {
  let text = sample
  for (const [section, opts] of Object.entries(values)) {
    const at = text.indexOf(`[${section}]\n`)
    for (const [k, v] of Object.entries(opts)) {
      const i = text.indexOf(`\n#${k} = `, at)
      t.ok(i > at, `the sample lists ${section}.${k}`)
      text = `${text.slice(0, i + 1)}${k} = ${v}${text.slice(text.indexOf('\n', i + 1))}`
    }
  }
  return text
}

function env(files: Record<string, string>): ConfigEnv {
  return {
    readFile: async (p) => {
      if (p in files) return files[p]!
      throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' })
    },
    env: {},
    hostname: () => 'ctl1',
  }
}

t.test("upstream's sample parses: every option commented, nothing set", async (t) => {
  const problems: string[] = []
  const sections = parseIni(sample, problems, 'sample')
  t.same(problems, [])
  t.ok(sections.has('api') && sections.has('consul') && sections.has('host'))
  t.equal(
    [...sections.values()].reduce((n, s) => n + s.size, 0),
    0,
  )
  t.ok(isUpstreamConfig('/x/masakarimonitors.conf', sample))
  t.ok(isUpstreamConfig('/x/mm', sample), 'by its first line too')
  t.notOk(isUpstreamConfig('/x/config.yaml', 'stateDir: /x\n'))
})

t.test("upstream's matrix.yaml sample is a valid strategy as it is", async (t) => {
  const s = parseStrategy(matrix, 'matrix.yaml.sample')
  t.same(s.sequence, ['management', 'tenant', 'storage'])
})

const filled = edited({
  DEFAULT: { hostname: 'ctl1.example.org' },
  api: {
    region: 'RegionTwo',
    api_interface: 'internal',
    auth_url: 'http://keystone:5000/v3',
    project_name: 'service',
    project_domain_name: 'Default',
    username: 'masakari',
    user_domain_name: 'Default',
    password: 'upstream-secret',
  },
  consul: {
    agent_manage: '192.168.101.1:8500',
    agent_tenant: '192.168.103.1:8500',
    agent_storage: '192.168.102.1:8500',
    matrix_config_file: 'matrix.yaml',
  },
  host: { monitoring_driver: 'consul', monitoring_interval: '10', monitoring_samples: '3', disable_ipmi_check: 'True' },
})

t.test(
  'the edited sample given as the config file itself: credentials, agents, strategy, hold; what has no meaning is warned about',
  async (t) => {
    const path = '/etc/masakarimonitors/masakarimonitors.conf'
    const checked = await checkConfig(path, env({ [path]: filled }))
    t.same(checked.problems, [])
    t.match(checked.config, {
      hostname: 'ctl1.example.org',
      strategy: '/etc/masakarimonitors/matrix.yaml',
      upstreamConfig: path,
      secret: 'upstream-secret',
      guards: { hold: { recovery: 20 } },
      consul: { agents: { management: '192.168.101.1:8500', tenant: '192.168.103.1:8500', storage: '192.168.102.1:8500' } },
      masakari: {
        authUrl: 'http://keystone:5000/v3',
        region: 'RegionTwo',
        interface: 'internal',
        auth: { method: 'password', username: 'masakari' },
      },
    })
    t.same(checked.warnings, [`options in ${path} not used here: [host] disable_ipmi_check${IGNORED_WHY}`])
  },
)

t.test('upstreamConfig in our config: our keys win, upstream fills the rest', async (t) => {
  const files = {
    '/etc/mc/config.yaml':
      'upstreamConfig: /etc/masakarimonitors/masakarimonitors.conf\nstrategy: mine.yaml\nmasakari:\n  region: RegionOne\n',
    '/etc/masakarimonitors/masakarimonitors.conf': filled,
  }
  const c = await loadConfig('/etc/mc/config.yaml', env(files))
  t.equal(c.strategy, '/etc/mc/mine.yaml')
  t.equal(c.masakari.region, 'RegionOne')
  t.equal(c.masakari.authUrl, 'http://keystone:5000/v3')
  t.equal(c.consul.agents.storage, '192.168.102.1:8500')
})

t.test('problems in the upstream file name it', async (t) => {
  const problems: string[] = []
  const u = fromUpstream(
    '[api]\nauth_type = token\nnot an option\n[host]\napi_retry_max = 3\napi_retry_interval = 5\n',
    '/u.conf',
    problems,
  )
  t.same(problems, [
    '/u.conf:3: not an option line of an INI section',
    "[api] auth_type in /u.conf: auth type 'token' is not supported (password or v3applicationcredential)",
  ])
  t.same(u.settings, { masakari: { delivery: { initialBackoff: 5, maxBackoff: 5, expiry: 15 } } })
})

/** kolla-ansible's masakari-monitors.conf.j2 as it renders for a hostmonitor without TLS (openstack_cacert is ""). */
const kolla = `[DEFAULT]
debug = False
log_dir = /var/log/kolla/masakari

[api]
region = RegionOne
auth_url = http://10.0.0.10:5000
user_domain_id = default
project_name = service
project_domain_id = default
username = masakari
password = kolla-secret
cafile =
api_interface = internal

[host]
restrict_to_remotes = true
disable_ipmi_check = true

[oslo_concurrency]
lock_path = /var/lib/masakari/tmp
`

t.test("kolla-ansible's config: an empty cafile is unset, as in keystoneauth, not its directory to read", async (t) => {
  const path = '/etc/masakari/masakari-monitors.conf'
  const files = env({ [path]: kolla })
  const readFile = files.readFile
  files.readFile = async (p) => {
    if (p === '/etc/masakari') throw Object.assign(new Error('EISDIR: illegal operation on a directory, read'), { code: 'EISDIR' })
    return readFile(p)
  }
  const checked = await checkConfig(path, files)
  t.same(checked.problems, [])
  t.match(checked.config?.masakari, { authUrl: 'http://10.0.0.10:5000', region: 'RegionOne', interface: 'internal' })
  t.equal(checked.config?.masakari.caFile, undefined)
  t.equal(checked.config?.caPem, undefined)
})

t.test('an option with an empty value is not set, whichever option and however it is written empty', async (t) => {
  const problems: string[] = []
  const sections = parseIni(
    '[api]\ncafile =\ncertfile = ""\nkeyfile:\nregion = RegionOne\nregion =\n[consul]\nagent_manage = \n',
    problems,
    'x',
  )
  t.same(problems, [])
  t.same([...sections.get('api')!], [], 'the last of repeated options wins, an empty one too')
  t.same([...sections.get('consul')!], [])
})

t.test('every option set that is not used is named once, in one warning', async (t) => {
  const text = kolla
    .replace('debug = False\n', 'debug = False\ntransport_url = rabbit://openstack:x@10.0.0.10:5672//\ndebug = True\n')
    .replace('cafile =\n', 'cafile =\ncertfile = /etc/ssl/client.pem\nsystem_scope = all\ncollect_timing = true\n')
    .replace('[host]\n', '[host]\nmonitoring_interval = 10\n')
    .concat(
      '\n[process]\nprocess_list_path = /etc/masakarimonitors/process_list.yaml\ncheck_interval = 5\n[libvirt]\nconnection_uri = qemu:///system\n',
    )
  const problems: string[] = []
  const u = fromUpstream(text, '/etc/masakari/masakari-monitors.conf', problems)
  t.same(problems, [])
  t.same(u.warnings, [
    'options in /etc/masakari/masakari-monitors.conf not used here: [DEFAULT] debug, transport_url, log_dir; ' +
      '[api] certfile, system_scope, collect_timing; [host] monitoring_interval, restrict_to_remotes, disable_ipmi_check; ' +
      `[oslo_concurrency] lock_path; [process] process_list_path, check_interval; [libvirt] connection_uri${IGNORED_WHY}`,
  ])
})

t.test('no warning for an option that is used', async (t) => {
  const used = {
    DEFAULT: ['hostname = ctl1'],
    api: [
      'auth_url = http://k:5000',
      'auth_type = password',
      'username = m',
      'user_domain_name = Default',
      'password = pw',
      'project_name = service',
      'project_domain_name = Default',
      'region = R',
      'api_interface = internal',
      'cafile = ca.pem',
      'insecure = false',
      'timeout = 5',
      'api_version = v1',
      'default_domain_id = default',
    ],
    host: [
      'monitoring_driver = consul',
      'monitoring_interval = 10',
      'monitoring_samples = 3',
      'api_retry_max = 3',
      'api_retry_interval = 5',
    ],
    consul: ['agent_manage = a:8500', 'agent_tenant = b:8500', 'agent_storage = c:8500', 'matrix_config_file = matrix.yaml'],
  }
  const text = Object.entries(used)
    .map(([section, lines]) => `[${section}]\n${lines.join('\n')}\n`)
    .join('')
  const problems: string[] = []
  t.same(fromUpstream(text, '/u.conf', problems).warnings, [])
  t.same(problems, [])
})
