/**
 * `install-watches`: the shipped watch definitions (consul-config/watches/*.json) with this
 * install's paths filled in (node, the handler bundle, the config, the state directory) and the
 * monitor's ACL token, written into each agent's config directory; `consul validate` run on each
 * directory (a file that fails is put back as it was), and the `consul reload` commands printed.
 * The agents are not reloaded: the operator does that.
 */
import { dirname, join, resolve } from 'node:path'
import { z } from 'zod'
import { EXIT, UsageError } from '../run/cli.js'
import { ConfigError, type ConfigEnv, readConfigFile } from '../config/config.js'
import { bodyStart } from '../base/http.js'
import { NETWORKS, type Network } from '../base/networks.js'
import { parseStrategy } from '../decide/strategy.js'

export interface InstallDeps {
  stdout: (text: string) => void
  configEnv: ConfigEnv
  /** The file's text, or undefined when there is none. */
  readExisting: (path: string) => Promise<string | undefined>
  /** Writes atomically; undefined removes the file. */
  /**
   * Writes atomically; undefined removes the file. `groupOf`: the file holds the ACL token, so it
   * is 0640 with the group of that directory (the state directory, the agents' user's).
   */
  writeFile: (path: string, text: string | undefined, groupOf?: string) => Promise<void>
  isDir: (path: string) => Promise<boolean>
  exec: (file: string, args: string[]) => Promise<{ code: number; output: string }>
  /** Owner, group and mode of the path (symlinks followed) and of every directory above it; undefined when it does not exist. */
  statChain: (path: string) => Promise<PathStat[] | undefined>
  /** Whether the agent at this HTTP address runs script checks now (its /v1/agent/self, asked with this ACL token). */
  scriptChecks: (addr: string, token: string | undefined) => Promise<ScriptChecks>
}

/** An agent's answer: it runs script checks or not; 'forbidden' when its ACLs refused the question (403); undefined when it cannot say. */
export type ScriptChecks = boolean | 'forbidden' | undefined

export interface InstallArgs {
  config: string
  /** Agent config directory per network; missing ones default to /etc/consul.d/<network>. */
  dirs: Partial<Record<Network, string>>
  node: string
  /** Where consul-config/ and dist/ are (the unpacked package). */
  packageRoot: string
  consul: string
  dryRun: boolean
  /** --token-file: the watches' ACL token, instead of the config's consul.tokenFile / consul.token. */
  tokenFile?: string
}

/** `--agent-config-dir management=DIR`, once per network. */
export function parseAgentDirs(values: string[]): Partial<Record<Network, string>> {
  const dirs: Partial<Record<Network, string>> = {}
  const problems: string[] = []
  for (const v of values) {
    const m = /^([a-z]+)=(.+)$/.exec(v)
    const network = m?.[1] as Network | undefined
    if (!m || !network || !NETWORKS.includes(network))
      problems.push(`"${v}": expected NETWORK=DIR with NETWORK one of ${NETWORKS.join(', ')}`)
    else if (dirs[network] !== undefined) problems.push(`${network}: given twice`)
    else dirs[network] = resolve(m[2]!)
  }
  if (problems.length > 0) throw new UsageError(`--agent-config-dir: ${problems.join('; ')}`)
  return dirs
}

/**
 * What install-watches needs of the config: its paths, the strategy's networks, the agents, where
 * the Consul token is. Masakari's secret is not resolved: the password may live only in the
 * agents' environment (passwordEnv). The token file is read later (watchToken), and only when
 * --token-file does not replace it.
 */
export interface Layout {
  source: string
  stateDir: string
  strategy?: string
  lockNetwork: Network
  agents: Partial<Record<Network, string>>
  /** consul.token, the secret itself. */
  token?: string
  /** consul.tokenFile, absolute. */
  tokenFile?: string
}

export async function loadLayout(path: string, env: ConfigEnv): Promise<Layout> {
  const source = resolve(path)
  const c = await readConfigFile(source, env)
  const abs = (p: string) => resolve(dirname(source), p)
  const strategy = c.strategy === undefined ? {} : { strategy: abs(c.strategy) }
  const token = c.consul.token === undefined ? {} : { token: c.consul.token }
  const tokenFile = c.consul.tokenFile === undefined ? {} : { tokenFile: abs(c.consul.tokenFile) }
  return {
    source,
    stateDir: abs(c.stateDir),
    ...strategy,
    lockNetwork: c.consul.lock.network,
    agents: c.consul.agents,
    ...token,
    ...tokenFile,
  }
}

/** The token the watches carry, and where it came from as the output names it (never the secret). */
export interface WatchToken {
  token: string
  from: string
}

/**
 * The watches' ACL token: --token-file, else the config's, as the monitor reads it (consul.token
 * before consul.tokenFile, the file's text trimmed). Not Consul's environment variables: the
 * watches run in the agents' environment, not this shell's.
 */
export async function watchToken(option: string | undefined, layout: Layout, env: ConfigEnv): Promise<WatchToken | undefined> {
  if (option !== undefined) {
    const path = resolve(option)
    const read = await readToken(path, env)
    if (typeof read !== 'string') throw new UsageError(`--token-file: ${read.problem}`)
    return { token: read, from: `--token-file ${path}` }
  }
  if (layout.token !== undefined) return { token: layout.token, from: `consul.token of ${layout.source}` }
  if (layout.tokenFile === undefined) return undefined
  const read = await readToken(layout.tokenFile, env)
  if (typeof read !== 'string') throw new ConfigError(layout.source, [`consul.tokenFile: ${read.problem} (the watches carry this token)`])
  return { token: read, from: `consul.tokenFile ${layout.tokenFile}` }
}

async function readToken(path: string, env: ConfigEnv): Promise<string | { problem: string }> {
  let text: string
  try {
    text = await env.readFile(path)
  } catch (err) {
    return { problem: `cannot read ${path}: ${(err as Error).message}` }
  }
  return text.trim() || { problem: `${path} is empty` }
}

/** A watch file installed before: the token an operator put in by hand, or an earlier install. */
const InstalledWatchSchema = z.looseObject({ watches: z.array(z.looseObject({ token: z.string().min(1) })).length(1) })

/** The token of the installed watch file's watch; undefined when there is no such file, no token, or no watch file there. */
function installedToken(text: string | undefined): string | undefined {
  if (text === undefined) return undefined
  try {
    const file = InstalledWatchSchema.safeParse(JSON.parse(text))
    return file.success ? file.data.watches[0]!.token : undefined
  } catch {
    return undefined
  }
}

/** A watch file as shipped: one checks watch (or the pulse's script check) with its command line in `args`. */
const WatchFileSchema = z.looseObject({
  watches: z.array(z.looseObject({ type: z.literal('checks'), args: z.array(z.string()) })).length(1),
})
const PulseFileSchema = z.looseObject({ check: z.looseObject({ args: z.array(z.string()).length(6) }) })

export interface PlannedFile {
  network: Network
  path: string
  text: string
  /** The text with the token's value replaced by where it came from: what --dry-run prints. */
  shown: string
  /** The ACL token the file carries (watches only). */
  token?: WatchToken
  /** The token is the one the installed file had: neither the config nor --token-file gave one. */
  kept?: boolean
}

/** The paths this install fills in. */
interface Paths {
  node: string
  handler: string
  pulse: string
  watch: string
  config: string
  stateDir: string
}

/**
 * One network's watch: watch.sh NETWORK CONFIG STATE_DIR HANDLER NODE (it notes a failed run for
 * the pulse), with the ACL token the watch's queries need when the agent's ACLs deny by default.
 */
export function watchFor(template: unknown, network: Network, paths: Paths, token?: string): unknown {
  const file = WatchFileSchema.parse(template)
  const args = ['/bin/sh', paths.watch, network, paths.config, paths.stateDir, paths.handler, paths.node]
  // The template's own object, so that its keys keep their order in the written file.
  return { ...(template as object), watches: [{ ...file.watches[0], args, ...(token === undefined ? {} : { token }) }] }
}

/** The pulse check (pulse.sh CONFIG STATE_DIR HANDLER NODE), on the agent of the sender lock's network. */
export function pulseFor(template: unknown, paths: Paths, token?: string): unknown {
  const file = PulseFileSchema.parse(template)
  const args = ['/bin/sh', paths.pulse, paths.config, paths.stateDir, paths.handler, paths.node]
  // With ACLs the agent registers the check in the catalog with the check's own token (else the
  // anonymous one, refused: "Check registration blocked by ACLs"), and the sender lock's session
  // can be tied only to a check the catalog has. It needs node:write on this node: the README's
  // token has the controllers' node identities.
  return { ...(template as object), check: { ...(file.check as object), args, ...(token === undefined ? {} : { token }) } }
}

/**
 * The files to write: a watch per network of the strategy, and the pulse on the lock's network.
 * Each watch carries `token`, else the token of the watch file it replaces: a token put in by
 * hand survives a re-install.
 */
export async function plan(args: InstallArgs, config: Layout, deps: InstallDeps, token?: WatchToken): Promise<PlannedFile[]> {
  const templates = join(args.packageRoot, 'consul-config', 'watches')
  const paths: Paths = {
    node: args.node,
    handler: join(args.packageRoot, 'dist', 'checks-handler.js'),
    pulse: join(args.packageRoot, 'consul-config', 'pulse.sh'),
    watch: join(args.packageRoot, 'consul-config', 'watch.sh'),
    config: config.source,
    stateDir: config.stateDir,
  }
  const template = async (name: string): Promise<unknown> => {
    const path = join(templates, name)
    const text = await deps.readExisting(path)
    if (text === undefined)
      throw new ConfigError(path, [`the shipped watch definition is missing: is ${args.packageRoot} the unpacked package?`])
    return JSON.parse(text)
  }
  const sequence =
    config.strategy === undefined ? NETWORKS : parseStrategy(await deps.configEnv.readFile(config.strategy), config.strategy).sequence
  const dir = (n: Network) => args.dirs[n] ?? `/etc/consul.d/${n}`
  const files: PlannedFile[] = []
  for (const n of sequence) {
    const path = join(dir(n), `masakari-consul-${n}.json`)
    const kept = token === undefined ? installedToken(await deps.readExisting(path)) : undefined
    const its = kept === undefined ? token : { token: kept, from: `the installed ${path}` }
    const shipped = await template(`${n}.json`)
    const watch = (value: string | undefined) => json(watchFor(shipped, n, paths, value))
    files.push({
      network: n,
      path,
      text: watch(its?.token),
      shown: watch(its && `<the token of ${its.from}>`),
      ...(its === undefined ? {} : { token: its }),
      ...(kept === undefined ? {} : { kept: true }),
    })
  }
  const lockNetwork = config.lockNetwork
  const its = files.find((f) => f.network === lockNetwork)?.token ?? token
  const shipped = await template('pulse.json')
  const pulse = (value: string | undefined) => json(pulseFor(shipped, paths, value))
  files.push({
    network: lockNetwork,
    path: join(dir(lockNetwork), 'masakari-consul-pulse.json'),
    text: pulse(its?.token),
    shown: pulse(its && `<the token of ${its.from}>`),
    ...(its === undefined ? {} : { token: its }),
  })
  return files
}

const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`

/** package.json's engines: the oldest node the bundles run on (bookworm's /usr/bin/node is 18). */
export const NODE_MIN_MAJOR = 20

/**
 * The node every watch and the pulse will run, checked before anything is written: it runs and
 * is new enough, and it is outside /root and /home, which the shipped consul-*.service units
 * hide from the agents (ProtectHome=yes). A node under ~/.nvm works in the operator's shell and
 * fails every watch run.
 */
export async function nodeProblems(node: string, deps: Pick<InstallDeps, 'exec'>): Promise<string[]> {
  const problems: string[] = []
  if (/^\/(root|home)(\/|$)/.test(resolve(node)))
    problems.push(
      `${node} is under /root or /home, which the consul-*.service units hide from the agents (ProtectHome=yes): install node elsewhere (/usr/bin, /usr/local/bin)`,
    )
  let version: string
  try {
    const r = await deps.exec(node, ['--version'])
    version = r.code === 0 ? r.output.trim() : ''
    if (r.code !== 0) problems.push(`${node} --version exited ${r.code}: ${bodyStart(r.output)}`)
  } catch (err) {
    return [...problems, `cannot run ${node}: ${(err as Error).message}`]
  }
  const major = Number(/^v(\d+)\./.exec(version)?.[1])
  if (version && !(major >= NODE_MIN_MAJOR)) problems.push(`${node} is ${version}; masakari-consul needs node ${NODE_MIN_MAJOR} or later`)
  return problems
}

export interface PathStat {
  path: string
  uid: number
  gid: number
  mode: number
}

/**
 * Whether the agents' user may run the file, as far as the mode bits say (its supplementary
 * groups are not known here): x on the file and on every directory above it. The first path
 * that denies it, or undefined.
 */
export function deniedTo(chain: PathStat[], who: { uid: number; gid: number }): string | undefined {
  if (who.uid === 0) return undefined
  for (const s of chain) {
    const bit = s.uid === who.uid ? 0o100 : s.gid === who.gid ? 0o010 : 0o001
    if ((s.mode & bit) === 0) return s.path
  }
  return undefined
}

/** The node checked for the agents' user, the state directory's owner (README step 2), when it exists. */
async function agentsUserProblems(node: string, stateDir: string, deps: Pick<InstallDeps, 'statChain'>): Promise<string[]> {
  const owner = (await deps.statChain(stateDir))?.[0]
  const chain = await deps.statChain(node)
  if (owner === undefined || chain === undefined) return []
  const denied = chain.find((c) => c.path === deniedTo(chain, owner))
  if (denied === undefined) return []
  const mode = (denied.mode & 0o777).toString(8)
  return [`the agents' user (uid ${owner.uid}, the owner of ${stateDir}) cannot run ${node}: ${denied.path} denies it (mode ${mode})`]
}

/** The command's whole run; its exit code. */
export async function runInstallWatches(args: InstallArgs, deps: InstallDeps): Promise<number> {
  const config = await loadLayout(args.config, deps.configEnv)
  const token = await watchToken(args.tokenFile, config, deps.configEnv)
  const problems = [...(await nodeProblems(args.node, deps)), ...(await agentsUserProblems(args.node, config.stateDir, deps))]
  if (problems.length > 0) throw new UsageError(`--node: ${problems.join('; ')} (give the node the watches should run with --node PATH)`)
  const files = await plan(args, config, deps, token)
  noteKeptTokens(files, config, deps)
  if (args.dryRun) {
    for (const f of files) deps.stdout(`# ${f.path} (${f.network} agent; dry run: not written)\n${f.shown}`)
    return EXIT.ok
  }
  const dirs = [...new Set(files.map((f) => resolve(f.path, '..')))]
  const missing = (await Promise.all(dirs.map(async (d) => ((await deps.isDir(d)) ? undefined : d)))).filter((d) => d !== undefined)
  if (missing.length > 0)
    throw new UsageError(`no such agent config directory: ${missing.join(', ')} (give each with --agent-config-dir NETWORK=DIR)`)
  let code: number = EXIT.ok
  for (const dir of dirs) {
    const here = files.filter((f) => resolve(f.path, '..') === dir)
    const c = await installInto(dir, here, args.consul, config.stateDir, deps)
    if (code === EXIT.ok) code = c
  }
  if (code !== EXIT.ok) return code
  deps.stdout('\nNow load them into each agent:\n')
  const steps: string[] = []
  for (const n of [...new Set(files.map((f) => f.network))]) steps.push(await loadStep(n, config, files, token, deps))
  // A watch with a token means the agents' ACLs are on: the reload needs agent:write, which the
  // monitor's policy (consul-config/acl/masakari-consul.hcl) does not give, so not its token: the
  // consul CLI takes the operator's from CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE, and the
  // printed lines stay runnable as they are.
  if (files.some((f) => f.token !== undefined)) deps.stdout(reloadTokenNote(deps.configEnv.env))
  for (const s of steps) deps.stdout(s)
  return EXIT.ok
}

/** Which token the printed reloads use, said once; a warning when this shell has none. */
function reloadTokenNote(env: Record<string, string | undefined>): string {
  const which = env.CONSUL_HTTP_TOKEN_FILE ? 'CONSUL_HTTP_TOKEN_FILE' : env.CONSUL_HTTP_TOKEN ? 'CONSUL_HTTP_TOKEN' : undefined
  if (which)
    return `    (ACLs on: consul reload takes your token from ${which}; it needs agent:write, which the monitor's does not have)
`
  return `! ACLs on: set CONSUL_HTTP_TOKEN_FILE (or CONSUL_HTTP_TOKEN) to a token with agent:write on these agents before the reload lines (not the monitor's: its policy gives agent:read only)
`
}

/** A token kept from an installed file lives only there: said, so that it moves to the config (the monitor's own requests need it too). */
function noteKeptTokens(files: PlannedFile[], config: Layout, deps: Pick<InstallDeps, 'stdout'>): void {
  const kept = files.filter((f) => f.kept).map((f) => f.path)
  if (kept.length === 0) return
  deps.stdout(
    `! kept the ACL token already in ${kept.join(', ')}: neither --token-file nor consul.tokenFile / consul.token of ${config.source} gives one; ` +
      'put it in a file named by consul.tokenFile (the monitor’s own requests to the agents need it too)\n',
  )
}

/** What install-watches asks of an agent: whether it runs script checks (Consul 1.8's /v1/agent/self). */
const AgentSelfSchema = z.object({
  DebugConfig: z.object({ EnableLocalScriptChecks: z.boolean(), EnableRemoteScriptChecks: z.boolean().default(false) }),
})

/** From an agent's /v1/agent/self: whether it runs script checks; undefined when the answer does not say. */
export function runsScriptChecks(text: string): boolean | undefined {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return undefined
  }
  const self = AgentSelfSchema.safeParse(json)
  return self.success ? self.data.DebugConfig.EnableLocalScriptChecks || self.data.DebugConfig.EnableRemoteScriptChecks : undefined
}

/**
 * How an agent takes the new files. The pulse turns on enable_local_script_checks, which Consul
 * cannot reload: an agent started without it fails the reload ("Scripts are disabled on this
 * agent") and keeps its old config, the watch included. So that agent is asked, and restarted
 * when it runs no script checks yet (or told both ways when it cannot be asked).
 */
async function loadStep(
  network: Network,
  config: Layout,
  files: PlannedFile[],
  token: WatchToken | undefined,
  deps: InstallDeps,
): Promise<string> {
  const addr = config.agents[network]
  const reload = `  consul reload -http-addr=${addr ?? `<the ${network} agent's HTTP address>`}\n`
  if (!files.some((f) => f.network === network && f.path.endsWith('masakari-consul-pulse.json'))) return reload
  const restart = `  systemctl restart consul-${network}\n`
  // The token this network's watch carries (a kept one is per file), else the one given.
  const asking = files.find((f) => f.network === network && f.token !== undefined)?.token ?? token
  const scripts = addr === undefined ? undefined : await deps.scriptChecks(addr, asking?.token)
  if (scripts === true) return reload
  const why = '(enable_local_script_checks, which the pulse needs, cannot be reloaded)'
  if (scripts === false) return `${restart}    the ${network} agent runs no script checks yet: restart it once ${why}\n`
  const both = `${reload}    or, if the ${network} agent was started without script checks, instead: ${restart.trim()} ${why}\n`
  return scripts === 'forbidden' ? `${both}${forbidden(network, asking)}` : both
}

/** Why the agent could not be asked: its ACLs refused /v1/agent/self (agent:read). */
function forbidden(network: Network, asking: WatchToken | undefined): string {
  const fix =
    asking === undefined
      ? 'the watches have no ACL token (give consul.tokenFile or --token-file)'
      : `the token of ${asking.from} lacks agent:read (consul-config/acl/masakari-consul.hcl)`
  return `    the ${network} agent answered 403 to /v1/agent/self, so it could not say which: ${fix}\n`
}

/**
 * Writes the files into one directory and validates it; on failure puts back what was there (an
 * agent must not find a broken file at its next restart). Exit code: 78 invalid, 69 no consul.
 */
async function installInto(dir: string, files: PlannedFile[], consul: string, stateDir: string, deps: InstallDeps): Promise<number> {
  const before = await Promise.all(files.map((f) => deps.readExisting(f.path)))
  // A watch holding the token is not for everyone on the controller: only the agents' group reads it.
  const holdsToken = (text: string | undefined) => text !== undefined && /"token"\s*:/.test(text)
  for (const f of files) await deps.writeFile(f.path, f.text, holdsToken(f.text) ? stateDir : undefined)
  let result: { code: number; output: string }
  let unavailable = false
  try {
    result = await deps.exec(consul, ['validate', dir])
  } catch (err) {
    unavailable = true
    result = { code: -1, output: `cannot run ${consul}: ${(err as Error).message}` }
  }
  if (result.code === 0) {
    for (const f of files) deps.stdout(`✓ wrote ${f.path}\n`)
    const verdict = result.output.split('\n').find((l) => /Configuration is valid/.test(l)) ?? 'valid'
    deps.stdout(`✓ consul validate ${dir}: ${verdict.trim()}\n`)
    return EXIT.ok
  }
  for (const [i, f] of files.entries()) await deps.writeFile(f.path, before[i], holdsToken(before[i]) ? stateDir : undefined)
  deps.stdout(`✗ consul validate ${dir} failed; ${files.map((f) => f.path).join(', ')} put back as they were:\n${result.output.trim()}\n`)
  return unavailable ? EXIT.consul : EXIT.config
}
