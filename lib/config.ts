/**
 * The monitor's configuration: one YAML file, validated at once so an operator sees every
 * problem in one run. Secrets may live in the file, in a separate file, or in the environment.
 */
import { readFile } from 'node:fs/promises'
import { hostname as osHostname } from 'node:os'
import { dirname, resolve } from 'node:path'
import { z } from 'zod'
import { parse as parseYaml } from 'yaml'
import { type ConsulAccess, ConsulAccessSchema, resolveConsulAccess } from './consul-api.js'
import { GossipSchema, GuardsSchema } from './guards.js'
import { LEVELS } from './log.js'
import { NETWORKS } from './networks.js'
import { LockSchema } from './sender.js'
import { oneLine } from './quote.js'

export const DEFAULT_CONFIG_PATH = '/etc/masakari-consul/config.yaml'

const secret = {
  /** The secret itself (prefer a file or the environment). */
  inline: z.string().min(1).optional(),
  /** A file holding the secret; surrounding whitespace is trimmed. */
  file: z.string().min(1).optional(),
  /** The name of an environment variable holding the secret. */
  env: z.string().min(1).optional(),
}

const PasswordAuthSchema = z.object({
  method: z.literal('password'),
  /** User name (with userDomainName/userDomainId) or userId. */
  username: z.string().min(1).optional(),
  userId: z.string().min(1).optional(),
  userDomainName: z.string().min(1).optional(),
  userDomainId: z.string().min(1).optional(),
  password: secret.inline,
  passwordFile: secret.file,
  passwordEnv: secret.env,
  /** The project to scope the token to: name (with projectDomainName/projectDomainId) or id. */
  projectName: z.string().min(1).optional(),
  projectId: z.string().min(1).optional(),
  projectDomainName: z.string().min(1).optional(),
  projectDomainId: z.string().min(1).optional(),
})

const AppCredentialAuthSchema = z.object({
  method: z.literal('application_credential'),
  /** The application credential's id, or its name with the owning user (username + domain, or userId). */
  applicationCredentialId: z.string().min(1).optional(),
  applicationCredentialName: z.string().min(1).optional(),
  username: z.string().min(1).optional(),
  userId: z.string().min(1).optional(),
  userDomainName: z.string().min(1).optional(),
  userDomainId: z.string().min(1).optional(),
  applicationCredentialSecret: secret.inline,
  applicationCredentialSecretFile: secret.file,
  applicationCredentialSecretEnv: secret.env,
})

const AuthSchema = z.preprocess(
  (v) =>
    v && typeof v === 'object' && !('method' in v)
      ? { method: 'applicationCredentialId' in v || 'applicationCredentialName' in v ? 'application_credential' : 'password', ...v }
      : v,
  z.discriminatedUnion('method', [PasswordAuthSchema, AppCredentialAuthSchema]),
)

export const MasakariSchema = z.object({
  /** Keystone v3 URL, e.g. https://keystone.example:5000/v3. */
  authUrl: z.url(),
  auth: AuthSchema,
  /** Catalog region of the instance-ha endpoint; any region when omitted. */
  region: z.string().min(1).optional(),
  /** Catalog interface of the instance-ha endpoint. */
  interface: z.enum(['public', 'internal', 'admin']).default('public'),
  /** Masakari API URL to use instead of the catalog's (…/v1/<project id>). */
  endpoint: z.url().optional(),
  /** CA bundle (PEM) to verify Keystone's and Masakari's TLS certificates. */
  caFile: z.string().min(1).optional(),
  /** Skip TLS verification. Only for lab clouds: it lets anyone on the path impersonate Masakari. */
  insecure: z.boolean().default(false),
  /** Seconds one HTTP request may take before it counts as failed (and is retried). */
  requestTimeout: z.number().positive().default(10),
  /** How a notification that could not be delivered is retried. */
  delivery: z
    .object({
      /** Seconds before the first retry; doubles each time. */
      initialBackoff: z.number().positive().default(1),
      /** Upper bound of the wait between retries, seconds. */
      maxBackoff: z.number().positive().default(30),
      /** Seconds after the decision when an undelivered notification is given up (logged as an error). */
      expiry: z.number().positive().default(600),
      /** Requests in flight towards Masakari at once (different hosts; one host's are sent in order). */
      concurrency: z.number().int().positive().default(4),
      /**
       * Seconds the handler that recorded a notification spends sending it itself before it
       * leaves it to the worker (the watch waits that long at most); 0: the worker sends all.
       */
      firstAttemptBudget: z.number().min(0).max(10).default(1.5),
    })
    .prefault({}),
})

export const ConsulAgentsSchema = z
  .object({
    /**
     * HTTP address (host:port or URL) of this controller's own agent on each network. When set,
     * a recovery is confirmed with that agent just before it is decided: it must have a leader
     * and still show the host failed; an agent that does not answer makes that network unknown.
     */
    agents: z.partialRecord(z.enum(NETWORKS), z.string().min(1)).default({}),
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

export const ConfigSchema = z.object({
  /** Directory for snapshots, the ledger and outbox, the lock and the token cache. */
  stateDir: z.string().min(1).default('/var/lib/masakari-consul'),
  /** This monitor's own node name in the clusters; never notified about. Default: the machine's hostname. */
  hostname: z.string().min(1).optional(),
  /** Strategy file (matrix.yaml shape); omitted = the spec's default (recovery whenever storage is down). */
  strategy: z.string().min(1).optional(),
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
})

type RawConfig = z.infer<typeof ConfigSchema>
export type MasakariConfig = RawConfig['masakari']
export type AuthConfig = MasakariConfig['auth']

/** The configuration with defaults applied, paths made absolute and the secret resolved. */
export interface Config extends Omit<RawConfig, 'hostname' | 'logFile'> {
  source: string
  hostname: string
  logFile: string | undefined
  /** The password or application credential secret, wherever it came from. */
  secret: string
  /** The contents of masakari.caFile, read when the config loads (a missing file is a config error, not a worker crash). */
  caPem: string | undefined
  /** Token and TLS for the own Consul agents, from consul.* or Consul's environment variables. */
  consulAccess: ConsulAccess
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
}

export const realConfigEnv: ConfigEnv = {
  readFile: (p) => readFile(p, 'utf8'),
  env: process.env,
  hostname: osHostname,
}

export async function loadConfig(path: string, env: ConfigEnv = realConfigEnv): Promise<Config> {
  const source = resolve(path)
  let text: string
  try {
    text = await env.readFile(source)
  } catch (err) {
    throw new ConfigError(source, [`cannot read it: ${(err as Error).message}`])
  }
  let raw: unknown
  try {
    raw = parseYaml(text, { prettyErrors: true })
  } catch (err) {
    throw new ConfigError(source, [`not valid YAML: ${(err as Error).message.split('\n')[0]}`])
  }
  const parsed = ConfigSchema.safeParse(raw ?? {})
  const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(top level)'}: ${i.message}`)
  if (!parsed.success) throw new ConfigError(source, problems)
  const cfg = parsed.data
  const base = dirname(source)
  const abs = (p: string) => resolve(base, p)
  problems.push(...authProblems(cfg.masakari.auth))
  const secret = await resolveSecret(cfg.masakari.auth, env, abs, problems)
  const caPem = cfg.masakari.caFile === undefined ? undefined : await readCaFile(abs(cfg.masakari.caFile), env, problems)
  const consulAccess = await resolveConsulAccess(cfg.consul, env.env, env.readFile, abs, problems)
  if (problems.length > 0) throw new ConfigError(source, problems)
  const stateDir = abs(cfg.stateDir)
  return {
    ...cfg,
    source,
    stateDir,
    hostname: cfg.hostname ?? env.hostname(),
    strategy: cfg.strategy === undefined ? undefined : abs(cfg.strategy),
    logFile: cfg.logFile === '' ? undefined : cfg.logFile === undefined ? resolve(stateDir, 'decisions.log') : abs(cfg.logFile),
    masakari: { ...cfg.masakari, caFile: cfg.masakari.caFile === undefined ? undefined : abs(cfg.masakari.caFile) },
    metrics: { textfile: cfg.metrics.textfile === undefined ? undefined : abs(cfg.metrics.textfile) },
    secret: secret ?? '',
    caPem,
    consulAccess,
  }
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
  if (given !== 1) {
    problems.push(`masakari.auth: set exactly one of ${key}, ${key}File, ${key}Env (${given} given)`)
    return undefined
  }
  if (inline !== undefined) return inline
  if (file !== undefined) {
    try {
      const value = (await env.readFile(abs(file))).trim()
      if (value === '') problems.push(`masakari.auth.${key}File: ${abs(file)} is empty`)
      return value
    } catch (err) {
      problems.push(`masakari.auth.${key}File: cannot read ${abs(file)}: ${(err as Error).message}`)
      return undefined
    }
  }
  const value = env.env[envName!]
  if (value === undefined || value === '') problems.push(`masakari.auth.${key}Env: environment variable ${envName} is not set`)
  return value
}
