/**
 * A real Keystone and a real masakari-api on loopback, for end-to-end tests, the bench and the demo.
 *
 * Debian bookworm's packages (keystone, masakari-api, uwsgi-plugin-python3, python3-masakari;
 * scripts/install-stack.sh installs them). Everything lives in a scratch directory: configs,
 * SQLite databases, Fernet/credential keys, and the services' output under `${dir}/logs`.
 * Nothing is reused between runs. Only 127.0.0.1 is ever contacted.
 *
 * Test and demo infrastructure, not product code: it uses Node's global fetch.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface OpenStackOptions {
  /** scratch dir: configs, sqlite dbs, fernet keys, logs under `${dir}/logs` */
  dir: string
  /** default 35000; bound on 127.0.0.1 */
  keystonePort?: number
  /** default 35868; bound on 127.0.0.1 */
  masakariPort?: number
  /** masakari [DEFAULT] duplicate_notification_detection_interval; default 0 (so tests can count duplicates) */
  duplicateInterval?: number
  /**
   * masakari [keystone_authtoken] token_cache_time; default 300 (keystonemiddleware's). A token
   * it validated is accepted from its cache, revoked or not, until this runs out; -1 asks Keystone
   * on every request, so that a revocation takes effect at once.
   */
  tokenCacheTime?: number
  /** progress lines ("keystone ready in 4.9 s") */
  log?: (msg: string) => void
}

export interface Credentials {
  authUrl: string
  username: string
  password: string
  userDomainName: string
  projectName: string
  projectDomainName: string
}

export interface Notification {
  notification_uuid: string
  /** not in Masakari's answer: added by listNotifications from source_host_uuid */
  hostname: string
  source_host_uuid: string
  type: string
  generated_time: string
  // biome-ignore lint/suspicious/noExplicitAny: Masakari's payload is free-form JSON; tests match on it
  payload: any
  status: string
  created_at: string
  [k: string]: unknown
}

export interface OpenStack {
  /** http://127.0.0.1:<port>/v3 */
  authUrl: string
  /** RegionOne */
  region: string
  admin: Credentials
  /** user 'masakari-consul' with role admin on project 'service' (what our monitor uses) */
  monitor: Credentials
  /** the instance-ha public endpoint from the monitor's token catalog (project 'service' id substituted) */
  masakariUrl: string
  logDir: string
  /** masakari-api's SQLite database (the bench stamps each notification row as it appears) */
  masakariDb: string
  /** every service process started (masters and their workers; restarts of either service add theirs) */
  pids: number[]
  /** ids Keystone gave to what was created (useful for application credentials, etc.) */
  ids: { serviceProjectId: string; monitorUserId: string; adminRoleId: string }
  /** how long startOpenStack took, in ms */
  startupMs: number
  createSegment(name: string): Promise<string>
  addHost(segmentId: string, hostname: string): Promise<void>
  setHostMaintenance(segmentId: string, hostname: string, on: boolean): Promise<void>
  /** GET /notifications (newest first), each with `hostname` added from its source_host_uuid */
  listNotifications(): Promise<Notification[]>
  adminToken(): Promise<string>
  /** restart masakari-api (same database, port and catalog) with another duplicate_notification_detection_interval */
  setDuplicateInterval(seconds: number): Promise<void>
  /** masakari-api stopped (its whole process group); nothing listens on its port until startMasakari */
  stopMasakari(): Promise<void>
  /** masakari-api again after stopMasakari: same port, database, config and catalog; resolves once it answers an authenticated call */
  startMasakari(): Promise<void>
  /**
   * Keystone stopped and started again: same port, database and key repositories, so the tokens it
   * issued stay valid (unless revoked); resolves once it issues tokens again
   */
  restartKeystone(): Promise<void>
  /** DELETE /v3/auth/tokens as the admin: Keystone revokes `token` (404 on its validation from then on) */
  revokeToken(token: string): Promise<void>
  stop(): Promise<void>
}

export const REGION = 'RegionOne'
export const ADMIN_PASSWORD = 'admin-secret'
export const MASAKARI_SERVICE_PASSWORD = 'masakari-secret'
export const MONITOR_USERNAME = 'masakari-consul'
export const MONITOR_PASSWORD = 'masakari-consul-secret'

const HERE = dirname(fileURLToPath(import.meta.url))
// Beside this module, or, when bundled into dist/demo.js, in the source tree next to dist/
// (bench/build.mjs copies them beside its bundle).
const besideThis = (file: string) => [join(HERE, file), join(HERE, '..', 'stack', file)].find((p) => existsSync(p)) ?? join(HERE, file)
export const LAUNCHER = besideThis('masakari-api-launcher.py')
const ETC_PATHS = besideThis('etc-paths.py')
const PYTHON = '/usr/bin/python3'

// ---------------------------------------------------------------------------------------------
// small helpers (exported where a test may want them)

/** The last `n` lines of a file ('' when it does not exist). */
export function tailFile(file: string, n = 25): string {
  try {
    const lines = readFileSync(file, 'utf8')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: strips the ANSI colours uwsgi writes
      .replace(/\x1b\[[0-9;]*m/g, '')
      .trimEnd()
      .split('\n')
    return lines.slice(-n).join('\n')
  } catch {
    return ''
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

async function portInUse(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port })
    sock.once('connect', () => {
      sock.destroy()
      resolve(true)
    })
    sock.once('error', () => resolve(false))
  })
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** Processes (not zombies) whose process group is `pgid`, from /proc. */
export function processGroupMembers(pgid: number): number[] {
  const out: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8')
    } catch {
      continue
    }
    // "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const state = rest[0]
    if (state === 'Z' || state === 'X') continue
    if (Number(rest[2]) === pgid) out.push(Number(name))
  }
  return out
}

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
    return state !== 'Z' && state !== 'X'
  } catch {
    return false
  }
}

/** Environment for Debian's Python tools: no pyenv or virtualenv leaking in. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(PYTHON|PYENV|VIRTUAL_ENV|OS_|UWSGI)/.test(k)) continue
    env[k] = v
  }
  env.PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  env.LANG = env.LANG ?? 'C.UTF-8'
  return { ...env, ...extra }
}

/** Run a one-shot command, its output appended to `logFile`; rejects with the log's tail. */
async function runTool(
  cmd: string,
  args: string[],
  logFile: string,
  env: NodeJS.ProcessEnv,
  cwd: string,
  timeoutMs = 120_000,
): Promise<void> {
  writeFileSync(logFile, `\n$ ${cmd} ${args.join(' ')}\n`, { flag: 'a' })
  const fd = openSync(logFile, 'a')
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', fd, fd] })
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`${cmd} ${args[0] ?? ''} timed out after ${secs(timeoutMs)}; log ${logFile}:\n${tailFile(logFile)}`))
      }, timeoutMs)
      child.once('error', (err) => {
        clearTimeout(timer)
        reject(new Error(`cannot run ${cmd}: ${err.message}`))
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        if (code === 0) resolve()
        else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}; log ${logFile}:\n${tailFile(logFile)}`))
      })
    })
  } finally {
    closeSync(fd)
  }
}

interface Service {
  name: string
  child: ChildProcess
  pgid: number
  logFile: string
  exited: boolean
}

/** Start a long-running service in its own process group (detached), output into `logFile`. */
function startService(name: string, cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv, cwd: string): Service {
  writeFileSync(logFile, `$ ${cmd} ${args.join(' ')}\n`, { flag: 'a' })
  const fd = openSync(logFile, 'a')
  const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', fd, fd], detached: true })
  closeSync(fd)
  if (child.pid === undefined) throw new Error(`cannot start ${name} (${cmd})`)
  const svc: Service = { name, child, pgid: child.pid, logFile, exited: false }
  child.once('exit', () => {
    svc.exited = true
  })
  child.once('error', () => {
    svc.exited = true
  })
  return svc
}

/** Poll `check` until it returns true; fail early when the service died, with the log's tail. */
async function waitReady(svc: Service, what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const t0 = Date.now()
  let lastErr = ''
  for (;;) {
    if (svc.exited) {
      throw new Error(`${svc.name} exited before ${what}; log ${svc.logFile}:\n${tailFile(svc.logFile)}`)
    }
    try {
      if (await check()) return
    } catch (err) {
      lastErr = err instanceof Error ? `${err.message}${err.cause instanceof Error ? ` (${err.cause.message})` : ''}` : String(err)
    }
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(
        `${svc.name}: no ${what} after ${secs(timeoutMs)}${lastErr ? ` (last error: ${lastErr})` : ''}; log ${svc.logFile}:\n${tailFile(svc.logFile)}`,
      )
    }
    await sleep(100)
  }
}

async function killGroups(services: Service[], graceMs = 3000): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    for (const s of services) {
      try {
        process.kill(-s.pgid, sig)
      } catch {
        /* ESRCH: already gone */
      }
    }
  }
  const alive = () => services.flatMap((s) => processGroupMembers(s.pgid))
  if (alive().length === 0) return
  signal('SIGTERM')
  const t0 = Date.now()
  while (alive().length > 0 && Date.now() - t0 < graceMs) await sleep(50)
  if (alive().length > 0) {
    signal('SIGKILL')
    const t1 = Date.now()
    while (alive().length > 0 && Date.now() - t1 < 5000) await sleep(50)
  }
  const left = alive()
  if (left.length > 0) throw new Error(`processes survived SIGKILL: ${left.join(', ')}`)
}

// ---------------------------------------------------------------------------------------------
// HTTP (loopback only)

export interface Recorded {
  status: number
  headers: Record<string, string>
  // biome-ignore lint/suspicious/noExplicitAny: any JSON body; callers check what they read
  body: any
}

function assertLoopback(url: string): void {
  const host = new URL(url).hostname
  if (!/^127\.\d+\.\d+\.\d+$/.test(host)) throw new Error(`refusing to contact non-loopback address ${url}`)
}

/** One HTTP call with a JSON body; returns status, all headers and the parsed body (or text). */
export async function httpJson(
  method: string,
  url: string,
  opts: { token?: string; body?: unknown; timeoutMs?: number; headers?: Record<string, string> } = {},
): Promise<Recorded> {
  assertLoopback(url)
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers }
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json'
  if (opts.token) headers['X-Auth-Token'] = opts.token
  const res = await fetch(url, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
  })
  const text = await res.text()
  // biome-ignore lint/suspicious/noExplicitAny: any JSON body
  let body: any = text
  if (text.length > 0) {
    try {
      body = JSON.parse(text)
    } catch {
      /* keep text */
    }
  } else body = null
  const hs: Record<string, string> = {}
  res.headers.forEach((v, k) => {
    hs[k] = v
  })
  return { status: res.status, headers: hs, body }
}

function expectStatus(r: Recorded, ok: number[], what: string): Recorded {
  if (!ok.includes(r.status)) throw new Error(`${what}: HTTP ${r.status} ${typeof r.body === 'string' ? r.body : JSON.stringify(r.body)}`)
  return r
}

/** The body of a project-scoped password authentication. */
export function passwordAuthBody(c: Credentials) {
  return {
    auth: {
      identity: {
        methods: ['password'],
        password: { user: { name: c.username, domain: { name: c.userDomainName }, password: c.password } },
      },
      scope: { project: { name: c.projectName, domain: { name: c.projectDomainName } } },
    },
  }
}

export interface TokenResult {
  token: string
  expiresAt: string
  catalog: Array<{ type: string; name?: string; endpoints: Array<{ interface: string; region_id?: string; region?: string; url: string }> }>
  response: Recorded
}

/** Password authentication against Keystone; throws on anything but 201. */
export async function passwordToken(c: Credentials): Promise<TokenResult> {
  const r = expectStatus(
    await httpJson('POST', `${c.authUrl}/auth/tokens`, { body: passwordAuthBody(c) }),
    [201],
    `token for ${c.username}`,
  )
  const token = r.headers['x-subject-token']
  if (!token) throw new Error(`Keystone answered 201 without X-Subject-Token for ${c.username}`)
  return { token, expiresAt: r.body.token.expires_at, catalog: r.body.token.catalog ?? [], response: r }
}

/** The URL of a service endpoint in a token's catalog. */
export function catalogUrl(catalog: TokenResult['catalog'], type: string, iface = 'public', region = REGION): string {
  const svc = catalog.find((s) => s.type === type)
  const ep = svc?.endpoints.find((e) => e.interface === iface && (e.region_id ?? e.region) === region)
  if (!ep) throw new Error(`no ${iface} ${type} endpoint in region ${region} in the catalog`)
  return ep.url.replace(/\/+$/, '')
}

// ---------------------------------------------------------------------------------------------

function fernetKey(): string {
  // what keystone-manage fernet_setup / credential_setup write: urlsafe base64 of 32 random bytes
  return randomBytes(32).toString('base64').replace(/\+/g, '-').replace(/\//g, '_')
}

function writeKeyRepository(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  // 0 = staged key, 1 = primary key
  writeFileSync(join(dir, '0'), fernetKey(), { mode: 0o600 })
  writeFileSync(join(dir, '1'), fernetKey(), { mode: 0o600 })
}

/**
 * The options of a scratch config that still point at a path under /etc that no Debian package
 * ships, as `group.option = path` (etc-paths.py asks oslo.config with every option the
 * installed service knows). Such a path exists only on a machine where someone created it: a
 * config that relies on one passes here and fails on a fresh machine.
 */
export function etcPathsOf(project: 'keystone' | 'masakari', confFile: string): string[] {
  const r = spawnSync(PYTHON, [ETC_PATHS, project, confFile], { encoding: 'utf8', env: cleanEnv() })
  if (r.status !== 0) throw new Error(`${ETC_PATHS} ${project} ${confFile} exited with ${r.status ?? r.signal}: ${r.stderr.trim()}`)
  return r.stdout.split('\n').filter((l) => l !== '')
}

function assertScratchOnly(project: 'keystone' | 'masakari', confFile: string): void {
  const leaks = etcPathsOf(project, confFile)
  if (leaks.length > 0) {
    throw new Error(
      `${confFile} reads paths under /etc that a fresh machine does not have; set them in the scratch dir:\n  ${leaks.join('\n  ')}`,
    )
  }
}

function keystoneConf(dir: string): string {
  return `[DEFAULT]
# no log_file: everything goes to stderr, which uwsgi writes to logs/keystone.log
[database]
connection = sqlite:///${join(dir, 'keystone.db')}
[fernet_tokens]
key_repository = ${join(dir, 'fernet-keys')}
[fernet_receipts]
# its default is /etc/keystone/fernet-keys/, which bootstrap checks: absent on a fresh machine
key_repository = ${join(dir, 'fernet-keys')}
[credential]
key_repository = ${join(dir, 'credential-keys')}
[jwt_tokens]
jws_private_key_repository = ${join(dir, 'jws-keys', 'private')}
jws_public_key_repository = ${join(dir, 'jws-keys', 'public')}
[saml]
certfile = ${join(dir, 'saml', 'signing_cert.pem')}
keyfile = ${join(dir, 'saml', 'signing_key.pem')}
idp_metadata_path = ${join(dir, 'saml', 'idp_metadata.xml')}
[oslo_middleware]
http_basic_auth_user_file = ${join(dir, 'htpasswd')}
[identity]
domain_config_dir = ${join(dir, 'domains')}
# bcrypt's minimum: tokens come in milliseconds instead of ~0.25 s (scratch instance)
password_hash_rounds = 4
[catalog]
driver = sql
[oslo_policy]
policy_dirs = /etc/keystone/policy.d
`
}

/** The settings masakari.conf varies on. */
interface MasakariSettings {
  duplicateInterval: number
  /** [keystone_authtoken] token_cache_time */
  tokenCacheTime: number
}

function masakariConf(dir: string, keystonePort: number, masakariPort: number, settings: MasakariSettings): string {
  const authUrl = `http://127.0.0.1:${keystonePort}/v3`
  return `[DEFAULT]
auth_strategy = keystone
transport_url = fake://
masakari_api_listen = 127.0.0.1
masakari_api_listen_port = ${masakariPort}
masakari_api_workers = 1
duplicate_notification_detection_interval = ${settings.duplicateInterval}
graceful_shutdown_timeout = 1
# no log_file: everything goes to stderr, which is logs/masakari-api.log
[wsgi]
api_paste_config = /etc/masakari/api-paste.ini
[database]
connection = sqlite:///${join(dir, 'masakari.db')}
[keystone_authtoken]
auth_url = ${authUrl}
www_authenticate_uri = ${authUrl}
auth_type = password
project_name = service
project_domain_name = Default
username = masakari
user_domain_name = Default
password = ${MASAKARI_SERVICE_PASSWORD}
region_name = ${REGION}
interface = internal
service_token_roles_required = true
token_cache_time = ${settings.tokenCacheTime}
[oslo_messaging_notifications]
driver = noop
[oslo_middleware]
http_basic_auth_user_file = ${join(dir, 'htpasswd')}
[oslo_policy]
policy_dirs = /etc/masakari/policy.d
`
}

/** What the phases of a bring-up share. */
interface Scratch {
  dir: string
  logDir: string
  log: (msg: string) => void
  keystonePort: number
  masakariPort: number
  authUrl: string
  keystoneConfFile: string
  masakariConfFile: string
  /** what masakari.conf is written from (setDuplicateInterval changes the interval) */
  masakariSettings: MasakariSettings
  admin: Credentials
  monitor: Credentials
  env: NodeJS.ProcessEnv
  keystoneEnv: NodeJS.ProcessEnv
  /** every service started, so that stop() and the process guard find them */
  services: Service[]
  /** removes the exit and signal listeners that kill the services */
  unguard: () => void
}

/** The running masakari-api (replaced by setDuplicateInterval; none after stopMasakari) and the pids reported so far. */
interface Running {
  ma: Service | undefined
  pids: number[]
  masakariUrl: string
  stopping?: Promise<void>
}

export async function startOpenStack(opts: OpenStackOptions): Promise<OpenStack> {
  const t0 = Date.now()
  const s = await prepareScratch(opts)
  guardProcess(s)
  try {
    const { ids, ma } = await startBoth(s)
    // The monitor's view: the instance-ha endpoint from its token's catalog.
    const masakariUrl = catalogUrl((await passwordToken(s.monitor)).catalog, 'instance-ha', 'public')
    await authenticatedRoundTrip(s, ma, masakariUrl)
    const startupMs = Date.now() - t0
    s.log(`keystone + masakari-api ready in ${secs(startupMs)} (logs in ${s.logDir})`)
    return openStackApi(s, { ma, pids: groupPids(s), masakariUrl }, ids, startupMs)
  } catch (err) {
    await killGroups(s.services).catch(() => {})
    s.unguard()
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// Bring-up phases, in the order startOpenStack runs them

/** Packages and ports checked; configs, key repositories and credentials written in the scratch dir. */
async function prepareScratch(opts: OpenStackOptions): Promise<Scratch> {
  const keystonePort = opts.keystonePort ?? 35000
  const masakariPort = opts.masakariPort ?? 35868
  const dir = opts.dir
  const logDir = join(dir, 'logs')
  mkdirSync(logDir, { recursive: true })
  if (!existsSync('/usr/bin/keystone-manage') || !existsSync('/usr/bin/uwsgi_python3') || !existsSync('/usr/bin/masakari-manage')) {
    throw new Error('keystone / uwsgi_python3 / masakari-api are not installed: run scripts/install-stack.sh')
  }
  for (const [what, port] of [
    ['keystone', keystonePort],
    ['masakari', masakariPort],
  ] as const) {
    if (await portInUse(port)) throw new Error(`${what} port 127.0.0.1:${port} is already in use`)
  }
  const authUrl = `http://127.0.0.1:${keystonePort}/v3`
  const keystoneConfFile = join(dir, 'keystone.conf')
  const masakariConfFile = join(dir, 'masakari.conf')
  writeFileSync(keystoneConfFile, keystoneConf(dir))
  const masakariSettings: MasakariSettings = { duplicateInterval: opts.duplicateInterval ?? 0, tokenCacheTime: opts.tokenCacheTime ?? 300 }
  writeFileSync(masakariConfFile, masakariConf(dir, keystonePort, masakariPort, masakariSettings))
  assertScratchOnly('keystone', keystoneConfFile)
  assertScratchOnly('masakari', masakariConfFile)
  writeKeyRepository(join(dir, 'fernet-keys'))
  writeKeyRepository(join(dir, 'credential-keys'))
  const user = (username: string, password: string, projectName: string): Credentials => ({
    authUrl,
    username,
    password,
    userDomainName: 'Default',
    projectName,
    projectDomainName: 'Default',
  })
  return {
    dir,
    logDir,
    log: opts.log ?? (() => {}),
    keystonePort,
    masakariPort,
    authUrl,
    keystoneConfFile,
    masakariConfFile,
    masakariSettings,
    admin: user('admin', ADMIN_PASSWORD, 'admin'),
    monitor: user(MONITOR_USERNAME, MONITOR_PASSWORD, 'service'),
    env: cleanEnv(),
    keystoneEnv: cleanEnv({ OS_KEYSTONE_CONFIG_FILES: keystoneConfFile }),
    services: [],
    unguard: () => {},
  }
}

/** If this process ends without stop() (a crash, tap's timeout), the services go with it. */
function guardProcess(s: Scratch): void {
  const killAll = () => {
    for (const svc of s.services) {
      try {
        process.kill(-svc.pgid, 'SIGKILL')
      } catch {
        /* gone */
      }
    }
  }
  const onSignal = (sig: NodeJS.Signals) => {
    killAll()
    s.unguard()
    // let the signal do what it would have done without us (other listeners or the default action)
    process.kill(process.pid, sig)
  }
  const guardSignals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP']
  s.unguard = () => {
    process.removeListener('exit', killAll)
    for (const sig of guardSignals) process.removeListener(sig, onSignal)
  }
  process.once('exit', killAll)
  for (const sig of guardSignals) process.once(sig, onSignal)
}

/** Keystone and masakari-api side by side (masakari-api needs Keystone only per request). */
async function startBoth(s: Scratch): Promise<{ ids: OpenStack['ids']; ma: Service }> {
  // allSettled, not all: on a failure, the other chain must finish starting before the clean-up
  const [ksRes, maRes] = await Promise.allSettled([startKeystone(s), startMasakari(s)])
  if (ksRes.status === 'rejected') throw ksRes.reason
  if (maRes.status === 'rejected') throw maRes.reason
  return { ids: ksRes.value, ma: maRes.value }
}

/** Keystone: db_sync, bootstrap, uwsgi, then the service project, users, roles, catalog. */
async function startKeystone(s: Scratch): Promise<OpenStack['ids']> {
  const t = Date.now()
  await bootstrapKeystone(s)
  s.log(`keystone db_sync + bootstrap in ${secs(Date.now() - t)}`)
  const adminToken = await launchKeystone(s)
  s.log(`keystone ready in ${secs(Date.now() - t)}`)
  const ids = await createIdentities(s, adminToken)
  s.log(`keystone users, roles and catalog in ${secs(Date.now() - t)}`)
  return ids
}

async function bootstrapKeystone(s: Scratch): Promise<void> {
  const manageLog = join(s.logDir, 'keystone-manage.log')
  const km = (...args: string[]) =>
    runTool('/usr/bin/keystone-manage', ['--config-file', s.keystoneConfFile, ...args], manageLog, s.env, s.dir)
  await km('db_sync')
  await km(
    'bootstrap',
    '--bootstrap-password',
    ADMIN_PASSWORD,
    '--bootstrap-admin-url',
    s.authUrl,
    '--bootstrap-public-url',
    s.authUrl,
    // the internal identity endpoint: masakari's keystonemiddleware looks it up
    '--bootstrap-internal-url',
    s.authUrl,
    '--bootstrap-region-id',
    REGION,
  )
}

/** Keystone under uwsgi; resolves with an admin token once it issues one. */
async function launchKeystone(s: Scratch): Promise<string> {
  const ks = startService(
    'keystone',
    '/usr/bin/uwsgi_python3',
    [
      '--http-socket',
      `127.0.0.1:${s.keystonePort}`,
      '--wsgi-file',
      '/usr/bin/keystone-wsgi-public',
      '--processes',
      '1',
      '--threads',
      '1', // several threads: SQLite answers "database is locked"
      '--master',
      '--die-on-term',
      '--need-app',
      '--buffer-size',
      '65535',
      // uwsgi's http-socket closes every connection after its answer without saying so: a client
      // that pools it (masakari's keystonemiddleware) could reuse it before the close arrives and
      // answer 503 (RemoteDisconnected), as it did on its first requests after each start
      '--add-header',
      'Connection: close',
      '--procname-prefix',
      `keystone-${s.keystonePort}-`,
    ],
    join(s.logDir, 'keystone.log'),
    s.keystoneEnv,
    s.dir,
  )
  s.services.push(ks)
  let token = ''
  await waitReady(ks, `token from ${s.authUrl}`, 60_000, async () => {
    const r = await httpJson('POST', `${s.authUrl}/auth/tokens`, { body: passwordAuthBody(s.admin), timeoutMs: 10_000 })
    if (r.status !== 201) throw new Error(`HTTP ${r.status}`)
    token = r.headers['x-subject-token'] ?? ''
    return true
  })
  return token
}

/** The service project, the masakari and monitor users (admin there), the instance-ha service and endpoints. */
async function createIdentities(s: Scratch, token: string): Promise<OpenStack['ids']> {
  const call = async (method: string, path: string, body?: unknown) =>
    expectStatus(await httpJson(method, `${s.authUrl}${path}`, { token, body }), [200, 201, 204], `${method} ${path}`).body

  const adminRoleId: string = (await call('GET', '/roles?name=admin')).roles[0].id
  const serviceProjectId: string = (
    await call('POST', '/projects', { project: { name: 'service', domain_id: 'default', description: 'Service project' } })
  ).project.id
  const userIds: Record<string, string> = {}
  for (const [name, password] of [
    ['masakari', MASAKARI_SERVICE_PASSWORD],
    [MONITOR_USERNAME, MONITOR_PASSWORD],
  ] as const) {
    const id: string = (
      await call('POST', '/users', { user: { name, password, domain_id: 'default', default_project_id: serviceProjectId } })
    ).user.id
    await call('PUT', `/projects/${serviceProjectId}/users/${id}/roles/${adminRoleId}`)
    userIds[name] = id
  }
  const serviceId: string = (
    await call('POST', '/services', { service: { type: 'instance-ha', name: 'masakari', description: 'OpenStack High Availability' } })
  ).service.id
  for (const iface of ['public', 'internal', 'admin']) {
    await call('POST', '/endpoints', {
      endpoint: { service_id: serviceId, interface: iface, region_id: REGION, url: `http://127.0.0.1:${s.masakariPort}/v1/$(tenant_id)s` },
    })
  }
  return { adminRoleId, serviceProjectId, monitorUserId: userIds[MONITOR_USERNAME]! }
}

/** masakari-api: db sync, then the patched launcher. */
async function startMasakari(s: Scratch): Promise<Service> {
  const t = Date.now()
  await runTool(
    '/usr/bin/masakari-manage',
    ['--config-file', s.masakariConfFile, 'db', 'sync'],
    join(s.logDir, 'masakari-manage.log'),
    s.env,
    s.dir,
  )
  s.log(`masakari db sync in ${secs(Date.now() - t)}`)
  const ma = await launchMasakari(s)
  s.log(`masakari-api listening in ${secs(Date.now() - t)}`)
  return ma
}

async function launchMasakari(s: Scratch): Promise<Service> {
  const ma = startService(
    'masakari-api',
    PYTHON,
    [LAUNCHER, '--config-file', s.masakariConfFile],
    join(s.logDir, 'masakari-api.log'),
    s.env,
    s.dir,
  )
  s.services.push(ma)
  await waitReady(ma, `version document from http://127.0.0.1:${s.masakariPort}/`, 60_000, async () => {
    const r = await httpJson('GET', `http://127.0.0.1:${s.masakariPort}/`, { timeoutMs: 5000 })
    return r.status === 200
  })
  return ma
}

/** First authenticated call: keystonemiddleware fetches its own token and the revocation data. */
async function authenticatedRoundTrip(s: Scratch, ma: Service, masakariUrl: string): Promise<void> {
  const t = Date.now()
  const monTok = await passwordToken(s.monitor)
  await waitReady(ma, `authenticated answer from ${masakariUrl}/segments`, 30_000, async () => {
    const r = await httpJson('GET', `${masakariUrl}/segments`, { token: monTok.token, timeoutMs: 10_000 })
    if (r.status !== 200) throw new Error(`HTTP ${r.status} ${JSON.stringify(r.body)}`)
    return true
  })
  s.log(`masakari-api authenticated round trip in ${secs(Date.now() - t)}`)
}

const groupPids = (s: Scratch) => [...new Set(s.services.flatMap((svc) => [svc.pgid, ...processGroupMembers(svc.pgid)]))]

// ---------------------------------------------------------------------------------------------
// The running stack

function openStackApi(s: Scratch, run: Running, ids: OpenStack['ids'], startupMs: number): OpenStack {
  const masakari = adminMasakari(s.admin)
  return {
    authUrl: s.authUrl,
    region: REGION,
    admin: s.admin,
    monitor: s.monitor,
    masakariUrl: run.masakariUrl,
    logDir: s.logDir,
    masakariDb: join(s.dir, 'masakari.db'),
    pids: run.pids,
    ids,
    startupMs,
    async createSegment(name) {
      const b = await masakari.call('POST', '/segments', { segment: { name, recovery_method: 'auto', service_type: 'COMPUTE' } })
      return b.segment.uuid as string
    },
    async addHost(segmentId, hostname) {
      await masakari.call('POST', `/segments/${segmentId}/hosts`, { host: { name: hostname, type: 'COMPUTE', control_attributes: 'SSH' } })
    },
    async setHostMaintenance(segmentId, hostname, on) {
      const hosts: Array<{ uuid: string; name: string }> = (await masakari.call('GET', `/segments/${segmentId}/hosts`)).hosts
      const host = hosts.find((h) => h.name === hostname)
      if (!host) throw new Error(`no host ${hostname} in segment ${segmentId}`)
      await masakari.call('PUT', `/segments/${segmentId}/hosts/${host.uuid}`, { host: { on_maintenance: on } })
    },
    listNotifications: () => listNotifications(masakari.call),
    setDuplicateInterval: (seconds) => restartMasakari(s, run, seconds),
    stopMasakari: () => stopMasakari(s, run),
    startMasakari: () => startMasakariAgain(s, run),
    restartKeystone: () => restartKeystone(s, run),
    async revokeToken(token) {
      const r = await httpJson('DELETE', `${s.authUrl}/auth/tokens`, {
        token: await masakari.token(),
        headers: { 'X-Subject-Token': token },
      })
      expectStatus(r, [204], 'DELETE /auth/tokens')
    },
    adminToken: masakari.token,
    stop() {
      run.stopping ??= (async () => {
        const t = Date.now()
        await killGroups(s.services)
        s.unguard()
        s.log(`keystone + masakari-api stopped in ${secs(Date.now() - t)}`)
      })()
      return run.stopping
    },
  }
}

type MasakariCall = (method: string, path: string, body?: unknown) => Promise<Recorded['body']>

/** Masakari's API as the admin, with a token renewed a minute before it expires. */
function adminMasakari(admin: Credentials): { call: MasakariCall; token: () => Promise<string> } {
  let cached: { token: string; expires: number; masakariUrl: string } | undefined
  const session = async () => {
    if (!cached || cached.expires - Date.now() < 60_000) {
      const r = await passwordToken(admin)
      cached = { token: r.token, expires: Date.parse(r.expiresAt), masakariUrl: catalogUrl(r.catalog, 'instance-ha', 'public') }
    }
    return cached
  }
  const call: MasakariCall = async (method, path, body) => {
    const s = await session()
    return expectStatus(
      await httpJson(method, `${s.masakariUrl}${path}`, { token: s.token, body }),
      [200, 201, 202, 204],
      `${method} ${path}`,
    ).body
  }
  return { call, token: async () => (await session()).token }
}

/** GET /notifications; Masakari's answer names the host by source_host_uuid only: add its name as `hostname`. */
async function listNotifications(masakari: MasakariCall): Promise<Notification[]> {
  const names = new Map<string, string>()
  const segments: Array<{ uuid: string }> = (await masakari('GET', '/segments')).segments
  for (const seg of segments) {
    for (const h of (await masakari('GET', `/segments/${seg.uuid}/hosts`)).hosts as Array<{ uuid: string; name: string }>)
      names.set(h.uuid, h.name)
  }
  const list = (await masakari('GET', '/notifications')).notifications as Notification[]
  return list.map((n) => ({ ...n, hostname: names.get(n.source_host_uuid) ?? '' }))
}

/** masakari-api again (same database, port and catalog) with another duplicate_notification_detection_interval. */
async function restartMasakari(s: Scratch, run: Running, seconds: number): Promise<void> {
  const t = Date.now()
  await stopMasakari(s, run)
  s.masakariSettings.duplicateInterval = seconds
  writeFileSync(s.masakariConfFile, masakariConf(s.dir, s.keystonePort, s.masakariPort, s.masakariSettings))
  await startMasakariAgain(s, run)
  s.log(`masakari-api restarted with duplicate_notification_detection_interval = ${seconds} in ${secs(Date.now() - t)}`)
}

/** masakari-api's process group killed; its port, database and config stay for startMasakariAgain. */
async function stopMasakari(s: Scratch, run: Running): Promise<void> {
  const ma = run.ma
  if (!ma) return
  const t = Date.now()
  await killGroups([ma])
  s.services.splice(s.services.indexOf(ma), 1)
  run.ma = undefined
  s.log(`masakari-api stopped in ${secs(Date.now() - t)}`)
}

/** The launcher again on the same config (no db sync: the database is the one it had), ready once it answers an authenticated call. */
async function startMasakariAgain(s: Scratch, run: Running): Promise<void> {
  if (run.ma) throw new Error('masakari-api is already running: stopMasakari first')
  const t = Date.now()
  run.ma = await launchMasakari(s)
  await authenticatedRoundTrip(s, run.ma, run.masakariUrl)
  reportPids(s, run)
  s.log(`masakari-api started again in ${secs(Date.now() - t)}`)
}

/** Keystone's process group killed and uwsgi started again on the same config, database and keys. */
async function restartKeystone(s: Scratch, run: Running): Promise<void> {
  const t = Date.now()
  const ks = s.services.find((svc) => svc.name === 'keystone')
  if (ks) {
    await killGroups([ks])
    s.services.splice(s.services.indexOf(ks), 1)
  }
  await launchKeystone(s)
  reportPids(s, run)
  s.log(`keystone restarted in ${secs(Date.now() - t)}`)
}

/** Adds the pids of services started since to the ones reported (so that a caller checks they all end). */
function reportPids(s: Scratch, run: Running): void {
  for (const pid of groupPids(s)) if (!run.pids.includes(pid)) run.pids.push(pid)
}
