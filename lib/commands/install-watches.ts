/**
 * `install-watches`: the shipped watch definitions (consul-config/watches/*.json) with this
 * install's paths filled in (node, the handler bundle, the config, the state directory), written
 * into each agent's config directory; `consul validate` run on each directory (a file that fails
 * is put back as it was), and the `consul reload` commands printed. The agents are not reloaded:
 * the operator does that.
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
  writeFile: (path: string, text: string | undefined) => Promise<void>
  isDir: (path: string) => Promise<boolean>
  exec: (file: string, args: string[]) => Promise<{ code: number; output: string }>
  /** Whether the agent at this HTTP address runs script checks now (its /v1/agent/self); undefined when it cannot say. */
  scriptChecks: (addr: string) => Promise<boolean | undefined>
}

export interface InstallArgs {
  config: string
  /** Agent config directory per network; missing ones default to /etc/consul.d/<network>. */
  dirs: Partial<Record<Network, string>>
  node: string
  /** Where consul-config/ and dist/ are (the unpacked package). */
  packageRoot: string
  consul: string
  dryRun: boolean
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
 * What install-watches needs of the config: its paths, the strategy's networks, the agents. The
 * secret is not resolved: the password may live only in the agents' environment (passwordEnv).
 */
export interface Layout {
  source: string
  stateDir: string
  strategy?: string
  lockNetwork: Network
  agents: Partial<Record<Network, string>>
}

export async function loadLayout(path: string, env: ConfigEnv): Promise<Layout> {
  const source = resolve(path)
  const c = await readConfigFile(source, env)
  const abs = (p: string) => resolve(dirname(source), p)
  const strategy = c.strategy === undefined ? {} : { strategy: abs(c.strategy) }
  return { source, stateDir: abs(c.stateDir), ...strategy, lockNetwork: c.consul.lock.network, agents: c.consul.agents }
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

/** One network's watch: watch.sh NETWORK CONFIG STATE_DIR HANDLER NODE (it notes a failed run for the pulse). */
export function watchFor(template: unknown, network: Network, paths: Paths): unknown {
  const file = WatchFileSchema.parse(template)
  const args = ['/bin/sh', paths.watch, network, paths.config, paths.stateDir, paths.handler, paths.node]
  // The template's own object, so that its keys keep their order in the written file.
  return { ...(template as object), watches: [{ ...file.watches[0], args }] }
}

/** The pulse check (pulse.sh CONFIG STATE_DIR HANDLER NODE), on the agent of the sender lock's network. */
export function pulseFor(template: unknown, paths: Paths): unknown {
  const file = PulseFileSchema.parse(template)
  return {
    ...(template as object),
    check: { ...(file.check as object), args: ['/bin/sh', paths.pulse, paths.config, paths.stateDir, paths.handler, paths.node] },
  }
}

/** The files to write: a watch per network of the strategy, and the pulse on the lock's network. */
export async function plan(args: InstallArgs, config: Layout, deps: InstallDeps): Promise<PlannedFile[]> {
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
  for (const n of sequence)
    files.push({ network: n, path: join(dir(n), `masakari-consul-${n}.json`), text: json(watchFor(await template(`${n}.json`), n, paths)) })
  const lockNetwork = config.lockNetwork
  files.push({
    network: lockNetwork,
    path: join(dir(lockNetwork), 'masakari-consul-pulse.json'),
    text: json(pulseFor(await template('pulse.json'), paths)),
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

/** The command's whole run; its exit code. */
export async function runInstallWatches(args: InstallArgs, deps: InstallDeps): Promise<number> {
  const config = await loadLayout(args.config, deps.configEnv)
  const problems = await nodeProblems(args.node, deps)
  if (problems.length > 0) throw new UsageError(`--node: ${problems.join('; ')} (give the node the watches should run with --node PATH)`)
  const files = await plan(args, config, deps)
  if (args.dryRun) {
    for (const f of files) deps.stdout(`# ${f.path} (${f.network} agent; dry run: not written)\n${f.text}`)
    return EXIT.ok
  }
  const dirs = [...new Set(files.map((f) => resolve(f.path, '..')))]
  const missing = (await Promise.all(dirs.map(async (d) => ((await deps.isDir(d)) ? undefined : d)))).filter((d) => d !== undefined)
  if (missing.length > 0)
    throw new UsageError(`no such agent config directory: ${missing.join(', ')} (give each with --agent-config-dir NETWORK=DIR)`)
  let code: number = EXIT.ok
  for (const dir of dirs) {
    const here = files.filter((f) => resolve(f.path, '..') === dir)
    const c = await installInto(dir, here, args.consul, deps)
    if (code === EXIT.ok) code = c
  }
  if (code !== EXIT.ok) return code
  deps.stdout('\nNow load them into each agent:\n')
  for (const n of [...new Set(files.map((f) => f.network))]) deps.stdout(await loadStep(n, config, files, deps))
  return EXIT.ok
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
async function loadStep(network: Network, config: Layout, files: PlannedFile[], deps: InstallDeps): Promise<string> {
  const addr = config.agents[network]
  const reload = `  consul reload -http-addr=${addr ?? `<the ${network} agent's HTTP address>`}\n`
  if (!files.some((f) => f.network === network && f.path.endsWith('masakari-consul-pulse.json'))) return reload
  const restart = `  systemctl restart consul-${network}\n`
  const scripts = addr === undefined ? undefined : await deps.scriptChecks(addr)
  if (scripts === true) return reload
  const why = '(enable_local_script_checks, which the pulse needs, cannot be reloaded)'
  if (scripts === false) return `${restart}    the ${network} agent runs no script checks yet: restart it once ${why}\n`
  return `${reload}    or, if the ${network} agent was started without script checks, instead: ${restart.trim()} ${why}\n`
}

/**
 * Writes the files into one directory and validates it; on failure puts back what was there (an
 * agent must not find a broken file at its next restart). Exit code: 78 invalid, 69 no consul.
 */
async function installInto(dir: string, files: PlannedFile[], consul: string, deps: InstallDeps): Promise<number> {
  const before = await Promise.all(files.map((f) => deps.readExisting(f.path)))
  for (const f of files) await deps.writeFile(f.path, f.text)
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
  for (const [i, f] of files.entries()) await deps.writeFile(f.path, before[i])
  deps.stdout(`✗ consul validate ${dir} failed; ${files.map((f) => f.path).join(', ')} put back as they were:\n${result.output.trim()}\n`)
  return unavailable ? EXIT.consul : EXIT.config
}
