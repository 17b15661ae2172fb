/**
 * OpenStack credentials as every OpenStack tool reads them: the `OS_*` environment variables
 * and a cloud of `clouds.yaml` (named by `masakari.cloud` or `OS_CLOUD`), searched where
 * openstacksdk searches. Each becomes a layer of `masakari.*` keys with where each value came
 * from; lib/config/config.ts stacks the layers (the config file first) and validates the result.
 */
import { join } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'

/** One source of `masakari.*` values, keyed by dotted path below `masakari` (`authUrl`, `auth.username`). */
export interface CredentialLayer {
  values: Map<string, { value: unknown; origin: string }>
  /** A file this layer's secret came from (its permissions are checked). */
  secretFile?: string
}

/** The secret keys: a layer that sets any of a group supplies the whole group. */
export const SECRET_GROUPS = [
  ['auth.password', 'auth.passwordFile', 'auth.passwordEnv'],
  ['auth.applicationCredentialSecret', 'auth.applicationCredentialSecretFile', 'auth.applicationCredentialSecretEnv'],
] as const

const OS_VARIABLES: Record<string, string> = {
  OS_AUTH_URL: 'authUrl',
  OS_REGION_NAME: 'region',
  OS_INTERFACE: 'interface',
  OS_CACERT: 'caFile',
  OS_AUTH_TYPE: 'auth.method',
  OS_USERNAME: 'auth.username',
  OS_USER_ID: 'auth.userId',
  OS_PASSWORD: 'auth.password',
  OS_USER_DOMAIN_NAME: 'auth.userDomainName',
  OS_USER_DOMAIN_ID: 'auth.userDomainId',
  OS_PROJECT_NAME: 'auth.projectName',
  OS_PROJECT_ID: 'auth.projectId',
  OS_PROJECT_DOMAIN_NAME: 'auth.projectDomainName',
  OS_PROJECT_DOMAIN_ID: 'auth.projectDomainId',
  OS_APPLICATION_CREDENTIAL_ID: 'auth.applicationCredentialId',
  OS_APPLICATION_CREDENTIAL_NAME: 'auth.applicationCredentialName',
  OS_APPLICATION_CREDENTIAL_SECRET: 'auth.applicationCredentialSecret',
}

/** keystoneauth's plugin names (OS_AUTH_TYPE, clouds.yaml auth_type, [api] auth_type) → ours. */
export function authMethod(type: string): 'password' | 'application_credential' | undefined {
  const t = type.toLowerCase().replace(/-/g, '_')
  if (t === 'password' || t === 'v3password') return 'password'
  if (t === 'v3applicationcredential' || t === 'application_credential' || t === 'applicationcredential') return 'application_credential'
  return undefined
}

/** keystoneauth also takes `publicURL` and `internalURL`. */
export const catalogInterface = (v: string) => v.replace(/URL$/, '')

/** A raw value in our terms, or a problem naming where it came from. */
function convert(key: string, value: string, origin: string, problems: string[]): unknown {
  if (key === 'auth.method') {
    const m = authMethod(value)
    if (m === undefined) problems.push(`${origin}: auth type '${value}' is not supported (password or v3applicationcredential)`)
    return m
  }
  return key === 'interface' ? catalogInterface(value) : value
}

/** The OS_* variables that are set (empty ones count as unset, as in openstacksdk). */
export function envLayer(env: Record<string, string | undefined>, problems: string[]): CredentialLayer {
  const values = new Map<string, { value: unknown; origin: string }>()
  for (const [name, key] of Object.entries(OS_VARIABLES)) {
    const v = env[name]
    if (v === undefined || v === '') continue
    const value = convert(key, v, name, problems)
    if (value !== undefined) values.set(key, { value, origin: name })
  }
  return { values }
}

/**
 * Where openstacksdk looks for clouds.yaml (the first file found is used, whole): the file
 * OS_CLIENT_CONFIG_FILE names, then the current directory, the user's (XDG) config directory,
 * /etc/openstack. The same for secure.yaml (OS_CLIENT_SECURE_FILE), merged over it.
 */
export function openstackConfigFiles(cwd: string, home: string, env: Record<string, string | undefined>, name: 'clouds' | 'secure') {
  const dirs = [cwd, join(env.XDG_CONFIG_HOME || join(home, '.config'), 'openstack'), '/etc/openstack']
  const override = env[name === 'clouds' ? 'OS_CLIENT_CONFIG_FILE' : 'OS_CLIENT_SECURE_FILE']
  return [...(override ? [override] : []), ...dirs.flatMap((d) => [join(d, `${name}.yaml`), join(d, `${name}.yml`)])]
}

// clouds.yaml carries much more than we use (regions, profiles, volume API versions…): only our keys are read.
const CloudSchema = z.looseObject({
  auth_type: z.string().optional(),
  region_name: z.string().optional(),
  interface: z.string().optional(),
  cacert: z.string().optional(),
  verify: z.boolean().optional(),
  auth: z.record(z.string(), z.union([z.string(), z.number()]).transform(String)).optional(),
})
const CloudsFileSchema = z.looseObject({ clouds: z.record(z.string(), CloudSchema).default({}) })
type Cloud = z.infer<typeof CloudSchema>

/** keystoneauth's option names (clouds.yaml `auth:`, masakarimonitors.conf `[api]`) → our keys. */
export const KEYSTONEAUTH_KEYS: Record<string, string> = {
  auth_url: 'authUrl',
  username: 'auth.username',
  user_id: 'auth.userId',
  password: 'auth.password',
  user_domain_name: 'auth.userDomainName',
  user_domain_id: 'auth.userDomainId',
  project_name: 'auth.projectName',
  project_id: 'auth.projectId',
  project_domain_name: 'auth.projectDomainName',
  project_domain_id: 'auth.projectDomainId',
  application_credential_id: 'auth.applicationCredentialId',
  application_credential_name: 'auth.applicationCredentialName',
  application_credential_secret: 'auth.applicationCredentialSecret',
}

export interface CloudsFiles {
  clouds: string[]
  secure: string[]
  readFile: (path: string) => Promise<string>
}

function yamlOrNull(text: string): unknown {
  try {
    return parseYaml(text) ?? {}
  } catch {
    return null
  }
}

/** The first of `paths` that exists, parsed; a file that exists but cannot be read or parsed is a problem. */
async function firstCloudsFile(paths: string[], readFile: CloudsFiles['readFile'], problems: string[]) {
  for (const path of paths) {
    let text: string
    try {
      text = await readFile(path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      problems.push(`${path}: cannot read it: ${(err as Error).message}`)
      return undefined
    }
    const parsed = CloudsFileSchema.safeParse(yamlOrNull(text))
    if (!parsed.success) {
      problems.push(`${path}: not a clouds.yaml: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`)
      return undefined
    }
    return { path, clouds: parsed.data.clouds }
  }
  return undefined
}

/** The layer of cloud `name` (secure.yaml's values over clouds.yaml's, as openstacksdk merges them). */
export async function cloudLayer(name: string, files: CloudsFiles, at: string, problems: string[]): Promise<CredentialLayer> {
  const before = problems.length
  const main = await firstCloudsFile(files.clouds, files.readFile, problems)
  const secure = await firstCloudsFile(files.secure, files.readFile, problems)
  const values = new Map<string, { value: unknown; origin: string }>()
  const cloud = main?.clouds[name]
  if (!cloud) {
    const where = main ? main.path : `any clouds.yaml (searched ${files.clouds.join(', ')})`
    if (problems.length === before) problems.push(`${at}: no cloud '${name}' in ${where}`)
    return { values }
  }
  let secretFile: string | undefined
  const put = (c: Cloud | undefined, path: string) => {
    if (!c) return
    const origin = `cloud '${name}' in ${path}`
    for (const [k, v] of Object.entries(c.auth ?? {})) {
      const key = KEYSTONEAUTH_KEYS[k]
      if (key === undefined) continue
      values.set(key, { value: v, origin: `${origin} (auth.${k})` })
      if (/password|secret/.test(k)) secretFile = path
    }
    const top: Array<[string, unknown]> = [
      ['auth.method', c.auth_type === undefined ? undefined : convert('auth.method', c.auth_type, `${origin} (auth_type)`, problems)],
      ['region', c.region_name],
      ['interface', c.interface === undefined ? undefined : catalogInterface(c.interface)],
      ['caFile', c.cacert],
      ['insecure', c.verify === undefined ? undefined : !c.verify],
    ]
    for (const [key, value] of top) if (value !== undefined) values.set(key, { value, origin })
  }
  put(cloud, main!.path)
  if (secure) put(secure.clouds[name], secure.path)
  return { values, ...(secretFile ? { secretFile } : {}) }
}
