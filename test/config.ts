import t from 'tap'
import { memoryConfigEnv } from './helpers.js'
import { join } from 'node:path'
import { checkConfig, ConfigError, loadConfig, type ConfigEnv } from '../lib/config/config.js'

const env = (files: Record<string, string>, vars: Record<string, string> = {}) => memoryConfigEnv(files, vars)

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

const withAuth = 'masakari:\n  authUrl: http://k/v3\n  auth: {userId: u, password: p, projectId: p}\n'
const strict: Array<[string, string, string[]]> = [
  [
    'a misspelt nested key',
    `guards:\n  hold:\n    recovry: 60\n${withAuth}`,
    ["guards.hold.recovry: unknown key; did you mean 'recovery'?"],
  ],
  ['a misspelt top-level key', `concurency: 1\n${withAuth}`, ["concurency: unknown key; did you mean 'masakari.delivery.concurrency'?"]],
  [
    'a key deep in masakari and one in consul.lock, at once',
    `consul:\n  lock: {lockdelay: 3}\nmasakari:\n  authUrl: http://k/v3\n  delivery: {concurency: 1}\n  auth: {userId: u, password: p, projectId: p}\n`,
    [
      "consul.lock.lockdelay: unknown key; did you mean 'lockDelay'?",
      "masakari.delivery.concurency: unknown key; did you mean 'concurrency'?",
    ],
  ],
  [
    'a snake_case key',
    `masakari:\n  auth_url: http://k/v3\n  auth: {userId: u, password: p, projectId: p}\n`,
    ["masakari.auth_url: unknown key; did you mean 'authUrl'?"],
  ],
  [
    'a key nothing is near',
    `guards:\n  zzzzzzzz: 1\n${withAuth}`,
    ['guards.zzzzzzzz: unknown key (known here: hold, burst, isolation, rateLimit)'],
  ],
  [
    'a password key with an application credential',
    'masakari:\n  authUrl: http://k/v3\n  auth: {applicationCredentialId: a, applicationCredentialSecret: s, password: p}\n',
    ["masakari.auth.password: not allowed with the other keys here (it belongs to another form of 'auth')"],
  ],
]
for (const [name, text, want] of strict) {
  t.test(`unknown keys: ${name}`, async (t) => {
    const err = (await loadConfig('/etc/mc/config.yaml', env({ '/etc/mc/config.yaml': text })).catch((e) => e)) as ConfigError
    t.type(err, ConfigError)
    t.same(err.problems, want)
  })
}

const OS_VARS = {
  OS_AUTH_URL: 'http://keystone:5000/v3',
  OS_USERNAME: 'masakari-consul',
  OS_PASSWORD: 'from-env',
  OS_PROJECT_NAME: 'service',
  OS_USER_DOMAIN_NAME: 'Default',
  OS_PROJECT_DOMAIN_ID: 'default',
  OS_REGION_NAME: 'RegionTwo',
  OS_INTERFACE: 'internalURL',
}

t.test('credentials from the OS_* variables alone', async (t) => {
  const c = await loadConfig('/etc/mc/config.yaml', env({ '/etc/mc/config.yaml': 'stateDir: /s\n' }, OS_VARS))
  t.match(c.masakari, {
    authUrl: 'http://keystone:5000/v3',
    region: 'RegionTwo',
    interface: 'internal',
    auth: {
      method: 'password',
      username: 'masakari-consul',
      projectName: 'service',
      userDomainName: 'Default',
      projectDomainId: 'default',
    },
  })
  t.equal(c.secret, 'from-env')
})

t.test('the config file wins key by key over OS_*; its secret wins whole', async (t) => {
  const text = 'masakari:\n  region: RegionOne\n  auth: {username: other, passwordEnv: MC_PASSWORD}\n'
  const c = await loadConfig('/etc/mc/config.yaml', env({ '/etc/mc/config.yaml': text }, { ...OS_VARS, MC_PASSWORD: 'from-config' }))
  t.match(c.masakari, { region: 'RegionOne', authUrl: 'http://keystone:5000/v3', auth: { username: 'other', projectName: 'service' } })
  t.equal(c.secret, 'from-config')
  t.equal(c.masakari.auth.method === 'password' && c.masakari.auth.password, undefined, 'OS_PASSWORD not taken besides passwordEnv')
})

const clouds = `clouds:
  mycloud:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: mc
      password: from-clouds
      project_name: service
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionThree
    interface: internal
    verify: false
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000/v3
      application_credential_id: ac1
      application_credential_secret: ac-secret
`
const openstackFiles = {
  clouds: ['/work/clouds.yaml', '/home/mc/.config/openstack/clouds.yaml', '/etc/openstack/clouds.yaml'],
  secure: ['/work/secure.yaml', '/home/mc/.config/openstack/secure.yaml', '/etc/openstack/secure.yaml'],
}

t.test('credentials from a clouds.yaml cloud: OS_CLOUD, the first file found on the search path', async (t) => {
  const files = { '/etc/mc/config.yaml': 'stateDir: /s\n', '/etc/openstack/clouds.yaml': clouds }
  const c = await loadConfig('/etc/mc/config.yaml', { ...env(files, { OS_CLOUD: 'mycloud' }), openstackFiles })
  t.match(c.masakari, { authUrl: 'https://keystone.example:5000/v3', region: 'RegionThree', interface: 'internal', insecure: true })
  t.equal(c.secret, 'from-clouds')
})

t.test('an application credential from clouds.yaml (masakari.cloud), OS_* over it', async (t) => {
  const files = { '/etc/mc/config.yaml': 'masakari:\n  cloud: appcred\n', '/home/mc/.config/openstack/clouds.yaml': clouds }
  const c = await loadConfig('/etc/mc/config.yaml', {
    ...env(files, { OS_CLOUD: 'mycloud', OS_AUTH_URL: 'http://env:5000/v3' }),
    openstackFiles,
  })
  t.match(c.masakari, { authUrl: 'http://env:5000/v3', auth: { method: 'application_credential', applicationCredentialId: 'ac1' } })
  t.equal(c.secret, 'ac-secret')
})

t.test('a cloud that is not there is a problem naming where it was looked for', async (t) => {
  const files = { '/etc/mc/config.yaml': 'stateDir: /s\n', '/etc/openstack/clouds.yaml': clouds }
  const err = (await loadConfig('/etc/mc/config.yaml', { ...env(files, { OS_CLOUD: 'nope' }), openstackFiles }).catch(
    (e) => e,
  )) as ConfigError
  t.type(err, ConfigError)
  t.match(err.problems[0], /^OS_CLOUD: no cloud 'nope' in \/etc\/openstack\/clouds\.yaml$/)
  const none = (await loadConfig('/etc/mc/config.yaml', {
    ...env({ '/etc/mc/config.yaml': 'masakari: {cloud: x}\n' }),
    openstackFiles,
  }).catch((e) => e)) as ConfigError
  t.match(none.problems[0], /^masakari\.cloud: no cloud 'x' in any clouds\.yaml \(searched \/work\/clouds\.yaml, /)
})

t.test('a value from the environment that is wrong says where it came from', async (t) => {
  const err = (await loadConfig(
    '/etc/mc/config.yaml',
    env({ '/etc/mc/config.yaml': 'stateDir: /s\n' }, { ...OS_VARS, OS_AUTH_URL: 'nope', OS_AUTH_TYPE: 'token' }),
  ).catch((e) => e)) as ConfigError
  t.type(err, ConfigError)
  t.ok(
    err.problems.some((p) => /^masakari\.authUrl: .* \(from OS_AUTH_URL\)$/.test(p)),
    err.problems.join(' | '),
  )
  t.ok(
    err.problems.some((p) => /^OS_AUTH_TYPE: auth type 'token' is not supported/.test(p)),
    err.problems.join(' | '),
  )
})

t.test('a password file that group or others can read is a warning, a 0600 one is not', async (t) => {
  const text = 'masakari:\n  authUrl: http://k/v3\n  auth: {userId: u, passwordFile: pw, projectId: p}\n'
  const files = { '/etc/mc/config.yaml': text, '/etc/mc/pw': 'x\n' }
  for (const [mode, want] of [
    [
      0o644,
      [
        /^\/etc\/mc\/pw holds the Masakari secret and its group and others can read it \(mode 0644\): chmod 0600 it; the secret file must be owned by the user the watches run as .*mode 0600/,
      ],
    ],
    [0o640, [/its group can read it \(mode 0640\)/]],
    [0o600, []],
  ] as const) {
    const checked = await checkConfig('/etc/mc/config.yaml', { ...env(files), fileMode: async () => mode })
    t.same(checked.problems, [])
    t.equal(checked.warnings.length, want.length, `mode ${mode.toString(8)}`)
    for (const [i, w] of want.entries()) t.match(checked.warnings[i], w)
    t.same(checked.config?.warnings, checked.warnings, 'the loaded config carries them (logged by every run)')
  }
})

t.test('hostNames.metaKey needs an own agent to read the catalog from', async (t) => {
  const err = (await loadConfig('/etc/mc/config.yaml', env({ '/etc/mc/config.yaml': `hostNames: {metaKey: mh}\n${withAuth}` })).catch(
    (e) => e,
  )) as ConfigError
  t.same(err.problems, ["hostNames.metaKey: node meta is read from an own agent's catalog: set consul.agents (or CONSUL_HTTP_ADDR)"])
  const c = await loadConfig(
    '/etc/mc/config.yaml',
    env({ '/etc/mc/config.yaml': `hostNames: {metaKey: mh, stripDomain: true}\nconsul: {agents: {management: 'a:8500'}}\n${withAuth}` }),
  )
  t.match(c.hostNames, { metaKey: 'mh', stripDomain: true, map: {} })
})

// node-fetch refuses a URL with user info, so such a password never authenticates anything; it
// would only be printed (the log, validate, status). Every one is a problem naming its key.
t.test('credentials inside URLs and agent addresses: one problem per key, all at once, the password never echoed', async (t) => {
  const text = [
    'consul:',
    '  agents: {management: "u:hunter2@127.0.0.1:8500", storage: "https://u:hunter2@10.0.0.1:8501/", tenant: "127.0.0.2:8500"}',
    'masakari:',
    '  authUrl: https://admin:hunter2@keystone:5000/v3',
    '  endpoint: http://admin:hunter2@masakari:15868/v1/p',
    '  auth: {userId: u, password: p, projectId: p}',
    '',
  ].join('\n')
  const err = (await loadConfig(
    '/etc/mc/config.yaml',
    env({ '/etc/mc/config.yaml': text }, { CONSUL_HTTP_ADDR: 'http://x:hunter2@127.0.0.1:8500' }),
  ).catch((e) => e)) as ConfigError
  t.type(err, ConfigError)
  const keys = err.problems.map((p) => p.split(':')[0]).sort()
  t.same(keys, ['CONSUL_HTTP_ADDR', 'consul.agents.management', 'consul.agents.storage', 'masakari.authUrl', 'masakari.endpoint'])
  for (const p of err.problems) t.match(p, /carries credentials \(user:password@\)/)
  t.notMatch(err.message, /hunter2/, 'the password is not in the error')
})

t.test('credentials inside OS_AUTH_URL say where the URL came from', async (t) => {
  const err = (await loadConfig(
    '/etc/mc/config.yaml',
    env({ '/etc/mc/config.yaml': 'stateDir: /s\n' }, { ...OS_VARS, OS_AUTH_URL: 'http://admin:hunter2@keystone/v3' }),
  ).catch((e) => e)) as ConfigError
  t.match(err.problems, [/^masakari\.authUrl: carries credentials .* \(from OS_AUTH_URL\)$/])
  t.notMatch(err.message, /hunter2/)
})

t.test('an @ after the host (a path, a query) is not a credential', async (t) => {
  const text = `consul: {agents: {storage: "http://127.0.0.1:8500/x@y"}}\n${withAuth}`
  const c = await loadConfig('/etc/mc/config.yaml', env({ '/etc/mc/config.yaml': text }, { CONSUL_HTTP_ADDR: '127.0.0.1:8500' }))
  t.equal(c.consul.agents.storage, 'http://127.0.0.1:8500/x@y')
})

t.test('a secret the watch runs may not read, or an unset passwordEnv, is an error that says the secret rule', async (t) => {
  const text = 'masakari:\n  authUrl: http://k/v3\n  auth: {userId: u, passwordFile: pw, projectId: p}\n'
  const denied: ConfigEnv = {
    ...env({ '/etc/mc/config.yaml': text }),
    readFile: async (p) => {
      if (p === '/etc/mc/config.yaml') return text
      throw Object.assign(new Error(`EACCES: permission denied, open '${p}'`), { code: 'EACCES' })
    },
  }
  const checked = await checkConfig('/etc/mc/config.yaml', denied)
  t.match(checked.problems, [
    /^masakari\.auth\.passwordFile: cannot read \/etc\/mc\/pw: EACCES.*; the secret file must be owned by the user the watches run as \(the Consul agents' user, e\.g\. consul\), mode 0600/,
  ])
  const missing = await checkConfig(
    '/etc/mc/config.yaml',
    env({ '/etc/mc/config.yaml': text.replace('passwordFile: pw', 'passwordEnv: MC_PW') }),
  )
  t.match(missing.problems, [
    /passwordEnv: environment variable MC_PW is not set \(.*EnvironmentFile, \/etc\/masakari-consul\/environment\)/,
  ])
})
