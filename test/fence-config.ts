/** The config's `fencing` section: defaults, the agent's path, the password as Keystone's is read, every problem at once with its path. */
import t from 'tap'
import { memoryConfigEnv } from './helpers.js'
import { ConfigError, loadConfig } from '../lib/config/config.js'

/** Modes default to 0600: the secret rule is checked, as on a real controller. */
const env = (files: Record<string, string>, vars: Record<string, string> = {}, modes: Record<string, number> = {}) =>
  memoryConfigEnv(files, vars, modes)

const MASAKARI = 'masakari:\n  authUrl: http://k/v3\n  auth: {userId: u, password: p, projectId: p}\n'
const load = (text: string, files: Record<string, string> = {}, vars: Record<string, string> = {}, modes: Record<string, number> = {}) =>
  loadConfig('/etc/mc/config.yaml', env({ '/etc/mc/config.yaml': `${text}${MASAKARI}`, ...files }, vars, modes))
const problems = async (text: string, files: Record<string, string> = {}, vars: Record<string, string> = {}) => {
  const err = (await load(text, files, vars).catch((e) => e)) as ConfigError
  t.type(err, ConfigError)
  return err.problems
}

t.test('off by default: nothing to set, nothing read', async (t) => {
  const c = await load('')
  t.same(c.fencing, { enabled: false, options: {}, hosts: {}, timeout: 60, statusInterval: 1 })
  t.equal(c.fencePassword, undefined)
  // Off, its password is not read: a missing one must not stop every watch run.
  const off = await load('fencing: {passwordEnv: MC_FENCE_PASSWORD}\n')
  t.equal(off.fencePassword, undefined)
})

const IPMI = `fencing:
  enabled: true
  agent: fence_ipmilan
  options: {lanplus: 1, username: admin, ipport: 623}
  hosts:
    cmp1: {ip: 10.0.0.11}
    cmp2: {ip: 10.0.0.12, ipport: 6232}
  timeout: 30
  statusInterval: 2
`

t.test('on: a bare agent name is /usr/sbin/NAME; a password file relative to the config, trimmed', async (t) => {
  const c = await load(`${IPMI}  passwordFile: fence-password\n`, { '/etc/mc/fence-password': ' ipmi-secret\n' })
  t.same(c.fencing, {
    enabled: true,
    agent: '/usr/sbin/fence_ipmilan',
    options: { lanplus: 1, username: 'admin', ipport: 623 },
    hosts: { cmp1: { ip: '10.0.0.11' }, cmp2: { ip: '10.0.0.12', ipport: 6232 } },
    passwordFile: '/etc/mc/fence-password',
    timeout: 30,
    statusInterval: 2,
  })
  t.equal(c.fencePassword, 'ipmi-secret')
  t.same(c.warnings, [])
  const path = await load(`${IPMI.replace('fence_ipmilan', 'agents/fence_x')}  passwordEnv: MC_FENCE\n`, {}, { MC_FENCE: 'from-env' })
  t.equal(path.fencing.agent, '/etc/mc/agents/fence_x', 'a path: relative to the config')
  t.equal(path.fencePassword, 'from-env')
  const none = await load(IPMI)
  t.equal(none.fencePassword, undefined, 'no password: none sent (fence_virsh with a key, say)')
})

t.test('a password file others can read: the secret rule, as a warning', async (t) => {
  const c = await load(
    `${IPMI}  passwordFile: /etc/mc/fence-password\n`,
    { '/etc/mc/fence-password': 'x\n' },
    {},
    { '/etc/mc/fence-password': 0o644 },
  )
  t.match(c.warnings, [
    /^\/etc\/mc\/fence-password holds the fence agents' password and its group and others can read it \(mode 0644\): chmod 0600 it; the secret file must be owned by the user the watches run as/,
  ])
})

t.test('the schema: every problem at once, each with its path, with the other sections’ too', async (t) => {
  const text = `fencing:
  enabled: yes please
  timeout: -1
  statusIntervall: 2
  options: {password: x, "bad key": 1}
  hosts:
    cmp1: {ip: "10.0.0.1\\naction=on", action: reboot}
guards: {hold: {recovery: -1}}
`
  t.same(await problems(text), [
    'guards.hold.recovery: Too small: expected number to be >=0',
    'fencing.enabled: Invalid input: expected boolean, received string',
    'fencing.options.password: not an option here: give it as fencing.passwordFile or fencing.passwordEnv, never in the config',
    'fencing.options.bad key: a fence agent option name: letters, digits, _ and - only',
    'fencing.hosts.cmp1.ip: a fence agent option value is one stdin line: no line break or control character',
    'fencing.hosts.cmp1.action: not an option here: the monitor sets it for each run (off, status, monitor)',
    'fencing.timeout: Too small: expected number to be >0',
    "fencing.statusIntervall: unknown key; did you mean 'statusInterval'?",
  ])
})

t.test('on: what the section needs, every missing piece at once', async (t) => {
  t.same(await problems('fencing: {enabled: true, passwordFile: a, passwordEnv: B}\n'), [
    'fencing: set at most one of passwordFile, passwordEnv (2 given)',
    'fencing.agent: not set: the fence agent to run (e.g. fence_ipmilan, fence_redfish)',
    'fencing.hosts: no host: each fenced host needs its options (ip, …), in fencing.hosts, fencing.hostsFile or fencing.template',
  ])
  t.same(await problems(`${IPMI}  passwordFile: nope\n`), [
    "fencing.passwordFile: cannot read /etc/mc/nope: ENOENT: no such file or directory, open '/etc/mc/nope'",
  ])
  t.same(await problems(`${IPMI}  passwordFile: empty\n`, { '/etc/mc/empty': '\n' }), ['fencing.passwordFile: /etc/mc/empty is empty'])
  t.match(await problems(`${IPMI}  passwordEnv: MC_FENCE\n`), [/^fencing\.passwordEnv: environment variable MC_FENCE is not set/])
  // With another section's problem: both, in one run.
  const both = await problems(`${IPMI}  passwordEnv: MC_FENCE\nfirstSight: maybe\n`)
  t.match(both, [/^firstSight: /, /^fencing\.passwordEnv: /])
})

const IPMI_NO_HOSTS = IPMI.replace('  hosts:\n    cmp1: {ip: 10.0.0.11}\n    cmp2: {ip: 10.0.0.12, ipport: 6232}\n', '')

/** IPMI's section with its hosts in a file beside the config, and the config's own entries over it. */
const WITH_FILE = `${IPMI}  hostsFile: bmc.yaml\n`

t.test('hostsFile: YAML or JSON beside the config, under fencing.hosts (an entry there replaces the file’s whole)', async (t) => {
  const yaml = 'cmp2: {ip: 10.9.9.2}\ncmp3: {ip: 10.9.9.3, plug: "3"}\n'
  const c = await load(WITH_FILE, { '/etc/mc/bmc.yaml': yaml })
  t.equal(c.fencing.hostsFile, '/etc/mc/bmc.yaml', 'relative to the config')
  t.same(c.fencing.hosts, {
    cmp1: { ip: '10.0.0.11' },
    cmp2: { ip: '10.0.0.12', ipport: 6232 },
    cmp3: { ip: '10.9.9.3', plug: '3' },
  })
  t.equal(c.origins['fencing.hosts.cmp3'], '/etc/mc/bmc.yaml: cmp3', 'where a file entry came from (masakari-consul config)')
  t.equal(c.origins['fencing.hosts.cmp2.ip'], '/etc/mc/config.yaml: fencing.hosts.cmp2.ip', "the config's own entry is the config's")
  t.notOk('fencing.hosts.cmp2' in c.origins, 'the file’s cmp2 is not said: replaced')
  const json = await load(WITH_FILE.replace('bmc.yaml', '/srv/bmc.json'), {
    '/srv/bmc.json': '{"cmp4": {"ip": "10.9.9.4", "ipport": 623}}',
  })
  t.same(json.fencing.hosts.cmp4, { ip: '10.9.9.4', ipport: 623 })
  const alone = await load(`${IPMI_NO_HOSTS}  hostsFile: bmc.yaml\n`, { '/etc/mc/bmc.yaml': yaml })
  t.same(Object.keys(alone.fencing.hosts), ['cmp2', 'cmp3'], 'the file alone is enough')
  const off = await load(`fencing: {hostsFile: nowhere.yaml}\n`)
  t.equal(off.fencing.hostsFile, '/etc/mc/nowhere.yaml', 'off: the file is not read (a missing one must not stop every watch run)')
})

t.test('hostsFile: a missing, unreadable or invalid file is a config problem naming the file, every entry’s with its key', async (t) => {
  t.same(await problems(WITH_FILE), [
    "fencing.hostsFile: cannot read /etc/mc/bmc.yaml: ENOENT: no such file or directory, open '/etc/mc/bmc.yaml'",
  ])
  t.match(await problems(WITH_FILE, { '/etc/mc/bmc.yaml': 'cmp1: {ip: [\n' }), [
    /^fencing\.hostsFile: \/etc\/mc\/bmc\.yaml: not valid YAML: /,
  ])
  t.match(await problems(WITH_FILE.replace('bmc.yaml', 'bmc.json'), { '/etc/mc/bmc.json': '{"cmp1": ' }), [
    /^fencing\.hostsFile: \/etc\/mc\/bmc\.json: not valid JSON: /,
  ])
  t.same(await problems(WITH_FILE, { '/etc/mc/bmc.yaml': '- cmp1\n' }), [
    'fencing.hostsFile: /etc/mc/bmc.yaml: (top level): Invalid input: expected record, received array',
  ])
  const bad = `cmp1: {ip: "10.0.0.1\\naction=on"}
cmp2: {action: reboot, "bad key": 1}
cmp3: {ip: "{meta.bmc_address}"}
cmp4: 623
"": {ip: x}
`
  t.same(await problems(`${WITH_FILE}  passwordEnv: MC_FENCE\nfirstSight: maybe\n`, { '/etc/mc/bmc.yaml': bad }), [
    'firstSight: Invalid option: expected one of "notify"|"baseline"',
    'fencing.hostsFile: /etc/mc/bmc.yaml: cmp1.ip: a fence agent option value is one stdin line: no line break or control character',
    'fencing.hostsFile: /etc/mc/bmc.yaml: cmp2.action: not an option here: the monitor sets it for each run (off, status, monitor)',
    'fencing.hostsFile: /etc/mc/bmc.yaml: cmp2.bad key: a fence agent option name: letters, digits, _ and - only',
    'fencing.hostsFile: /etc/mc/bmc.yaml: cmp3.ip: placeholders ({node}, {meta.KEY}) are filled only in fencing.template: here the agent would get them as written',
    'fencing.hostsFile: /etc/mc/bmc.yaml: cmp4: Invalid input: expected record, received number',
    'fencing.hostsFile: /etc/mc/bmc.yaml: "": Invalid key in record',
    "fencing.passwordEnv: environment variable MC_FENCE is not set (the watches get it from the consul-*.service units' EnvironmentFile, /etc/masakari-consul/environment)",
  ])
  const none = `${IPMI_NO_HOSTS}  hostsFile: bmc.yaml\n`
  t.same(await problems(none, { '/etc/mc/bmc.yaml': '' }), [
    'fencing.hosts: no host: each fenced host needs its options (ip, …), in fencing.hosts, fencing.hostsFile or fencing.template (/etc/mc/bmc.yaml holds none)',
  ])
})

const TEMPLATED = `consul: {agents: {management: 127.0.0.1:8500}}
${IPMI_NO_HOSTS}  template: {ip: '{meta.bmc_address}', plug: '{node}'}\n`

t.test('template: {node} and {meta.KEY} only, and only there; meta needs the management agent', async (t) => {
  const c = await load(TEMPLATED)
  t.same(c.fencing.template, { ip: '{meta.bmc_address}', plug: '{node}' })
  t.same(c.fencing.hosts, {}, 'a template alone is enough')
  const bad = TEMPLATED.replace("plug: '{node}'", "plug: '{nodes}', x: '{meta.a b}', y: '{meta.}', action: '{node}'").replace(
    'ipport: 623}',
    "ipport: 623, plug: '{node}'}",
  )
  t.same(await problems(bad), [
    'fencing.options.plug: placeholders ({node}, {meta.KEY}) are filled only in fencing.template: here the agent would get them as written',
    'fencing.template.plug: unknown placeholder {nodes}: only {node} and {meta.KEY} (a Consul node meta key)',
    'fencing.template.y: unknown placeholder {meta.}: only {node} and {meta.KEY} (a Consul node meta key)',
    'fencing.template.action: not an option here: the monitor sets it for each run (off, status, monitor)',
  ])
  t.same(
    await problems(TEMPLATED.replace('consul: {agents: {management: 127.0.0.1:8500}}\n', 'consul: {agents: {tenant: 127.0.0.1:8501}}\n')),
    ["fencing.template: {meta.KEY} is read from the management agent's catalog: set consul.agents.management (or CONSUL_HTTP_ADDR)"],
  )
  const byEnv = await load(
    TEMPLATED.replace('consul: {agents: {management: 127.0.0.1:8500}}\n', ''),
    {},
    { CONSUL_HTTP_ADDR: '127.0.0.1:8500' },
  )
  t.same(byEnv.fencing.template, { ip: '{meta.bmc_address}', plug: '{node}' }, 'CONSUL_HTTP_ADDR will do')
  const nodeOnly = await load(
    TEMPLATED.replace('consul: {agents: {management: 127.0.0.1:8500}}\n', '').replace("ip: '{meta.bmc_address}', ", ''),
  )
  t.same(nodeOnly.fencing.template, { plug: '{node}' }, '{node} alone needs no agent')
})
