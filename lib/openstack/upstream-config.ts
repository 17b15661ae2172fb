/**
 * Migration from upstream masakari-monitors: its `masakarimonitors.conf` read as it is. `[api]`
 * (keystoneauth's options) becomes a layer of `masakari.*` values, `[consul]` the own agents
 * and the strategy (its matrix.yaml is read as it is by lib/decide/strategy.ts), `[host]` what has a
 * meaning with Consul's watches; every option set that has none here is a warning.
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
/** keystoneauth options that do not change the request we make. */
const API_SILENT = new Set(['api_version', 'collect_timing', 'split_loggers', 'default_domain_id', 'default_domain_name'])
/** The default (pacemaker) driver's options, and polling: no meaning with Consul's watches. */
const HOST_UNMAPPED = new Set([
  'monitoring_interval',
  'disable_ipmi_check',
  'restrict_to_remotes',
  'ipmi_timeout',
  'ipmi_retry_max',
  'ipmi_retry_interval',
  'stonith_wait',
  'tcpdump_timeout',
  'corosync_multicast_interfaces',
  'corosync_multicast_ports',
  'pacemaker_node_type',
])
const CONSUL_AGENTS: Record<string, string> = { agent_manage: 'management', agent_tenant: 'tenant', agent_storage: 'storage' }

export interface UpstreamConfig {
  /** `masakari.*` values from `[api]`. */
  layer: CredentialLayer
  /** Our config keys it implies, under the config file's own (raw, before validation). */
  settings: Record<string, unknown>
  /** Options set there that mean nothing here, one line each. */
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
    if (key === undefined) {
      if (!API_SILENT.has(k))
        warnings.push(
          `${at(k)}: not used here (domain-, system- or trust-scoped tokens, auth_section and client certificates are not supported)`,
        )
      continue
    }
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

/** `[host]`: samples of a polling driver become a hold time, its retries a retry policy; the rest are warned about. */
function hostSettings(host: Map<string, string>, source: string, warnings: string[]): Record<string, unknown> {
  const settings: Record<string, unknown> = {}
  const interval = Number(host.get('monitoring_interval') ?? 60)
  const samples = host.get('monitoring_samples')
  // Upstream notifies once `samples` polls in a row, `interval` apart, agree: that long a hold.
  if (samples !== undefined && Number(samples) > 1) settings.guards = { hold: { recovery: (Number(samples) - 1) * interval } }
  const retryMax = host.get('api_retry_max')
  const retryInterval = host.get('api_retry_interval')
  if (retryMax !== undefined || retryInterval !== undefined) {
    const every = Number(retryInterval ?? 10)
    settings.masakari = { delivery: { initialBackoff: every, maxBackoff: every, expiry: Number(retryMax ?? 12) * every } }
  }
  const driver = host.get('monitoring_driver')
  if (driver !== undefined && driver !== 'consul')
    warnings.push(`[host] monitoring_driver in ${source}: '${driver}', not 'consul'; its [consul] section is read all the same`)
  for (const k of host.keys())
    if (HOST_UNMAPPED.has(k) && !(k === 'monitoring_interval' && samples !== undefined))
      warnings.push(`[host] ${k} in ${source}: no meaning here (Consul's watches report every change; IPMI and pacemaker are not used)`)
  return settings
}

/** What upstream's masakarimonitors.conf says, in our terms. Relative paths are relative to its directory. */
export function fromUpstream(text: string, source: string, problems: string[]): UpstreamConfig {
  const warnings: string[] = []
  const sections = parseIni(text, problems, source)
  const layer = apiLayer(sections.get('api') ?? new Map(), source, problems, warnings)
  const settings = hostSettings(sections.get('host') ?? new Map(), source, warnings)
  const consul = sections.get('consul') ?? new Map()
  const agents: Record<string, string> = {}
  for (const [opt, network] of Object.entries(CONSUL_AGENTS)) {
    const v = consul.get(opt)
    if (v) agents[network] = v
  }
  if (Object.keys(agents).length > 0) settings.consul = { agents }
  const matrix = consul.get('matrix_config_file')
  if (matrix) settings.strategy = resolve(dirname(source), matrix)
  const hostname = sections.get('DEFAULT')?.get('hostname')
  if (hostname) settings.hostname = hostname
  return { layer, settings, warnings }
}

/** Whether a config file is upstream's INI rather than our YAML: a `.conf` name, or a first line that is a section header. */
export function isUpstreamConfig(path: string, text: string): boolean {
  if (path.endsWith('.conf')) return true
  const first = text.split(/\r?\n/).find((l) => !/^\s*([#;].*)?$/.test(l))
  return first !== undefined && /^\[[A-Za-z_][\w.-]*\]\s*$/.test(first)
}
