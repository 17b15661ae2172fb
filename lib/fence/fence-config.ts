/**
 * The config's `fencing` section (its schema): which fence agent, the options it is given on
 * stdin for every host and per host, where its password is, and how long a fence may take.
 * Off by default. A host's options come from `hosts`, else `hostsFile`, else `template`
 * (lib/fence/fence-template.ts fills it). The password is never a key here: it is read from a file or a variable by
 * lib/config/config.ts, as Keystone's is, so that it is never in the config's output.
 */
import { z } from 'zod'
import { parse as parseYaml } from 'yaml'

/**
 * fence-agents' stdin protocol is one `key=value` line each: a key is a fence-agents option
 * name, and a value holds no line break (else `ip=x\naction=on` would add an option).
 */
const OPTION_KEY = /^[A-Za-z0-9_-]+$/
// biome-ignore lint/suspicious/noControlCharactersInRegex: a control character would end or corrupt the stdin line
const BREAKING = /[\u0000-\u001f\u007f\u2028\u2029]/

/** Whether a value fits one stdin line: the rule for option values, and for node meta put into them (fencing.template). */
export const isOneLine = (v: string): boolean => !BREAKING.test(v)

export const ONE_LINE_RULE = 'a fence agent option value is one stdin line: no line break or control character'

/**
 * fencing.template's placeholders: `{node}` and `{meta.KEY}` (KEY as Consul allows a node meta
 * key: letters, digits, _ and -). Anything else written `{word}` is taken for a misspelt one
 * and refused, rather than reach an agent as written; other braces are text.
 */
const PLACEHOLDER = /\{([A-Za-z0-9_.-]+)\}/g
const META_PLACEHOLDER = /^meta\.([A-Za-z0-9_-]+)$/

/** The names of the placeholders written in a value (`node`, `meta.bmc_address`, or a misspelt one). */
export const placeholderNames = (v: string): string[] => [...v.matchAll(PLACEHOLDER)].map((m) => m[1]!)

/** The meta key a placeholder name reads (`meta.bmc_address` → `bmc_address`); undefined for `node` and unknown names. */
export const metaKeyOf = (name: string): string | undefined => META_PLACEHOLDER.exec(name)?.[1]

const isPlaceholder = (name: string) => name === 'node' || metaKeyOf(name) !== undefined

/** The value with each placeholder replaced by `fill(name)`, in one pass (a value filled in is never read again). */
export const fillPlaceholders = (v: string, fill: (name: string) => string): string =>
  v.replace(PLACEHOLDER, (_, name: string) => fill(name))

/** Options the runner owns: the action it runs, and the password, which comes only from passwordFile/passwordEnv. */
const RESERVED: Record<string, string> = {
  action: 'the monitor sets it for each run (off, status, monitor)',
  password: 'give it as fencing.passwordFile or fencing.passwordEnv, never in the config',
  passwd: 'give it as fencing.passwordFile or fencing.passwordEnv, never in the config',
  password_script: 'give the password as fencing.passwordFile or fencing.passwordEnv',
}

const LineValue = z.union([z.string(), z.number(), z.boolean()]).refine((v) => typeof v !== 'string' || isOneLine(v), {
  message: ONE_LINE_RULE,
})

/** A value of options, hosts and hostsFile: taken as written, so a placeholder there would reach the agent as `{meta.…}`. */
const OptionValue = LineValue.refine((v) => typeof v !== 'string' || !placeholderNames(v).some(isPlaceholder), {
  message: 'placeholders ({node}, {meta.KEY}) are filled only in fencing.template: here the agent would get them as written',
})

/** A value of fencing.template: its placeholders are `{node}` and `{meta.KEY}` only. */
const TemplateValue = LineValue.superRefine((v, ctx) => {
  if (typeof v !== 'string') return
  for (const name of placeholderNames(v).filter((n) => !isPlaceholder(n)))
    ctx.addIssue({ code: 'custom', message: `unknown placeholder {${name}}: only {node} and {meta.KEY} (a Consul node meta key)` })
})

const optionsOf = (value: typeof OptionValue | typeof TemplateValue) =>
  z.record(z.string(), value).superRefine((options, ctx) => {
    for (const key of Object.keys(options)) {
      if (!OPTION_KEY.test(key))
        ctx.addIssue({ code: 'custom', path: [key], message: 'a fence agent option name: letters, digits, _ and - only' })
      else if (RESERVED[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `not an option here: ${RESERVED[key]}` })
    }
  })

const Options = optionsOf(OptionValue)
const TemplateOptions = optionsOf(TemplateValue)

export type FenceOptions = z.infer<typeof Options>

/** Consul node name → that host's options: fencing.hosts, and the whole of a fencing.hostsFile. */
export const HostsSchema = z.record(z.string().min(1), Options)
export type FenceHosts = z.infer<typeof HostsSchema>

export const FencingSchema = z
  .strictObject({
    /** Power a failed host off through its fence agent before its STOPPED is sent (lib/run/fence-delivery.ts, issue #21). */
    enabled: z.boolean().default(false),
    /** The fence agent: a name from fence-agents (`fence_ipmilan`, looked up in /usr/sbin) or a path. */
    agent: z.string().min(1).optional(),
    /** Options every host's agent gets (`lanplus: 1`, `username: admin`…), as fence-agents' stdin names them. */
    options: Options.default({}),
    /** Consul node name → that host's own options (`ip`, `ipport`, `plug`…), over `options`; an entry replaces hostsFile's for its host. */
    hosts: HostsSchema.default({}),
    /** A YAML or JSON file holding more of `hosts` (the same map), relative to the config; read only when fencing is on. */
    hostsFile: z.string().min(1).optional(),
    /**
     * The options of every other host, over `options`, with `{node}` (the Consul node name) and
     * `{meta.KEY}` (the node's meta in the management agent's catalog) filled in per host.
     */
    template: TemplateOptions.optional(),
    /** A file holding the agents' password (owned by the agents' user, 0600): the secret rule. */
    passwordFile: z.string().min(1).optional(),
    /** An environment variable holding the agents' password. */
    passwordEnv: z.string().min(1).optional(),
    /** Seconds a fence may take, power-off and status polls until off; also the limit of one agent run. */
    timeout: z.number().positive().max(3600).default(60),
    /** Seconds between two status runs while the power is not seen off. */
    statusInterval: z.number().positive().max(60).default(1),
  })
  .prefault({})

export type FencingConfig = z.infer<typeof FencingSchema>

/** The section's problems that span keys, each with its path (the schema's own are zod's). */
export function fencingProblems(f: FencingConfig): string[] {
  const problems: string[] = []
  if (f.passwordFile !== undefined && f.passwordEnv !== undefined)
    problems.push('fencing: set at most one of passwordFile, passwordEnv (2 given)')
  if (!f.enabled) return problems
  if (f.agent === undefined) problems.push('fencing.agent: not set: the fence agent to run (e.g. fence_ipmilan, fence_redfish)')
  // A hostsFile's hosts are counted once it is read (lib/config/config.ts).
  if (Object.keys(f.hosts).length === 0 && f.hostsFile === undefined && f.template === undefined) problems.push(NO_HOST)
  return problems
}

export const NO_HOST =
  'fencing.hosts: no host: each fenced host needs its options (ip, …), in fencing.hosts, fencing.hostsFile or fencing.template'

/**
 * A fencing.hostsFile's text as the map it holds (JSON for a `.json` name, else YAML; empty: no
 * host), checked with fencing.hosts' schema: every problem at once, each with the file and key.
 */
export function parseHostsFile(text: string, path: string): { hosts: FenceHosts } | { problems: string[] } {
  const at = `fencing.hostsFile: ${path}`
  let raw: unknown
  try {
    raw = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { prettyErrors: true })
  } catch (err) {
    return { problems: [`${at}: not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`] }
  }
  const parsed = HostsSchema.safeParse(raw ?? {})
  if (parsed.success) return { hosts: parsed.data }
  // An empty key (a host named "") is shown as "": each line must still say where.
  const where = (path: readonly PropertyKey[]) => path.map((p) => (p === '' ? '""' : String(p))).join('.') || '(top level)'
  return { problems: parsed.error.issues.map((i) => `${at}: ${where(i.path)}: ${i.message}`) }
}

/** Where a fence agent is: a bare name is fence-agents' (/usr/sbin); a path is taken as it is (relative: to the config). */
export function agentPath(agent: string, abs: (p: string) => string): string {
  return agent.includes('/') ? abs(agent) : `/usr/sbin/${agent}`
}
