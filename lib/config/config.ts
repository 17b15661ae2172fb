/**
 * The monitor's configuration: one YAML file, validated at once so an operator sees every
 * problem in one run. Secrets may live in the file, in a separate file, or in the environment.
 */
import { readFile, stat } from 'node:fs/promises'
import { homedir, hostname as osHostname } from 'node:os'
import { dirname, resolve } from 'node:path'
import { z } from 'zod'
import { parse as parseYaml } from 'yaml'
import { issueProblems } from './config-keys.js'
import { type ConsulAccess, ConsulAccessSchema, hasUrlCredentials, noCredentials, resolveConsulAccess } from '../consul/consul-api.js'
import { GossipSchema, GuardsSchema } from '../decide/guards.js'
import { LEVELS } from '../base/log.js'
import { NETWORKS } from '../base/networks.js'
import { HostNamesSchema, managementAgentAddress, metaAgentAddress } from '../consul/host-names.js'
import { LockSchema } from '../consul/sender.js'
import { AppCredentialAuthSchema, type AuthConfig, AuthSchema, MasakariSchema, PasswordAuthSchema } from '../openstack/masakari-config.js'
import { cloudLayer, type CredentialLayer, envLayer, openstackConfigFiles, SECRET_GROUPS } from '../openstack/openstack-env.js'
import { oneLine } from '../base/quote.js'
import { agentPath, type FencingConfig, FencingSchema, fencingProblems, NO_HOST, parseHostsFile } from '../fence/fence-config.js'
import { templateMetaKeys } from '../fence/fence-template.js'
import { fromUpstream, isUpstreamConfig, type UpstreamConfig } from '../openstack/upstream-config.js'

export const DEFAULT_CONFIG_PATH = '/etc/masakari-consul/config.yaml'

const CONSUL_NO_CREDENTIALS = noCredentials("an agent takes Consul's ACL token: give it as consul.token or consul.tokenFile")

export const ConsulAgentsSchema = z
  .strictObject({
    /**
     * HTTP address (host:port or URL) of this controller's own agent on each network. When set,
     * a recovery is confirmed with that agent just before it is decided: it must have a leader
     * and still show the host failed; an agent that does not answer makes that network unknown.
     */
    agents: z
      .partialRecord(
        z.enum(NETWORKS),
        z
          .string()
          .min(1)
          .refine(...CONSUL_NO_CREDENTIALS),
      )
      .default({}),
    /** Seconds to wait for an agent's answer. */
    timeout: z.number().positive().default(1),
    /**
     * The agents' LAN gossip tuning (`gossip_lan`), when it is not Consul's default: it sets how
     * long a burst of failures can take to be reported (guards.burst). Use the same values as the
     * agents, e.g. those of gossip-fast.json.
     */
    gossip: GossipSchema,
    /** One sender among several controllers (a Consul session lock) and the record they share. */
    lock: LockSchema,
    ...ConsulAccessSchema.shape,
  })
  .prefault({})

export const ConfigSchema = z.strictObject({
  /** Directory for snapshots, the ledger and outbox, the lock and the token cache. */
  stateDir: z.string().min(1).default('/var/lib/masakari-consul'),
  /** This monitor's own node name in the clusters; never notified about. Default: the machine's hostname. */
  hostname: z.string().min(1).optional(),
  /** Strategy file (matrix.yaml shape); omitted = the spec's default (recovery whenever storage is down). */
  strategy: z.string().min(1).optional(),
  /**
   * Seconds between resyncs while anything is unsettled (a host not up, a decision held or
   * unconfirmed, a notification pending, a run that did not complete): the pulse check then runs
   * a full evaluation against Consul's current state, since a lost watch edge is never resent.
   */
  resync: z.number().min(5).max(600).default(60),
  /** A host seen for the first time already in a recovery row: notify (default) or record it as the baseline. */
  firstSight: z.enum(['notify', 'baseline']).default('notify'),
  /** File the decision log is appended to, besides stderr; "" to log to stderr only. Default: <stateDir>/decisions.log. */
  logFile: z.string().optional(),
  guards: GuardsSchema,
  consul: ConsulAgentsSchema,
  masakari: MasakariSchema,
  log: z
    .object({
      /** Lines below this level are not written (stderr and logFile alike). */
      level: z.enum(LEVELS).default('info'),
    })
    .prefault({}),
  metrics: z
    .object({
      /**
       * A Prometheus textfile for node_exporter's textfile collector (a `.prom` file in its
       * --collector.textfile.directory), rewritten atomically at the end of every run that
       * evaluated. Off when omitted.
       */
      textfile: z
        .string()
        .min(1)
        .refine((p) => p.endsWith('.prom'), { message: "node_exporter's textfile collector reads only files named *.prom" })
        .optional(),
    })
    .prefault({}),
  /**
   * Upstream masakari-monitors' masakarimonitors.conf, read as it is: [api] credentials, [consul]
   * agents and matrix_config_file, [host] what has a meaning here. This file's own keys win.
   */
  upstreamConfig: z.string().min(1).optional(),
  /** Consul node name → Masakari host name. */
  hostNames: HostNamesSchema,
  /** Power a failed host off through its fence agent (issue #21); off by default. */
  fencing: FencingSchema,
})

/**
 * The file as written: `masakari.*` keys may be left to masakarimonitors.conf, the OS_* variables
 * or clouds.yaml (no defaults here for what those can give, or they would never be asked).
 */
const AuthFileSchema = z.strictObject({
  ...PasswordAuthSchema.shape,
  ...AppCredentialAuthSchema.shape,
  method: z.enum(['password', 'application_credential']).optional(),
})
const MasakariFileSchema = MasakariSchema.extend({
  authUrl: z.string().optional(),
  // Checked, whatever its source, with the other masakari.* values (resolveMasakari).
  endpoint: z.url().optional(),
  auth: AuthFileSchema.optional(),
  interface: z.string().optional(),
  insecure: z.boolean().optional(),
  requestTimeout: z.number().optional(),
  /** The clouds.yaml cloud to take credentials from (else OS_CLOUD). */
  cloud: z.string().min(1).optional(),
})
const ConfigFileSchema = ConfigSchema.extend({ masakari: MasakariFileSchema.prefault({}) })
type MasakariFile = z.infer<typeof MasakariFileSchema>

type RawConfig = z.infer<typeof ConfigSchema>

/** The configuration with defaults applied, paths made absolute and the secret resolved. */
export interface Config extends Omit<RawConfig, 'hostname' | 'logFile'> {
  source: string
  hostname: string
  logFile: string | undefined
  /** The password or application credential secret, wherever it came from. */
  secret: string
  /** The fence agents' password (fencing.passwordFile or fencing.passwordEnv); undefined when none is set. */
  fencePassword: string | undefined
  /** The contents of masakari.caFile, read when the config loads (a missing file is a config error, not a worker crash). */
  caPem: string | undefined
  /** Token and TLS for the own Consul agents, from consul.* or Consul's environment variables. */
  consulAccess: ConsulAccess
  /** What works but should not be so; logged by every run (see CheckedConfig). */
  warnings: string[]
  /**
   * Where each value came from, by dotted key: "<this file>: masakari.region", "[api] auth_url in
   * <masakarimonitors.conf>", "OS_AUTH_URL"… The most specific key that is here answers for a key
   * below it; a key under none is its default. For `masakari-consul config`.
   */
  origins: Record<string, string>
}

export class ConfigError extends Error {
  override name = 'ConfigError'
  /** One line each: values and keys from the file (in zod's messages too) have their control characters escaped. */
  readonly problems: string[]
  constructor(
    readonly source: string,
    problems: string[],
  ) {
    const lines = problems.map((p) => oneLine(p, 500))
    super(`invalid config ${source}:\n  - ${lines.join('\n  - ')}`)
    this.problems = lines
  }
}

export interface ConfigEnv {
  readFile: (path: string) => Promise<string>
  env: Record<string, string | undefined>
  hostname: () => string
  /** Where clouds.yaml and secure.yaml are looked for, in order (openstackConfigFiles); none when absent. */
  openstackFiles?: { clouds: string[]; secure: string[] }
  /** A file's permission bits, to warn about a secret others can read; not checked when absent. */
  fileMode?: (path: string) => Promise<number>
}

export const realConfigEnv: ConfigEnv = {
  readFile: (p) => readFile(p, 'utf8'),
  env: process.env,
  hostname: osHostname,
  openstackFiles: {
    clouds: openstackConfigFiles(process.cwd(), homedir(), process.env, 'clouds'),
    secure: openstackConfigFiles(process.cwd(), homedir(), process.env, 'secure'),
  },
  fileMode: async (p) => (await stat(p)).mode & 0o7777,
}

/** Loads and validates the config; every problem at once in a ConfigError. Its warnings are in `warnings`. */
export async function loadConfig(path: string, env: ConfigEnv = realConfigEnv): Promise<Config> {
  const checked = await checkConfig(path, env)
  if (!checked.config) throw new ConfigError(checked.source, checked.problems)
  return checked.config
}

export interface CheckedConfig {
  source: string
  /** Present when there is no problem. */
  config?: Config
  problems: string[]
  /** Things that work but should not be so (a secret file others can read, upstream options without a meaning here). */
  warnings: string[]
}

/** Like loadConfig, without throwing: for a validate command that shows problems and warnings alike. */
export async function checkConfig(path: string, env: ConfigEnv = realConfigEnv): Promise<CheckedConfig> {
  const source = resolve(path)
  const problems: string[] = []
  const warnings: string[] = []
  const fail = () => ({ source, problems: problems.map((p) => oneLine(p, 500)), warnings })
  const read = await readRaw(source, env, problems, warnings)
  if (!read) return fail()
  // The fallback agent address (coordination.ts, host-names.ts): refused like consul.agents.
  if (env.env.CONSUL_HTTP_ADDR && hasUrlCredentials(env.env.CONSUL_HTTP_ADDR))
    problems.push(`CONSUL_HTTP_ADDR: ${CONSUL_NO_CREDENTIALS[1]}`)
  const abs = (p: string) => resolve(dirname(source), p)
  const parsed = ConfigFileSchema.safeParse(read.raw)
  if (!parsed.success) {
    problems.push(...issueProblems(ConfigFileSchema, parsed.error.issues))
    // The credentials' problems too, all in one run, when their section itself is well-formed.
    const section = MasakariFileSchema.safeParse((read.raw as { masakari?: unknown }).masakari ?? {})
    if (section.success) await resolveMasakari(section.data, read.upstream, env, abs, problems, warnings)
    const fencing = FencingSchema.safeParse((read.raw as { fencing?: unknown }).fencing)
    if (fencing.success) await resolveFencing(fencing.data, env, abs, problems, warnings)
    return fail()
  }
  const cfg = parsed.data
  if (cfg.hostNames.metaKey !== undefined && metaAgentAddress(cfg.consul.agents, env.env) === undefined)
    problems.push("hostNames.metaKey: node meta is read from an own agent's catalog: set consul.agents (or CONSUL_HTTP_ADDR)")
  if (
    cfg.fencing.enabled &&
    templateMetaKeys(cfg.fencing.template).length > 0 &&
    managementAgentAddress(cfg.consul.agents, env.env) === undefined
  )
    problems.push(
      "fencing.template: {meta.KEY} is read from the management agent's catalog: set consul.agents.management (or CONSUL_HTTP_ADDR)",
    )
  const resolved = await resolveMasakari(cfg.masakari, read.upstream, env, abs, problems, warnings)
  const consulAccess = await resolveConsulAccess(cfg.consul, env.env, env.readFile, abs, problems)
  const fencing = await resolveFencing(cfg.fencing, env, abs, problems, warnings)
  if (!resolved || problems.length > 0) return fail()
  const { origins: masakariOrigins, ...masakari } = resolved
  const { fenceOrigins, ...fenced } = fencing
  const stateDir = abs(cfg.stateDir)
  const config: Config = {
    ...cfg,
    source,
    stateDir,
    hostname: cfg.hostname ?? env.hostname(),
    strategy: cfg.strategy === undefined ? undefined : abs(cfg.strategy),
    logFile: cfg.logFile === '' ? undefined : cfg.logFile === undefined ? resolve(stateDir, 'decisions.log') : abs(cfg.logFile),
    metrics: { textfile: cfg.metrics.textfile === undefined ? undefined : abs(cfg.metrics.textfile) },
    ...(cfg.upstreamConfig === undefined ? {} : { upstreamConfig: abs(cfg.upstreamConfig) }),
    ...masakari,
    ...fenced,
    consulAccess,
    warnings,
    origins: { ...settingOrigins(source, read, masakariOrigins), ...fenceOrigins },
  }
  return { source, config, problems: [], warnings }
}

/**
 * The config file as written, with what its `upstreamConfig` implies underneath, validated, and
 * no secret resolved: for install-watches, which needs the paths and the agents of a migrated
 * config (they may come from upstream's [consul]) but not the password, which may live only in
 * the agents' environment. Every problem at once in a ConfigError.
 */
export async function readConfigFile(path: string, env: ConfigEnv = realConfigEnv): Promise<z.infer<typeof ConfigFileSchema>> {
  const source = resolve(path)
  const problems: string[] = []
  const read = await readRaw(source, env, problems, [])
  if (!read) throw new ConfigError(source, problems)
  const parsed = ConfigFileSchema.safeParse(read.raw)
  if (!parsed.success) problems.push(...issueProblems(ConfigFileSchema, parsed.error.issues))
  if (!parsed.success || problems.length > 0) throw new ConfigError(source, problems)
  return parsed.data
}

/**
 * The file as a raw object: our YAML, with what its `upstreamConfig` implies underneath; or
 * upstream's masakarimonitors.conf itself, which then stands for a config of defaults.
 */
async function readRaw(source: string, env: ConfigEnv, problems: string[], warnings: string[]) {
  let text: string
  try {
    text = await env.readFile(source)
  } catch (err) {
    problems.push(`cannot read it: ${(err as Error).message}`)
    return undefined
  }
  if (isUpstreamConfig(source, text)) {
    const upstream = fromUpstream(text, source, problems)
    warnings.push(...upstream.warnings)
    upstream.origins.set('upstreamConfig', `--config ${source}, upstream's file itself`)
    return { raw: { ...upstream.settings, upstreamConfig: source }, upstream, own: {} }
  }
  let raw: unknown
  try {
    raw = parseYaml(text, { prettyErrors: true }) ?? {}
  } catch (err) {
    problems.push(`not valid YAML: ${(err as Error).message.split('\n')[0]}`)
    return undefined
  }
  const file = (raw as { upstreamConfig?: unknown }).upstreamConfig
  if (typeof file !== 'string' || file === '') return { raw, own: raw }
  const path = resolve(dirname(source), file)
  let upstreamText: string
  try {
    upstreamText = await env.readFile(path)
  } catch (err) {
    problems.push(`upstreamConfig: cannot read ${path}: ${(err as Error).message}`)
    return undefined
  }
  const upstream = fromUpstream(upstreamText, path, problems)
  warnings.push(...upstream.warnings)
  return { raw: underneath(upstream.settings, raw), upstream, own: raw }
}

/**
 * Config.origins: upstream's file under the masakari.* sources under this file's own keys (which
 * always win). The file layer's masakari.* origins ('config') are left out: such a value may
 * have come from upstream's [host] through `underneath`, and this file's own are named by key.
 */
function settingOrigins(
  source: string,
  read: { own: unknown; upstream?: UpstreamConfig },
  masakari: Map<string, string>,
): Record<string, string> {
  const origins: Record<string, string> = Object.fromEntries(read.upstream?.origins ?? [])
  for (const [k, origin] of masakari) if (origin !== 'config') origins[`masakari.${k}`] = origin
  for (const k of leafKeys(read.own)) origins[k] = `${source}: ${k}`
  return origins
}

/** The dotted keys of an object's values that are not objects themselves ("masakari.auth.username"). */
export function leafKeys(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return prefix === '' ? [] : [prefix]
  return Object.entries(value).flatMap(([k, v]) => leafKeys(v, prefix === '' ? k : `${prefix}.${k}`))
}

/** `over`'s values, with `under`'s where `over` has none (objects merged key by key). */
export function underneath(under: unknown, over: unknown): unknown {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
  if (!isObj(under) || !isObj(over)) return over === undefined ? under : over
  const out: Record<string, unknown> = { ...under }
  for (const [k, v] of Object.entries(over)) out[k] = underneath(under[k], v)
  return out
}

type Resolved = Pick<Config, 'masakari' | 'secret' | 'caPem'>

/**
 * masakari.* from its sources, key by key, first found wins: the config file, upstreamConfig's
 * [api], the OS_* variables, the clouds.yaml cloud (masakari.cloud, else OS_CLOUD). A secret
 * comes whole from the first source that has one; keys of the other auth method are dropped.
 */
async function resolveMasakari(
  file: MasakariFile,
  upstream: UpstreamConfig | undefined,
  env: ConfigEnv,
  abs: (p: string) => string,
  problems: string[],
  warnings: string[],
): Promise<(Resolved & { origins: Map<string, string> }) | undefined> {
  const { cloud: cloudName = env.env.OS_CLOUD || undefined, ...own } = file
  const layers: CredentialLayer[] = [fileLayer(own), ...(upstream ? [upstream.layer] : []), envLayer(env.env, problems)]
  if (cloudName !== undefined) {
    const at = file.cloud === undefined ? 'OS_CLOUD' : 'masakari.cloud'
    layers.push(
      await cloudLayer(cloudName, { ...(env.openstackFiles ?? { clouds: [], secure: [] }), readFile: env.readFile }, at, problems),
    )
  }
  const { raw, origins, secretLayer } = stack(layers)
  const parsed = MasakariSchema.safeParse(raw)
  for (const issue of parsed.error?.issues ?? []) {
    const origin = origins.get(issue.path.map(String).join('.'))
    problems.push(...issueProblems(MasakariSchema, [issue], 'masakari').map((p) => (origin ? `${p} (from ${origin})` : p)))
  }
  // The auth section's own problems even when another key is wrong: all problems in one run.
  const auth = parsed.data?.auth ?? AuthSchema.safeParse(raw.auth).data
  if (auth) problems.push(...authProblems(auth))
  const secret = auth && (await resolveSecret(auth, env, abs, problems))
  if (!parsed.success) return undefined
  const masakari = parsed.data
  const secretFile = secretLayer === layers[0] ? ownSecretFile(masakari.auth, abs) : secretLayer?.secretFile
  if (secretFile) warnings.push(...(await secretFileWarnings(secretFile, 'the Masakari secret', env)))
  const caFile = masakari.caFile === undefined ? undefined : abs(masakari.caFile)
  const caPem = caFile === undefined ? undefined : await readCaFile(caFile, env, problems)
  return { masakari: { ...masakari, caFile }, secret: secret ?? '', caPem, origins }
}

function fileLayer(file: Omit<MasakariFile, 'cloud'>): CredentialLayer {
  const values: CredentialLayer['values'] = new Map()
  for (const [k, v] of Object.entries(file)) {
    if (k === 'auth' && v) for (const [a, w] of Object.entries(v)) values.set(`auth.${a}`, { value: w, origin: 'config' })
    else if (v !== undefined) values.set(k, { value: v, origin: 'config' })
  }
  return { values }
}

const APP_CREDENTIAL_KEYS = new Set(Object.keys(AppCredentialAuthSchema.shape).map((k) => `auth.${k}`))
const PASSWORD_KEYS = new Set(Object.keys(PasswordAuthSchema.shape).map((k) => `auth.${k}`))

/** The layers stacked into one raw masakari section, with where each value came from. */
function stack(layers: CredentialLayer[]) {
  const authKeys = (l: CredentialLayer) => [...l.values.keys()].filter((k) => k.startsWith('auth.'))
  const decider = layers.find((l) => authKeys(l).length > 0)
  const declared = layers.find((l) => l.values.has('auth.method'))?.values.get('auth.method')?.value
  const appCred =
    declared === undefined
      ? decider !== undefined && authKeys(decider).some((k) => /applicationCredential(Id|Name)/.test(k))
      : declared === 'application_credential'
  const allowed = appCred ? APP_CREDENTIAL_KEYS : PASSWORD_KEYS
  const groupOwner = SECRET_GROUPS.map((g) => layers.find((l) => g.some((k) => l.values.has(k))))
  const raw: Record<string, unknown> = {}
  const origins = new Map<string, string>()
  for (const [i, layer] of layers.entries()) {
    for (const [key, { value, origin }] of layer.values) {
      if (origins.has(key)) continue
      const group = SECRET_GROUPS.findIndex((g) => (g as readonly string[]).includes(key))
      if (group >= 0 && groupOwner[group] !== layer) continue
      if (i > 0 && key.startsWith('auth.') && !allowed.has(key)) continue
      origins.set(key, origin)
      const [head, tail] = key.split('.') as [string, string | undefined]
      if (tail === undefined) raw[head] = value
      else raw[head] = { ...(raw[head] as object | undefined), [tail]: value }
    }
  }
  if (raw.auth === undefined) raw.auth = {}
  const secretLayer = groupOwner[appCred ? 1 : 0]
  return { raw, origins, secretLayer }
}

/** The file the config's own passwordFile / applicationCredentialSecretFile names. */
function ownSecretFile(auth: AuthConfig, abs: (p: string) => string): string | undefined {
  const file = auth.method === 'password' ? auth.passwordFile : auth.applicationCredentialSecretFile
  return file === undefined ? undefined : abs(file)
}

/**
 * The one rule for the Masakari secret, said wherever it is broken (README, Layout): the watch
 * runs read it as the Consul agents' user, and nobody else may. A file owned by root with 0600
 * would be private, and unreadable to those runs.
 */
export const SECRET_RULE =
  "the secret file must be owned by the user the watches run as (the Consul agents' user, e.g. consul), mode 0600 " +
  '(passwordEnv: set it in the environment file the consul-*.service units read, /etc/masakari-consul/environment, root 0600)'

/**
 * A secret in a file that group or others can read is a warning: anyone on the controller could
 * notify Masakari, or power hosts off with the fence agents' password.
 */
async function secretFileWarnings(path: string, what: string, env: ConfigEnv): Promise<string[]> {
  if (!env.fileMode) return []
  let mode: number
  try {
    mode = await env.fileMode(path)
  } catch {
    return [] // an unreadable file is already a problem where it is read
  }
  if ((mode & 0o044) === 0) return []
  const who = [mode & 0o040 ? 'its group' : '', mode & 0o004 ? 'others' : ''].filter(Boolean).join(' and ')
  return [
    `${path} holds ${what} and ${who} can read it (mode ${(mode & 0o777).toString(8).padStart(4, '0')}): chmod 0600 it; ${SECRET_RULE}`,
  ]
}

async function readCaFile(path: string, env: ConfigEnv, problems: string[]): Promise<string | undefined> {
  let text: string
  try {
    text = await env.readFile(path)
  } catch (err) {
    problems.push(`masakari.caFile: cannot read ${path}: ${(err as Error).message}`)
    return undefined
  }
  // Node's TLS would take a bundle without a certificate as no CA at all: every request fails later.
  if (!text.includes('-----BEGIN CERTIFICATE-----'))
    problems.push(`masakari.caFile: ${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`)
  return text
}

function authProblems(auth: AuthConfig): string[] {
  const problems: string[] = []
  const at = 'masakari.auth'
  const userByName = auth.username !== undefined
  if (auth.method === 'password') {
    if (!userByName && auth.userId === undefined) problems.push(`${at}: set username (with userDomainName or userDomainId) or userId`)
    if (auth.projectName === undefined && auth.projectId === undefined)
      problems.push(`${at}: set projectName (with projectDomainName or projectDomainId) or projectId`)
    if (auth.projectName !== undefined && auth.projectDomainName === undefined && auth.projectDomainId === undefined) {
      problems.push(`${at}: projectName needs projectDomainName or projectDomainId`)
    }
  } else {
    if (auth.applicationCredentialId === undefined && auth.applicationCredentialName === undefined) {
      problems.push(`${at}: set applicationCredentialId, or applicationCredentialName with its user`)
    }
    if (
      auth.applicationCredentialId === undefined &&
      auth.applicationCredentialName !== undefined &&
      !userByName &&
      auth.userId === undefined
    ) {
      problems.push(`${at}: applicationCredentialName needs username (with userDomainName or userDomainId) or userId`)
    }
  }
  if (userByName && auth.userDomainName === undefined && auth.userDomainId === undefined) {
    problems.push(`${at}: username needs userDomainName or userDomainId`)
  }
  return problems
}

async function resolveSecret(
  auth: AuthConfig,
  env: ConfigEnv,
  abs: (p: string) => string,
  problems: string[],
): Promise<string | undefined> {
  const [key, inline, file, envName] =
    auth.method === 'password'
      ? (['password', auth.password, auth.passwordFile, auth.passwordEnv] as const)
      : ([
          'applicationCredentialSecret',
          auth.applicationCredentialSecret,
          auth.applicationCredentialSecretFile,
          auth.applicationCredentialSecretEnv,
        ] as const)
  const given = [inline, file, envName].filter((v) => v !== undefined).length
  if (given === 0) {
    const os = key === 'password' ? 'OS_PASSWORD' : 'OS_APPLICATION_CREDENTIAL_SECRET'
    problems.push(
      `masakari.auth: no ${key}: set one of ${key}, ${key}File, ${key}Env, or ${os}, or give it in upstreamConfig's [api] or the clouds.yaml cloud`,
    )
    return undefined
  }
  if (given !== 1) {
    problems.push(`masakari.auth: set exactly one of ${key}, ${key}File, ${key}Env (${given} given)`)
    return undefined
  }
  if (inline !== undefined) return inline
  if (file !== undefined) return secretFromFile(`masakari.auth.${key}File`, abs(file), env, problems)
  return secretFromEnv(`masakari.auth.${key}Env`, envName!, env, problems)
}

/** A secret file's contents, trimmed; a problem at `at` when it cannot be read or is empty. */
async function secretFromFile(at: string, path: string, env: ConfigEnv, problems: string[]): Promise<string | undefined> {
  try {
    const value = (await env.readFile(path)).trim()
    if (value === '') problems.push(`${at}: ${path} is empty`)
    return value
  } catch (err) {
    const denied = (err as NodeJS.ErrnoException).code === 'EACCES' ? `; ${SECRET_RULE}` : ''
    problems.push(`${at}: cannot read ${path}: ${(err as Error).message}${denied}`)
    return undefined
  }
}

/** A secret from the environment; a problem at `at` when the variable is unset or empty. */
function secretFromEnv(at: string, name: string, env: ConfigEnv, problems: string[]): string | undefined {
  const value = env.env[name]
  if (value === undefined || value === '')
    problems.push(
      `${at}: environment variable ${name} is not set (the watches get it from the consul-*.service units' EnvironmentFile, /etc/masakari-consul/environment)`,
    )
  return value
}

/**
 * The fencing section as a run uses it: the agent's path, fencing.hostsFile's hosts under
 * fencing.hosts' own, and the password read as Keystone's is (a file relative to the config, or
 * a variable), with the same warning for a file others can read. Off, neither file is read: a
 * file no run uses must not stop every watch run (exit 78) when it is missing; `validate` reads
 * them once fencing is on.
 */
async function resolveFencing(
  f: FencingConfig,
  env: ConfigEnv,
  abs: (p: string) => string,
  problems: string[],
  warnings: string[],
): Promise<{ fencing: FencingConfig; fencePassword: string | undefined; fenceOrigins: Record<string, string> }> {
  const own = fencingProblems(f)
  problems.push(...own)
  const fencing = {
    ...f,
    ...(f.agent === undefined ? {} : { agent: agentPath(f.agent, abs) }),
    ...(f.passwordFile === undefined ? {} : { passwordFile: abs(f.passwordFile) }),
    ...(f.hostsFile === undefined ? {} : { hostsFile: abs(f.hostsFile) }),
  }
  if (!f.enabled) return { fencing, fencePassword: undefined, fenceOrigins: {} }
  const fenceOrigins = await withHostsFile(fencing, env, problems)
  if (own.length > 0) return { fencing, fencePassword: undefined, fenceOrigins }
  if (fencing.passwordFile !== undefined) {
    const fencePassword = await secretFromFile('fencing.passwordFile', fencing.passwordFile, env, problems)
    if (fencePassword !== undefined) warnings.push(...(await secretFileWarnings(fencing.passwordFile, "the fence agents' password", env)))
    return { fencing, fencePassword, fenceOrigins }
  }
  const fencePassword = f.passwordEnv === undefined ? undefined : secretFromEnv('fencing.passwordEnv', f.passwordEnv, env, problems)
  return { fencing, fencePassword, fenceOrigins }
}

/**
 * fencing.hostsFile's hosts put into `fencing.hosts` under the config's own entries (an entry
 * there replaces the file's for its host, whole); a file that cannot be read or holds anything
 * but that map is a problem naming the file (and each key). Returns where each file entry came from.
 */
async function withHostsFile(fencing: FencingConfig, env: ConfigEnv, problems: string[]): Promise<Record<string, string>> {
  const path = fencing.hostsFile
  if (path === undefined) return {}
  let text: string
  try {
    text = await env.readFile(path)
  } catch (err) {
    problems.push(`fencing.hostsFile: cannot read ${path}: ${(err as Error).message}`)
    return {}
  }
  const file = parseHostsFile(text, path)
  if ('problems' in file) {
    problems.push(...file.problems)
    return {}
  }
  const fromFile = Object.keys(file.hosts).filter((h) => !Object.hasOwn(fencing.hosts, h))
  fencing.hosts = { ...file.hosts, ...fencing.hosts }
  if (Object.keys(fencing.hosts).length === 0 && fencing.template === undefined) problems.push(`${NO_HOST} (${path} holds none)`)
  return Object.fromEntries(fromFile.map((h) => [`fencing.hosts.${h}`, `${path}: ${h}`]))
}
