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
    'fencing.hosts: no host: each fenced host needs its options (ip, …)',
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
