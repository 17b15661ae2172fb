/**
 * The entry of dist/checks-handler.js. A watch run with nothing new ends here, before the
 * config or any library is loaded (lib/run/quiet-run.ts). Every other run, and every other command
 * line (--help, --dry-run, --worker, --pulse), goes to the full handler (checks-handler.ts),
 * which the bundle carries in a comment and compiles only then (lib/run/embedded.ts).
 */
import { appendFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { stage } from '../lib/base/stages.js'
import { STDIN_MAX_BYTES } from '../lib/consul/checks-payload.js'
import { loadFull } from '../lib/run/embedded.js'
import { NETWORKS } from '../lib/base/networks.js'
import { isQuietRun } from '../lib/run/quiet-run.js'
import { readStdinSync } from '../lib/run/stdin.js'
import { stagesToFile } from '../lib/run/stages-file.js'

/** `--network N --config FILE` and nothing else: the only command line a quiet run can be. */
function watchRun(argv: string[]): { network: string; config: string } | undefined {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { network: { type: 'string' }, config: { type: 'string' } } })
    const { network, config } = values
    if (positionals.length > 0 || !network || !config || !(NETWORKS as readonly string[]).includes(network)) return undefined
    return { network, config }
  } catch {
    return undefined
  }
}

async function entry(argv: string[]): Promise<number> {
  // The bench's stage breakdown (issue #22), only when it asks (MASAKARI_CONSUL_STAGES).
  stagesToFile({
    env: process.env,
    append: (file, text) => appendFileSync(file, text, { mode: 0o600 }),
    onExit: (fn) => process.once('exit', fn),
    origin: () => performance.timeOrigin,
    node: () => performance.nodeTiming,
    argv,
  })
  stage('entry: bundle loaded')
  const run = watchRun(argv)
  // Before the read: Consul's view was taken no later than this (orders overlapping runs).
  const readAt = new Date()
  const stdin = run ? readStdinSync(STDIN_MAX_BYTES) : undefined
  stage('entry: stdin read')
  if (run && stdin && isQuietRun(run.network, run.config, stdin)) return 0
  stage('entry: not quiet')
  const { full, done } = loadFull(process.argv[1]!)
  stage('entry: full handler compiled')
  const deps = full.realDeps()
  if (stdin) {
    deps.readStdin = async () => stdin
    deps.stdinReadAt = readAt
  }
  const code = await full.main(argv, deps)
  done()
  return code
}

/** Before the full handler takes over (its own errors have their exit codes): one clear line. */
function failed(err: unknown): number {
  process.stderr.write(`checks-handler: error: ${(err as Error).message}\n`)
  return 1
}

entry(process.argv.slice(2))
  .catch(failed)
  .then((code) => process.exit(code))
