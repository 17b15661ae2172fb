/**
 * `validate`: everything a run needs, checked as the user it runs as, one ✓/✗ line each with the
 * reason (one per problem of the config and strategy, a ! line per config warning; --json): config, strategy, the state directory (create, write, and every file in it), the log
 * file, the own Consul agents, Keystone (authenticate) and Masakari (list the segments), and,
 * with fencing on, each host's fence agent (action=status, as `fence-check`). It
 * writes nothing: the Keystone token stays in memory, and what may be written is asked of
 * access(2), so that a run as root leaves no file behind.
 */
import { constants } from 'node:fs'
import { access, readdir, stat } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { dirname, join } from 'node:path'
import { z } from 'zod'
import { EXIT } from '../run/cli.js'
import { type Config, checkConfig } from '../config/config.js'
import { blindReason, showsOwnNode } from '../consul/consul-agents.js'
import { consulAgent } from '../consul/consul-api.js'
import { parseChecks } from '../consul/consul-input.js'
import { consulTls } from '../run/coordination.js'
import { bodyStart, requester, safeJson } from '../base/http.js'
import { type CachedToken, keystone } from '../openstack/keystone.js'
import { recordingLogger } from '../base/log.js'
import type { Deps } from '../run/deps.js'
import { fenceCheckRows } from '../run/fence-check.js'
import { parseStrategy, StrategyError } from '../decide/strategy.js'

/** One ✓/✗ line of `validate` (not a Consul check: lib/consul/checks-payload.ts). */
export interface CheckLine {
  what: string
  ok: boolean
  reason: string
  /** The exit code a failure of this check maps to. */
  code: number
  /** Works, but should not be so (a config warning): said, and the exit is left as it is. */
  warning?: boolean
}

const pass = (what: string, reason: string): CheckLine => ({ what, ok: true, reason, code: EXIT.ok })
const warn = (what: string, reason: string): CheckLine => ({ what, ok: true, reason, code: EXIT.ok, warning: true })
const fail = (what: string, reason: string, code: number): CheckLine => ({ what, ok: false, reason, code })

/** The exit of a validate: the code of the first ✗, or 0. */
export const validateExit = (checks: readonly CheckLine[]): number => checks.find((c) => !c.ok)?.code ?? EXIT.ok

/** One line per check: ✓ passed, ! a warning, ✗ failed. */
export const formatCheckLine = (c: CheckLine): string => `${c.ok ? (c.warning ? '!' : '✓') : '✗'} ${c.what}: ${c.reason}\n`

/** validate --json: every check with its result, and the exit of the whole (README, Commands). */
export function validateJson(checks: readonly CheckLine[]) {
  return {
    exit: validateExit(checks),
    checks: checks.map((c) => ({
      what: c.what,
      result: c.ok ? (c.warning ? 'warn' : 'pass') : 'fail',
      reason: c.reason,
      ...(c.ok ? {} : { exit: c.code }),
    })),
  }
}

/**
 * Prints one line per check, as each is made (Keystone may take its timeout), or with --json
 * the whole at the end; the exit code of the first ✗, or 0. A config or strategy with several
 * problems gets one ✗ line each, as its error lists them.
 */
export async function runValidate(configPath: string, deps: Deps, opts: { json?: boolean } = {}): Promise<number> {
  const checks: CheckLine[] = []
  const say = (c: CheckLine) => {
    checks.push(c)
    if (!opts.json) deps.stdout(formatCheckLine(c))
  }
  const done = () => {
    if (opts.json) deps.stdout(`${JSON.stringify(validateJson(checks), null, 2)}\n`)
    return validateExit(checks)
  }
  const checked = await checkConfig(configPath, deps.configEnv)
  const where = `config ${checked.source}`
  if (checked.config) say(pass(where, 'valid'))
  for (const p of checked.problems) say(fail(where, p, EXIT.config))
  for (const w of checked.warnings) say(warn(where, w))
  const config = checked.config
  if (!config) return done()
  for (const c of await checkStrategy(config, deps)) say(c)
  say(await checkStateDir(config.stateDir, whoAmI()))
  if (config.logFile) say(await checkLogFile(config.logFile, whoAmI()))
  if (config.metrics.textfile) say(await checkMetricsFile(config.metrics.textfile, whoAmI()))
  for (const c of await checkAgents(config, deps)) say(c)
  for (const c of await checkMasakari(config, deps)) say(c)
  if (config.fencing.enabled) for (const c of await checkFencing(config, deps)) say(c)
  return done()
}

/** "nobody (uid 65534)": who the checks of files are made for. */
export function whoAmI(): string {
  const u = userInfo()
  return `${u.username} (uid ${u.uid})`
}

async function checkStrategy(config: Config, deps: Deps): Promise<CheckLine[]> {
  if (config.strategy === undefined) return [pass('strategy', 'built-in default (recovery whenever storage is down)')]
  const what = `strategy ${config.strategy}`
  let text: string
  try {
    text = await deps.configEnv.readFile(config.strategy)
  } catch (err) {
    return [fail(what, `cannot read it: ${(err as Error).message}`, EXIT.config)]
  }
  try {
    const s = parseStrategy(text, config.strategy)
    return [pass(what, `${s.rows.length} rows over [${s.sequence.join(', ')}]`)]
  } catch (err) {
    if (!(err instanceof StrategyError)) throw err
    return err.problems.map((p) => fail(what, p, EXIT.config))
  }
}

/** Modes as `ls -l` would show the problem: owner uid and octal mode. */
async function describe(path: string): Promise<string> {
  const s = await stat(path).catch(() => undefined)
  return s ? `${path} (owner uid ${s.uid}, mode ${(s.mode & 0o7777).toString(8).padStart(4, '0')})` : path
}

/**
 * The state directory as the monitor's user needs it: a file can be created and written there,
 * and every file and directory already in it (state.json, snapshots/, token.json, the logs…)
 * can be read and written. A run as root leaves root-owned 0600 files that the Consul agent's
 * user then cannot read (EACCES, exit 74 in every handler run): this names each of them.
 */
export async function checkStateDir(stateDir: string, user: string): Promise<CheckLine> {
  const what = `state directory ${stateDir}`
  const exists = await stat(stateDir).catch(() => undefined)
  if (!exists) {
    const parent = await nearestExisting(dirname(stateDir))
    const ok = await access(parent, constants.W_OK | constants.X_OK).then(
      () => true,
      () => false,
    )
    return ok
      ? pass(what, `does not exist yet; ${user} may create it in ${parent} (the first run does)`)
      : fail(what, `does not exist, and ${user} may not create it in ${await describe(parent)}`, EXIT.stateFile)
  }
  // access(2), not a probe file: creating one would change the directory's mtime, and validate
  // writes nothing (it also says EROFS for a read-only mount).
  try {
    await access(stateDir, constants.W_OK | constants.X_OK)
  } catch (err) {
    return fail(what, `${user} cannot create a file in it: ${(err as Error).message} — ${await describe(stateDir)}`, EXIT.stateFile)
  }
  const blocked = await unwritable(stateDir)
  if (blocked.length > 0)
    return fail(what, `${user} cannot read and write: ${(await Promise.all(blocked.map(describe))).join(', ')}`, EXIT.stateFile)
  return pass(what, `${user} can create, read and write in it`)
}

/** Files and directories under dir (one level of subdirectories: snapshots/, state.lock) the user may not read and write. */
async function unwritable(dir: string, depth = 0): Promise<string[]> {
  const found: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name)
    const isDir = entry.isDirectory()
    const mode = constants.R_OK | constants.W_OK | (isDir ? constants.X_OK : 0)
    const ok = await access(path, mode).then(
      () => true,
      () => false,
    )
    if (!ok) found.push(path)
    else if (isDir && depth === 0) found.push(...(await unwritable(path, 1)))
  }
  return found
}

async function nearestExisting(path: string): Promise<string> {
  for (let p = path; ; p = dirname(p)) if ((await stat(p).catch(() => undefined)) || p === dirname(p)) return p
}

/** logFile: appended to by every run; a log the user cannot write is dropped with only a warning on stderr. */
export async function checkLogFile(logFile: string, user: string): Promise<CheckLine> {
  const what = `log file ${logFile}`
  const exists = await stat(logFile).catch(() => undefined)
  const target = exists ? logFile : await nearestExisting(dirname(logFile))
  const mode = exists ? constants.W_OK : constants.W_OK | constants.X_OK
  const ok = await access(target, mode).then(
    () => true,
    () => false,
  )
  if (ok) return pass(what, exists ? `${user} can append to it` : `does not exist yet; ${user} may create it in ${target}`)
  return fail(what, `${user} cannot ${exists ? 'append to' : 'create'} it: ${await describe(target)}`, EXIT.stateFile)
}

/**
 * metrics.textfile: every run rewrites it as a new file and a rename in its directory (what a
 * textfile collector expects), so the directory must exist and take new files from this user.
 * A run that cannot write it ends with exit 74 after recording, like an unwritable log.
 */
export async function checkMetricsFile(textfile: string, user: string): Promise<CheckLine> {
  const what = `metrics textfile ${textfile}`
  const dir = dirname(textfile)
  if (!(await stat(dir).catch(() => undefined))?.isDirectory())
    return fail(what, `its directory ${dir} does not exist: create it (the collector's textfile directory)`, EXIT.stateFile)
  const ok = await access(dir, constants.W_OK | constants.X_OK).then(
    () => true,
    () => false,
  )
  if (ok) return pass(what, `${user} can write it (a new file and a rename in ${dir})`)
  return fail(what, `${user} cannot create files in ${dir}: ${await describe(dir)}`, EXIT.stateFile)
}

const LeaderSchema = z.string()

/**
 * Each configured own agent: it answers, its cluster has a leader, and its answers can see
 * nodes (this controller's own, as the recovery's confirmation requires: lib/consul/consul-agents.ts).
 */
async function checkAgents(config: Config, deps: Deps): Promise<CheckLine[]> {
  const agents = Object.entries(config.consul.agents)
  if (agents.length === 0) return [pass('consul agents', 'none configured (consul.agents): nothing to reach; recoveries are not confirmed')]
  const fetch = await deps.fetch()
  const tls = await consulTls(config.consulAccess, deps)
  return Promise.all(
    agents.map(async ([network, addr]): Promise<CheckLine> => {
      const what = `consul ${network} agent ${addr}`
      try {
        const agent = consulAgent(addr, config.consulAccess, fetch, tls, config.consul.timeout)
        // In parallel; a cluster without a leader is said first (its health reads fail too).
        const [leaderAnswer, ownAnswer] = await Promise.all([
          agent.ok('GET', '/v1/status/leader'),
          agent.ok('GET', `/v1/health/node/${encodeURIComponent(config.hostname)}`).catch((err: Error) => err),
        ])
        const leader = LeaderSchema.safeParse(safeJson(leaderAnswer.text))
        if (!leader.success || leader.data === '') return fail(what, 'answers, but its cluster has no leader', EXIT.consul)
        if (ownAnswer instanceof Error) throw ownAnswer
        if (!showsOwnNode(parseChecks(ownAnswer.text), config.hostname))
          return fail(what, blindReason('its answer', config.hostname), EXIT.consul)
        return pass(what, `answers; cluster leader ${leader.data}; sees this controller's node ${config.hostname}`)
      } catch (err) {
        return fail(what, (err as Error).message, EXIT.consul)
      }
    }),
  )
}

/**
 * One line per fenced host: its BMC answers a status, the agent's own error (a wrong password,
 * no route), or why it has no options (fencing.template: the node meta key it lacks); a ! line
 * for what limits the check (no management snapshot yet).
 */
async function checkFencing(config: Config, deps: Deps): Promise<CheckLine[]> {
  const { rows, notes } = await fenceCheckRows(config, deps)
  const lines = rows.map((r) => {
    const what = `fence ${r.host} (${r.agent})`
    if (r.result === 'uncovered') return fail(what, `not covered: ${r.message}`, EXIT.consul)
    return r.result === 'error' ? fail(what, r.message ?? 'no answer', EXIT.consul) : pass(what, `the BMC answers: power ${r.result}`)
  })
  return [...lines, ...notes.map((n) => warn('fence', n))]
}

const SegmentsSchema = z.object({ segments: z.array(z.unknown()) })

/** Keystone: a token for masakari.auth (kept in memory only); Masakari: GET /segments with it. */
async function checkMasakari(config: Config, deps: Deps): Promise<CheckLine[]> {
  const m = config.masakari
  const request = requester(await deps.fetch(), await deps.tlsAgent(config.caPem, m.insecure), m.requestTimeout)
  let token: CachedToken
  try {
    token = await keystone(config, { request, now: deps.now, tokenCache: memoryTokenCache(), logger: recordingLogger() }).token()
  } catch (err) {
    return [
      fail(`keystone ${m.authUrl}`, (err as Error).message, EXIT.consul),
      fail('masakari', 'not asked: no Keystone token', EXIT.consul),
    ]
  }
  const checks = [pass(`keystone ${m.authUrl}`, `authenticated; token valid until ${token.expiresAt}`)]
  const url = `${token.endpoint}/segments`
  try {
    const res = await request(url, 'GET', { 'X-Auth-Token': token.token })
    const parsed = SegmentsSchema.safeParse(safeJson(res.text))
    if (res.status === 200 && parsed.success)
      checks.push(pass(`masakari ${token.endpoint}`, `answers; ${parsed.data.segments.length} failover segments`))
    else checks.push(fail(`masakari ${token.endpoint}`, `GET ${url} answered ${res.status}: ${bodyStart(res.text)}`, EXIT.consul))
  } catch (err) {
    checks.push(fail(`masakari ${token.endpoint}`, (err as Error).message, EXIT.consul))
  }
  return checks
}

/** validate writes nothing: the token it gets is kept in memory, not in <stateDir>/token.json. */
function memoryTokenCache() {
  let held: CachedToken | undefined
  return {
    load: async () => held,
    save: async (t: CachedToken) => {
      held = t
    },
    clear: async () => {
      held = undefined
    },
  }
}
