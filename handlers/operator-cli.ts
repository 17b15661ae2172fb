#!/usr/bin/env node
/**
 * The operator's CLI, `masakari-consul`, bundled as dist/evaluate.js (the name operators run):
 * `status` (the default), `explain HOST`, `replay`, `validate`, `config`, `install-watches`,
 * `outbox [retry]`, `fence-check`, `--version`; and `--worker`. Each command's
 * work is in lib/; this file parses the command line and maps the result to an exit code.
 *
 * The default only reads: a bare `masakari-consul`, typed in an incident to see what the monitor
 * sees, must not record decisions and start a worker that sends them. `replay`, which does, runs
 * only when named.
 */
import yargs, { type Argv } from 'yargs'
import { hideBin } from 'yargs/helpers'
import { realpathSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { EXIT, guarded, usageFailure } from '../lib/run/cli.js'
import { DEFAULT_CONFIG_PATH } from '../lib/config/config.js'
import type { Deps } from '../lib/run/deps.js'
import { runConfig } from '../lib/commands/config-command.js'
import { type CheckAction, runFenceCheck } from '../lib/commands/fence-check.js'
import { runEvaluate } from '../lib/commands/evaluate-command.js'
import { parseAgentDirs, runInstallWatches } from '../lib/commands/install-watches.js'
import { runOutbox, runOutboxRetry } from '../lib/commands/outbox-command.js'
import { colourWanted } from '../lib/decide/report.js'
import { realDeps, realInstallDeps } from '../lib/commands/runtime.js'
import { runValidate } from '../lib/commands/validate.js'
import { packageVersion } from '../lib/run/version.js'
import { runWorker } from '../lib/run/worker.js'

/** The package's root: dist/.. for the bundle, handlers/.. from source (the same tree). */
const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

const EPILOGUE = 'Exit codes: 0 ok, 64 usage, 65 data, 69 unavailable, 74 state file, 75 lock, 78 config, 1 other (README "Commands").'

function commands(y: Argv) {
  return y
    .command(['status', '$0'], 'the host × network table; read-only: records nothing, starts nothing (the default)', (c) =>
      c
        .option('color', {
          choices: ['auto', 'always', 'never'],
          default: 'auto',
          describe: 'colour: auto = a terminal and NO_COLOR unset',
        })
        // The command lines of the days when the bare command was replay (`--dry-run [--explain
        // HOST]`, in runbooks and scripts) still show the same, read-only.
        .option('dry-run', { type: 'boolean', hidden: true })
        .option('explain', { type: 'string', requiresArg: true, hidden: true })
        .epilogue(EPILOGUE),
    )
    .command('explain <host>', 'one host: states, strategy rows, decision, guards, ledger, outbox (read-only)', (c) =>
      c.positional('host', { type: 'string', demandOption: true, describe: 'the host (Consul node name)' }).epilogue(EPILOGUE),
    )
    .command('replay', 'evaluate, record the decisions and start the worker, as a handler run does (only when named)', (c) =>
      c
        .option('dry-run', { type: 'boolean', default: false, describe: 'send and change nothing (what `status` does)' })
        .option('explain', { type: 'string', requiresArg: true, describe: 'explain one host instead of the table' })
        .epilogue(EPILOGUE),
    )
    .command(
      'validate',
      'config, strategy, state directory, log file, Consul agents, Keystone, Masakari, fence agents (fencing on): one ✓/✗ line each (! a config warning)',
      (c) => c.epilogue(`${EPILOGUE} validate: the code of the first ✗.`),
    )
    .command('config', 'the effective config: each setting, and the file and key, option, variable or default it came from', (c) =>
      c.epilogue(`${EPILOGUE} Secrets are not shown, only where they came from.`),
    )
    .command(
      'install-watches',
      "write the watch definitions into the agents' config dirs and run consul validate on each",
      installWatchesOptions,
    )
}

/**
 * The outbox, and fence-check (issue #21): the BMCs asked for a status before a failure needs
 * them. Apart from commands() only to keep each function short enough to read.
 */
function outboxAndFenceCommands(y: Argv) {
  return y
    .command('outbox', 'notifications pending in the outbox and those that expired undelivered', (c) =>
      c
        .command('retry [id]', 'requeue expired notifications (under the state lock) and start the worker', (r) =>
          r
            .positional('id', { type: 'string', describe: 'the expired notification to requeue' })
            .option('all', { type: 'boolean', default: false, describe: 'every expired notification' })
            .epilogue(EPILOGUE),
        )
        .epilogue(EPILOGUE),
    )
    .command('fence-check', "ask every fenced host's fence agent for its power status (powers nothing off): host, agent, result", (c) =>
      c
        .option('action', {
          choices: ['status', 'monitor'],
          default: 'status',
          describe: "the agent's action: status, or monitor (the BMC answers)",
        })
        .epilogue(
          `${EPILOGUE} fence-check: 69 when any BMC does not answer or a host is not covered (fencing.template cannot be filled); 0 when fencing is off.`,
        ),
    )
}

/** install-watches' options (its own function: `commands` stays one screen). */
function installWatchesOptions(c: Argv) {
  return c
    .option('agent-config-dir', {
      type: 'string',
      array: true,
      requiresArg: true,
      describe: 'NETWORK=DIR (default /etc/consul.d/NETWORK)',
    })
    .option('consul', { type: 'string', default: 'consul', requiresArg: true, describe: 'the consul binary' })
    .option('node', { type: 'string', default: process.execPath, requiresArg: true, describe: 'the node the watches run' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'print the files; write nothing' })
    .option('token-file', {
      type: 'string',
      requiresArg: true,
      describe: "the watches' ACL token (default: the config's consul.tokenFile or consul.token)",
    })
    .epilogue(EPILOGUE)
}

async function parse(argv: string[]) {
  return (
    outboxAndFenceCommands(commands(yargs(argv)))
      .scriptName('masakari-consul')
      .usage("$0 [command] [--config FILE]\n\nThe operator's command of masakari-consul (dist/evaluate.js).")
      .option('config', { type: 'string', default: DEFAULT_CONFIG_PATH, requiresArg: true, describe: 'monitor config (YAML)' })
      .option('json', { type: 'boolean', default: false, describe: 'print JSON (shape in the README)' })
      // The worker is this bundle run with --worker (lib/run/worker.ts). --deliver is its former
      // name: a handler started before an upgrade may still spawn the new bundle with it.
      .option('worker', { type: 'boolean', default: false, hidden: true, alias: 'deliver' })
      .option('help', { alias: 'h', type: 'boolean', describe: 'show this help' })
      .version('version', 'print the version', packageVersion())
      .epilogue(EPILOGUE)
      .strict()
      .exitProcess(false)
      .fail(usageFailure)
      .parseAsync()
  )
}

type Args = Awaited<ReturnType<typeof parse>>

/** Commands that either succeed or throw (the error becomes the exit code). */
const done = async (run: Promise<void>): Promise<number> => {
  await run
  return EXIT.ok
}

async function dispatch(args: Args, deps: Deps): Promise<number> {
  const [command, sub] = args._.map(String)
  const config = args.config
  const json = args.json
  if (command === 'replay')
    return done(runEvaluate({ config, dryRun: Boolean(args.dryRun), json, explain: args.explain as string | undefined }, deps))
  if (command === 'explain') return done(runEvaluate({ config, dryRun: true, json, explain: String(args.host) }, deps))
  if (command === 'validate') return runValidate(config, deps, { json })
  if (command === 'config') return runConfig({ config, json }, deps)
  if (command === 'fence-check') return runFenceCheck({ config, json, action: args.action as CheckAction }, deps)
  if (command === 'install-watches') {
    const dirs = parseAgentDirs((args.agentConfigDir as string[] | undefined) ?? [])
    const paths = { node: String(args.node), packageRoot: PACKAGE_ROOT, consul: String(args.consul) }
    const tokenFile = args.tokenFile === undefined ? {} : { tokenFile: String(args.tokenFile) }
    return runInstallWatches({ config, dirs, ...paths, dryRun: Boolean(args.dryRun), ...tokenFile }, realInstallDeps(deps))
  }
  if (command === 'outbox' && sub === 'retry')
    return runOutboxRetry({ config, id: args.id as string | undefined, all: Boolean(args.all) }, deps)
  if (command === 'outbox') return done(runOutbox({ config, json }, deps))
  // `status`, named or not; `--explain HOST` only from an old command line (see commands()).
  const explain = args.explain as string | undefined
  if (explain !== undefined) return done(runEvaluate({ config, dryRun: true, json, explain }, deps))
  const colour = args.color === 'always' || (args.color === 'auto' && colourWanted(process.stdout.isTTY, deps.configEnv.env))
  return done(runEvaluate({ config, dryRun: true, json, colour }, deps))
}

export async function main(argv: string[], deps: Deps): Promise<number> {
  return guarded(
    'evaluate',
    async () => {
      const args = await parse(argv)
      if (args.help || args.version) return 0 // yargs has printed it
      if (args.worker) return runWorker(args.config, deps)
      return dispatch(args, deps)
    },
    deps.stderr,
  )
}

/** Run as a program: directly, or through npm's `masakari-consul` symlink in a bin directory. */
function isMain(): boolean {
  const script = process.argv[1]
  if (!script) return false
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href
  } catch {
    return false
  }
}

if (isMain()) {
  main(hideBin(process.argv), realDeps()).then((code) => process.exit(code))
}
