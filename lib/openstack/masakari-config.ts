/**
 * The config's `masakari` section: Keystone credentials and the Masakari endpoint, and how
 * notifications are retried. lib/config/config.ts stacks it from its sources (the file, OS_*,
 * clouds.yaml, masakarimonitors.conf) and checks the credentials.
 */
import { z } from 'zod'
import { noCredentials } from '../consul/consul-api.js'
import { DeliverySchema } from '../decide/outbox.js'

const secret = {
  /** The secret itself (prefer a file or the environment). */
  inline: z.string().min(1).optional(),
  /** A file holding the secret; surrounding whitespace is trimmed. */
  file: z.string().min(1).optional(),
  /** The name of an environment variable holding the secret. */
  env: z.string().min(1).optional(),
}

export const PasswordAuthSchema = z.strictObject({
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

export const AppCredentialAuthSchema = z.strictObject({
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

export const AuthSchema = z.preprocess(
  (v) =>
    v && typeof v === 'object' && !('method' in v)
      ? { method: 'applicationCredentialId' in v || 'applicationCredentialName' in v ? 'application_credential' : 'password', ...v }
      : v,
  z.discriminatedUnion('method', [PasswordAuthSchema, AppCredentialAuthSchema]),
)

const MASAKARI_NO_CREDENTIALS = noCredentials('give them as masakari.auth (or a secret file, OS_* or clouds.yaml)')

export const MasakariSchema = z.strictObject({
  /** Keystone URL: the v3 one (https://keystone.example:5000/v3), or an unversioned one whose v3 is discovered (lib/openstack/keystone.ts). */
  authUrl: z
    .url({
      error: (issue) =>
        issue.input === undefined
          ? "not set: set it here, or upstreamConfig's [api] auth_url, OS_AUTH_URL or a clouds.yaml cloud"
          : undefined,
    })
    .refine(...MASAKARI_NO_CREDENTIALS),
  auth: AuthSchema,
  /** Catalog region of the instance-ha endpoint; any region when omitted. */
  region: z.string().min(1).optional(),
  /** Catalog interface of the instance-ha endpoint. */
  interface: z.enum(['public', 'internal', 'admin']).default('public'),
  /** Masakari API URL to use instead of the catalog's (…/v1/<project id>). */
  endpoint: z
    .url()
    .refine(...MASAKARI_NO_CREDENTIALS)
    .optional(),
  /** CA bundle (PEM) to verify Keystone's and Masakari's TLS certificates. */
  caFile: z.string().min(1).optional(),
  /** Skip TLS verification. Only for lab clouds: it lets anyone on the path impersonate Masakari. */
  insecure: z.boolean().default(false),
  /** Seconds one HTTP request may take before it counts as failed (and is retried). */
  requestTimeout: z.number().positive().default(10),
  /**
   * Before a STOPPED is queued, look its host up in Masakari's failover segments (a list kept in
   * the state directory): a node in none of them gets no STOPPED and uses no rate-limit slot.
   * false: every node is notified about and Masakari answers 400 for those it does not know.
   */
  lookupHosts: z.boolean().default(true),
  /** How a notification that could not be delivered is retried. */
  delivery: DeliverySchema,
})

export type MasakariConfig = z.infer<typeof MasakariSchema>
export type AuthConfig = MasakariConfig['auth']

/** What the Keystone and Masakari clients read of the config: the section, and the secret wherever it came from. */
export interface MasakariAccess {
  masakari: MasakariConfig
  /** The password or application credential secret. */
  secret: string
}
