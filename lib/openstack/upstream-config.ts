/**
 * Migration from upstream masakari-monitors: its `masakarimonitors.conf` read as it is. `[api]`
 * (keystoneauth's options) becomes a layer of `masakari.*` values, `[consul]` the own agents
 * and the strategy (its matrix.yaml is read as it is by lib/decide/strategy.ts), `[host]` what has a
 * meaning with Consul's watches; every other option set is named in one warning.
 */
import { dirname, resolve } from 'node:path'
import { catalogInterface, authMethod, type CredentialLayer, KEYSTONEAUTH_KEYS } from './openstack-env.js'

/**
 * oslo.config's INI dialect: `[section]`, `key = value` or `key: value`, `#`/`;` comments, indented
 * continuation lines. An empty value (`cafile =`, which kolla-ansible writes for no CA) is not set:
 * oslo.config gives '' and keystoneauth takes '' as absent (`if cafile:`); a '' path would name
 * the config's own directory.
 */
export function parseIni(text: string, problems: string[], source: string): Map<string, Map<string, string>> {
  const sections = new Map<string, Map<string, string>>()
  let section: Map<string, string> | undefined
  let last: string | undefined
  text.split(/\r?\n/).forEach((line, i) => {
    if (/^\s*([#;].*)?$/.test(line)) return
    const header = /^\[([^\]]+)\]\s*$/.exec(line)
    if (header) {
      section = sections.get(header[1]!) ?? new Map()
      sections.set(header[1]!, section)
      last = undefined
      return
    }
    if (/^\s/.test(line) && section && last !== undefined) {
      const before = section.get(last)
      section.set(last, before ? `${before}\n${line.trim()}` : line.trim())
      return
    }
    const kv = /^([^=:\s]+)\s*[=:]\s*(.*)$/.exec(line)
    if (!kv || !section) {
      problems.push(`${source}:${i + 1}: not an option line of an INI section`)
      return
    }
    last = kv[1]!
    // oslo.config takes a value between matching quotes without them; the last of repeated options wins.
    section.set(last, kv[2]!.trim().replace(/^(["'])(.*)\1$/, '$2'))
  })
  for (const options of sections.values()) for (const [k, v] of options) if (v === '') options.delete(k)
  return sections
}

const API_KEYS: Record<string, string> = {
  ...KEYSTONEAUTH_KEYS,
  region: 'region',
  api_interface: 'interface',
  cafile: 'caFile',
  insecure: 'insecure',
  timeout: 'requestTimeout',
  auth_type: 'auth.method',
}
const CONSUL_AGENTS: Record<string, string> = { agent_manage: 'management', agent_tenant: 'tenant', agent_storage: 'storage' }
/** The options read here, by section. monitoring_interval too, when monitoring_samples is set (usedHere). */
const USED: Record<string, Set<string>> = {
  DEFAULT: new Set(['hostname']),
  api: new Set([...Object.keys(API_KEYS), 'api_version', 'default_domain_id', 'default_domain_name']),
  host: new Set(['monitoring_driver', 'monitoring_samples', 'api_retry_max', 'api_retry_interval']),
  consul: new Set([...Object.keys(CONSUL_AGENTS), 'matrix_config_file']),
}
/** Why the rest is ignored, said once after the list. */
const IGNORED_WHY =
  "upstream's logging, messaging, API service and other monitors are its own; polling, IPMI and pacemaker have no meaning with Consul's watches; domain-, system- or trust-scoped auth and client certificates are not supported"

export interface UpstreamConfig {
  /** `masakari.*` values from `[api]`. */
  layer: CredentialLayer
  /** Our config keys it implies, under the config file's own (raw, before validation). */
  settings: Record<string, unknown>
  /** Where each of `settings`' values came from, by dotted key ("guards.hold.recovery" → the options and the sum). */
  origins: Map<string, string>
  /** Values set there that are not honoured as such, one line each; then one line naming every option not used. */
  warnings: string[]
}

const bool = (v: string) => /^(1|true|yes|on)$/i.test(v)

/** One `[api]` value in our terms; undefined for an auth type we do not support. */
function apiValue(key: string, v: string, source: string): unknown {
  if (key === 'auth.method') return authMethod(v)
  if (key === 'interface') return catalogInterface(v)
  if (key === 'insecure') return bool(v)
  if (key === 'requestTimeout') return Number(v)
  if (key === 'caFile') return resolve(dirname(source), v)
  return v
}

/** `[api]` → masakari.* (keystoneauth's password and application credential plugins, session options). */
function apiLayer(api: Map<string, string>, source: string, problems: string[], warnings: string[]): CredentialLayer {
  const values: CredentialLayer['values'] = new Map()
  const at = (k: string) => `[api] ${k} in ${source}`
  for (const [k, v] of api) {
    const key = API_KEYS[k]
    if (key === undefined) continue // named with the other unused options (ignoredWarning)
    const value = apiValue(key, v, source)
    if (value === undefined) problems.push(`${at(k)}: auth type '${v}' is not supported (password or v3applicationcredential)`)
    else values.set(key, { value, origin: at(k) })
  }
  if (api.has('api_version') && api.get('api_version') !== 'v1') warnings.push(`${at('api_version')}: Masakari's API v1 is used`)
  // keystoneauth's default domain stands for the user's and the project's when they are not given.
  for (const [opt, keys] of [
    ['default_domain_id', ['auth.userDomainId', 'auth.projectDomainId']],
    ['default_domain_name', ['auth.userDomainName', 'auth.projectDomainName']],
  ] as const) {
    const v = api.get(opt)
    if (v !== undefined) for (const key of keys) if (!values.has(key)) values.set(key, { value: v, origin: at(opt) })
  }
  return { values, ...(api.has('password') || api.has('application_credential_secret') ? { secretFile: source } : {}) }
}

/** `[host]`: samples of a polling driver become a hold time, its retries a retry policy. */
function hostSettings(
  host: Map<string, string>,
  source: string,
  warnings: string[],
  origins: Map<string, string>,
): Record<string, unknown> {
  const settings: Record<string, unknown> = {}
  // "monitoring_interval = 10", or "monitoring_interval = 60 (its default)": what the sum below used.
  const said = (k: string, fallback: number) => `${k} = ${host.get(k) ?? `${fallback} (its default)`}`
  const interval = Number(host.get('monitoring_interval') ?? 60)
  const samples = host.get('monitoring_samples')
  // Upstream notifies once `samples` polls in a row, `interval` apart, agree: that long a hold.
  if (samples !== undefined && Number(samples) > 1) {
    settings.guards = { hold: { recovery: (Number(samples) - 1) * interval } }
    const sum = `(${samples} − 1) × ${interval} s`
    origins.set('guards.hold.recovery', `[host] monitoring_samples = ${samples}, ${said('monitoring_interval', 60)} in ${source}: ${sum}`)
  }
  const retryMax = host.get('api_retry_max')
  const retryInterval = host.get('api_retry_interval')
  if (retryMax !== undefined || retryInterval !== undefined) {
    const every = Number(retryInterval ?? 10)
    settings.masakari = { delivery: { initialBackoff: every, maxBackoff: every, expiry: Number(retryMax ?? 12) * every } }
    const interval = `[host] ${said('api_retry_interval', 10)} in ${source}`
    origins.set('masakari.delivery.initialBackoff', interval)
    origins.set('masakari.delivery.maxBackoff', interval)
    origins.set('masakari.delivery.expiry', `[host] ${said('api_retry_max', 12)} × ${said('api_retry_interval', 10)} in ${source}`)
  }
  const driver = host.get('monitoring_driver')
  if (driver !== undefined && driver !== 'consul')
    warnings.push(`[host] monitoring_driver in ${source}: '${driver}', not 'consul'; its [consul] section is read all the same`)
  return settings
}

/** Whether an option is read here: the interval counts only with the samples it multiplies. */
function usedHere(section: string, option: string, options: Map<string, string>): boolean {
  if (section === 'host' && option === 'monitoring_interval') return options.has('monitoring_samples')
  return USED[section]?.has(option) ?? false
}

/**
 * Every option set in the file that is not read here, named once, in one warning: an operator
 * migrating sees at once what of upstream's file does nothing (kolla-ansible's debug and
 * log_dir, oslo.messaging's transport_url, the process monitor's [process]…).
 */
function ignoredWarning(sections: Map<string, Map<string, string>>, source: string): string[] {
  const parts: string[] = []
  for (const [section, options] of sections) {
    const ignored = [...options.keys()].filter((k) => !usedHere(section, k, options))
    if (ignored.length > 0) parts.push(`[${section}] ${ignored.join(', ')}`)
  }
  return parts.length === 0 ? [] : [`options in ${source} not used here: ${parts.join('; ')} (${IGNORED_WHY})`]
}

/** What upstream's masakarimonitors.conf says, in our terms. Relative paths are relative to its directory. */
export function fromUpstream(text: string, source: string, problems: string[]): UpstreamConfig {
  const warnings: string[] = []
  const sections = parseIni(text, problems, source)
  const layer = apiLayer(sections.get('api') ?? new Map(), source, problems, warnings)
  const origins = new Map<string, string>()
  const settings = hostSettings(sections.get('host') ?? new Map(), source, warnings, origins)
  const consul = sections.get('consul') ?? new Map()
  const agents: Record<string, string> = {}
  for (const [opt, network] of Object.entries(CONSUL_AGENTS)) {
    const v = consul.get(opt)
    if (!v) continue
    agents[network] = v
    origins.set(`consul.agents.${network}`, `[consul] ${opt} in ${source}`)
  }
  if (Object.keys(agents).length > 0) settings.consul = { agents }
  const matrix = consul.get('matrix_config_file')
  if (matrix) {
    settings.strategy = resolve(dirname(source), matrix)
    origins.set('strategy', `[consul] matrix_config_file in ${source}`)
  }
  const hostname = sections.get('DEFAULT')?.get('hostname')
  if (hostname) {
    settings.hostname = hostname
    origins.set('hostname', `[DEFAULT] hostname in ${source}`)
  }
  warnings.push(...ignoredWarning(sections, source))
  return { layer, settings, origins, warnings }
}

/** Whether a config file is upstream's INI rather than our YAML: a `.conf` name, or a first line that is a section header. */
export function isUpstreamConfig(path: string, text: string): boolean {
  if (path.endsWith('.conf')) return true
  const first = text.split(/\r?\n/).find((l) => !/^\s*([#;].*)?$/.test(l))
  return first !== undefined && /^\[[A-Za-z_][\w.-]*\]\s*$/.test(first)
}
