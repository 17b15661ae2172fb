/**
 * `config`: the effective configuration, one line per setting with where its value came from
 * (this file and key, upstream's masakarimonitors.conf section and option, an OS_* or CONSUL_*
 * variable, a clouds.yaml cloud, or the default). For a migration: what `monitoring_samples = 3`
 * became, which auth_url is used. Secrets are never printed, only where they came from.
 */
import { type Config, ConfigSchema, loadConfig } from '../config/config.js'
import { keyPaths } from '../config/config-keys.js'
import { escapeControls } from '../base/quote.js'
import type { Deps } from '../run/deps.js'

export interface Setting {
  key: string
  /** Absent for a secret, and for a key that is not set (`unset` says what that means). */
  value?: unknown
  secret?: true
  unset?: string
  /** Where it came from: a file and key or option, a variable, or "default". */
  from: string
}

const SECRETS = new Set(['masakari.auth.password', 'masakari.auth.applicationCredentialSecret', 'consul.token'])

/** What leaving these unset means: said, since a missing line would not. */
const UNSET: Record<string, string> = {
  strategy: 'built-in default, recovery whenever storage is down',
  logFile: 'stderr only',
  upstreamConfig: 'none',
  'metrics.textfile': 'off',
  'masakari.endpoint': "from the token's catalog",
  'masakari.region': 'any region',
  'masakari.caFile': 'system CAs',
}

/** The schema's keys in its order (the admin guide's), which the settings are printed in. */
const ORDER = keyPaths(ConfigSchema).map((p) => p.join('.'))

/** A key's place in ORDER: its own, or its nearest parent's (a hostNames.map entry is the map's). */
function rank(key: string): number {
  for (const k of selfAndParents(key)) if (ORDER.includes(k)) return ORDER.indexOf(k)
  return ORDER.length
}

/**
 * Consul's variables, each read when the config leaves its key unset (as resolveConsulAccess in
 * lib/consul/consul-api.ts does: CONSUL_HTTP_TOKEN_FILE only when CONSUL_HTTP_TOKEN is absent).
 */
function consulFromEnv(config: Config, env: Record<string, string | undefined>): Setting[] {
  const c = config.consul
  const noToken = c.token === undefined && c.tokenFile === undefined
  const candidates: Array<[string, string, boolean, unknown]> = [
    ['consul.token', 'CONSUL_HTTP_TOKEN', noToken, env.CONSUL_HTTP_TOKEN],
    ['consul.tokenFile', 'CONSUL_HTTP_TOKEN_FILE', noToken && env.CONSUL_HTTP_TOKEN === undefined, env.CONSUL_HTTP_TOKEN_FILE],
    ['consul.caFile', 'CONSUL_CACERT', c.caFile === undefined, env.CONSUL_CACERT],
    // As the monitor reads them: "1", "true" or "yes" is true.
    ['consul.ssl', 'CONSUL_HTTP_SSL', c.ssl === undefined, config.consulAccess.ssl],
    ['consul.sslVerify', 'CONSUL_HTTP_SSL_VERIFY', c.sslVerify === undefined, config.consulAccess.sslVerify],
  ]
  return candidates.flatMap(([key, name, unset, value]): Setting[] => {
    if (!unset || !env[name]) return []
    return [SECRETS.has(key) ? { key, secret: true, from: name } : { key, value, from: name }]
  })
}

/** The key and its parents, nearest first: masakari.auth.username, masakari.auth, masakari. */
function* selfAndParents(key: string) {
  for (let k = key; k !== ''; k = k.includes('.') ? k.slice(0, k.lastIndexOf('.')) : '') yield k
}

/** The source of a key: its own entry in config.origins, else its nearest parent's, else the default. */
function originOf(config: Config, key: string): string {
  for (const k of selfAndParents(key)) if (config.origins[k] !== undefined) return config.origins[k]
  return 'default'
}

/** Every setting of the loaded config, in the schema's order, with where it came from. */
export function effectiveSettings(config: Config, env: Record<string, string | undefined>): Setting[] {
  const settings = new Map<string, Setting>()
  const add = (key: string, value: unknown) => {
    const from = originOf(config, key)
    if (value === undefined) settings.set(key, { key, unset: UNSET[key]!, from })
    else settings.set(key, SECRETS.has(key) ? { key, secret: true, from } : { key, value, from })
  }
  const walk = (value: unknown, key: string) => {
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length > 0)
      for (const [k, v] of Object.entries(value)) walk(v, `${key}.${k}`)
    else if (value !== undefined || key in UNSET) add(key, value)
  }
  // The schema's keys only: the config also holds the resolved secret, the CA's contents, the messages.
  for (const k of Object.keys(ConfigSchema.shape)) walk(config[k as keyof typeof ConfigSchema.shape], k)
  for (const key of Object.keys(UNSET)) if (!settings.has(key)) add(key, undefined)
  for (const setting of consulFromEnv(config, env)) settings.set(setting.key, setting)
  return [...settings.values()].sort((a, b) => rank(a.key) - rank(b.key))
}

const shown = (v: unknown) => (typeof v === 'string' ? (v === '' ? '""' : escapeControls(v)) : JSON.stringify(v))

/** One line a setting: `key = value  (from …)`; a secret `key = (set, from …)`. */
export function settingLines(settings: Setting[]): string[] {
  const width = Math.max(...settings.map((s) => s.key.length))
  const from = (s: Setting) => (s.from === 'default' ? 'default' : `from ${escapeControls(s.from)}`)
  return settings.map((s) => {
    const value = s.secret
      ? `(set, ${from(s)})`
      : s.unset !== undefined
        ? `(not set: ${s.unset})  (${from(s)})`
        : `${shown(s.value)}  (${from(s)})`
    return `${s.key.padEnd(width)} = ${value}`
  })
}

/** Prints the effective config (`--json`: {config, settings, warnings}); an invalid config throws its ConfigError (exit 78). */
export async function runConfig(opts: { config: string; json: boolean }, deps: Deps): Promise<number> {
  const config = await loadConfig(opts.config, deps.configEnv)
  const settings = effectiveSettings(config, deps.configEnv.env)
  if (opts.json) {
    deps.stdout(`${JSON.stringify({ config: config.source, settings, warnings: config.warnings }, null, 2)}\n`)
    return 0
  }
  const lines = [`effective config of ${config.source} (secrets are not shown):`, ...settingLines(settings)]
  for (const w of config.warnings) lines.push(`warning: ${escapeControls(w)}`)
  deps.stdout(`${lines.join('\n')}\n`)
  return 0
}
