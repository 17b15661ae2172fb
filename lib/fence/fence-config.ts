/**
 * The config's `fencing` section (its schema): which fence agent, the options it is given on
 * stdin for every host and per host, where its password is, and how long a fence may take.
 * Off by default. The password is never a key here: it is read from a file or a variable by
 * lib/config/config.ts, as Keystone's is, so that it is never in the config's output.
 */
import { z } from 'zod'

/**
 * fence-agents' stdin protocol is one `key=value` line each: a key is a fence-agents option
 * name, and a value holds no line break (else `ip=x\naction=on` would add an option).
 */
const OPTION_KEY = /^[A-Za-z0-9_-]+$/
// biome-ignore lint/suspicious/noControlCharactersInRegex: a control character would end or corrupt the stdin line
const BREAKING = /[\u0000-\u001f\u007f\u2028\u2029]/

/** Options the runner owns: the action it runs, and the password, which comes only from passwordFile/passwordEnv. */
const RESERVED: Record<string, string> = {
  action: 'the monitor sets it for each run (off, status, monitor)',
  password: 'give it as fencing.passwordFile or fencing.passwordEnv, never in the config',
  passwd: 'give it as fencing.passwordFile or fencing.passwordEnv, never in the config',
  password_script: 'give the password as fencing.passwordFile or fencing.passwordEnv',
}

const OptionValue = z.union([z.string(), z.number(), z.boolean()]).refine((v) => typeof v !== 'string' || !BREAKING.test(v), {
  message: 'a fence agent option value is one stdin line: no line break or control character',
})

const Options = z.record(z.string(), OptionValue).superRefine((options, ctx) => {
  for (const key of Object.keys(options)) {
    if (!OPTION_KEY.test(key))
      ctx.addIssue({ code: 'custom', path: [key], message: 'a fence agent option name: letters, digits, _ and - only' })
    else if (RESERVED[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `not an option here: ${RESERVED[key]}` })
  }
})

export type FenceOptions = z.infer<typeof Options>

export const FencingSchema = z
  .strictObject({
    /** Power a failed host off through its fence agent before its STOPPED is sent (lib/run/fence-delivery.ts, issue #21). */
    enabled: z.boolean().default(false),
    /** The fence agent: a name from fence-agents (`fence_ipmilan`, looked up in /usr/sbin) or a path. */
    agent: z.string().min(1).optional(),
    /** Options every host's agent gets (`lanplus: 1`, `username: admin`…), as fence-agents' stdin names them. */
    options: Options.default({}),
    /** Consul node name → that host's own options (`ip`, `ipport`, `plug`…), over `options`. */
    hosts: z.record(z.string().min(1), Options).default({}),
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
  if (Object.keys(f.hosts).length === 0) problems.push('fencing.hosts: no host: each fenced host needs its options (ip, …)')
  return problems
}

/** Where a fence agent is: a bare name is fence-agents' (/usr/sbin); a path is taken as it is (relative: to the config). */
export function agentPath(agent: string, abs: (p: string) => string): string {
  return agent.includes('/') ? abs(agent) : `/usr/sbin/${agent}`
}
