import t from 'tap'
import { join } from 'node:path'
import { ConfigError, loadConfig, type ConfigEnv } from '../lib/config.js'

function env(files: Record<string, string>, vars: Record<string, string> = {}): ConfigEnv {
  return {
    readFile: async (p) => {
      if (p in files) return files[p]!
      throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), { code: 'ENOENT' })
    },
    env: vars,
    hostname: () => 'ctl1',
  }
}

const minimal = `
masakari:
  authUrl: http://127.0.0.1:5000/v3
  auth:
    username: masakari-consul
    userDomainName: Default
    passwordEnv: MC_PASSWORD
    projectName: service
    projectDomainName: Default
`

t.test('defaults', async (t) => {
  const c = await loadConfig('/etc/mc/config.yaml', env({ '/etc/mc/config.yaml': minimal }, { MC_PASSWORD: 's3cret' }))
  t.match(c, {
    source: '/etc/mc/config.yaml',
    stateDir: '/var/lib/masakari-consul',
    hostname: 'ctl1',
    strategy: undefined,
    firstSight: 'notify',
    logFile: '/var/lib/masakari-consul/decisions.log',
    secret: 's3cret',
    masakari: {
      interface: 'public',
      insecure: false,
      requestTimeout: 10,
      delivery: { initialBackoff: 1, maxBackoff: 30, expiry: 600, concurrency: 4 },
      auth: { method: 'password' },
    },
  })
})

t.test('relative paths are relative to the config file; secrets from a file', async (t) => {
  const text = `stateDir: state\nstrategy: strategy.yaml\nlogFile: ""\nmasakari:\n  authUrl: https://keystone:5000/v3\n  caFile: ca.pem\n  auth:\n    applicationCredentialId: abc\n    applicationCredentialSecretFile: secret\n`
  const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
  const c = await loadConfig('/etc/mc/config.yaml', env({ '/etc/mc/config.yaml': text, '/etc/mc/secret': ' xyz\n', '/etc/mc/ca.pem': pem }))
  t.match(c, {
    stateDir: '/etc/mc/state',
    strategy: '/etc/mc/strategy.yaml',
    logFile: undefined,
    secret: 'xyz',
    masakari: { caFile: '/etc/mc/ca.pem', auth: { method: 'application_credential' } },
    caPem: pem,
  })
})

const invalid: Array<[string, string, Record<string, string>, RegExp[]]> = [
  ['missing file', '', {}, [/cannot read it: ENOENT/]],
  ['not YAML', 'masakari: [', {}, [/not valid YAML/]],
  [
    'no masakari section',
    'stateDir: /x\n',
    {},
    [/^masakari\.authUrl: not set/, /^masakari\.auth: set username/, /^masakari\.auth: no password/],
  ],
  [
    'several schema problems at once',
    'firstSight: maybe\nmasakari:\n  authUrl: nope\n  interface: private\n  requestTimeout: -1\n  auth: {username: u, userDomainName: D, password: p, projectName: s, projectDomainName: D}\n',
    {},
    [/firstSight/, /masakari\.authUrl/, /masakari\.interface/, /masakari\.requestTimeout/],
  ],
  ['unset password env', minimal, {}, [/passwordEnv: environment variable MC_PASSWORD is not set/]],
  [
    'two secrets',
    'masakari:\n  authUrl: http://k/v3\n  auth: {userId: u, password: a, passwordEnv: B, projectId: p}\n',
    {},
    [/exactly one of password, passwordFile, passwordEnv \(2 given\)/],
  ],
  [
    'no user, no project',
    'masakari:\n  authUrl: http://k/v3\n  auth: {password: a}\n',
    {},
    [/set username .* or userId/, /set projectName .* or projectId/],
  ],
  [
    'username without domain',
    'masakari:\n  authUrl: http://k/v3\n  auth: {username: u, password: a, projectId: p}\n',
    {},
    [/username needs userDomainName or userDomainId/],
  ],
  [
    'a caFile that does not exist',
    'masakari:\n  authUrl: http://k/v3\n  caFile: ca.pem\n  auth: {userId: u, passwordFile: /nope, projectId: p}\n',
    {},
    [/^masakari\.caFile: cannot read \/etc\/mc\/ca\.pem: ENOENT/, /passwordFile: cannot read \/nope/],
  ],
  [
    'a caFile without a certificate',
    'masakari:\n  authUrl: http://k/v3\n  caFile: /etc/mc/config.yaml\n  auth: {userId: u, password: p, projectId: p}\n',
    {},
    [/^masakari\.caFile: \/etc\/mc\/config\.yaml holds no PEM certificate/],
  ],
  [
    'unreadable secret file',
    'masakari:\n  authUrl: http://k/v3\n  auth: {userId: u, passwordFile: /nope, projectId: p}\n',
    {},
    [/passwordFile: cannot read \/nope/],
  ],
]
for (const [name, text, vars, messages] of invalid) {
  t.test(`rejects: ${name}`, async (t) => {
    const files: Record<string, string> = text === '' ? {} : { '/etc/mc/config.yaml': text }
    const err = (await loadConfig('/etc/mc/config.yaml', env(files, vars)).catch((e) => e)) as ConfigError
    t.type(err, ConfigError)
    t.match(err.message, /invalid config \/etc\/mc\/config\.yaml/)
    for (const m of messages)
      t.ok(
        err.problems.some((p) => m.test(p)),
        `${m} in ${err.problems.join(' | ')}`,
      )
  })
}

t.test('the example config in consul-config/ loads', async (t) => {
  const { readFile } = await import('node:fs/promises')
  const path = join(import.meta.dirname, '..', 'consul-config', 'monitor', 'config.yaml')
  const c = await loadConfig(path, { readFile: (p) => readFile(p, 'utf8'), env: { MASAKARI_CONSUL_PASSWORD: 'x' }, hostname: () => 'h' })
  t.equal(c.masakari.auth.method, 'password')
})

t.test("a key of the operator's with a line break stays on its problem line", async (t) => {
  const text = 'consul:\n  agents: {"a\\nb": x}\nmasakari:\n  authUrl: http://k/v3\n  auth: {userId: u, password: p, projectId: p}\n'
  const err = (await loadConfig('/etc/mc/config.yaml', env({ '/etc/mc/config.yaml': text })).catch((e) => e)) as ConfigError
  t.type(err, ConfigError)
  t.same(err.problems, ['consul.agents.a\\nb: unknown key (known here: management, tenant, storage)'])
  t.equal(err.message.split('\n').length, 2, 'the header line and one problem line')
})
