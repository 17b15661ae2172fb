/**
 * `node evaluate.js --config FILE [--dry-run] [--json] [--explain HOST]`: evaluates the stored
 * snapshots by hand and prints the host × network table and the notifications.
 */
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { pathToFileURL } from 'node:url'
import { guarded, UsageError } from '../lib/cli.js'
import { DEFAULT_CONFIG_PATH } from '../lib/config.js'
import type { Deps } from '../lib/monitor.js'
import { runEvaluate } from '../lib/evaluate-command.js'
import { realDeps } from '../lib/runtime.js'
import { runWorker } from '../lib/worker.js'

export async function main(argv: string[], deps: Deps): Promise<number> {
  return guarded(
    'evaluate',
    async () => {
      const args = await yargs(argv)
        .scriptName('evaluate.js')
        .usage(
          '$0 [--config FILE] [--dry-run] [--json] [--explain HOST]\n\nEvaluates the stored snapshots; without --dry-run it acts as a handler run would.',
        )
        .option('config', { type: 'string', default: DEFAULT_CONFIG_PATH, requiresArg: true, describe: 'monitor config (YAML)' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'send and change nothing' })
        .option('json', { type: 'boolean', default: false, describe: 'print JSON (shape in the README)' })
        .option('explain', { type: 'string', describe: 'explain one host: states with their time and Consul index, rows, guards' })
        // The worker is this bundle run with --worker (lib/worker.ts). --deliver is its former
        // name: a handler started before an upgrade may still spawn the new bundle with it.
        .option('worker', { type: 'boolean', default: false, hidden: true, alias: 'deliver' })
        .option('help', { alias: 'h', type: 'boolean', describe: 'show this help' })
        .version(false)
        .strict()
        .exitProcess(false)
        // yargs reports every problem with the command line as a message (a missing option
        // value comes with its own error object too): all of them are usage errors.
        .fail((msg, err) => {
          throw msg ? new UsageError(msg) : err
        })
        .parseAsync()
      if (args.help) return 0 // yargs has printed it
      if (args.worker) return runWorker(args.config, deps)
      await runEvaluate({ config: args.config, dryRun: args.dryRun, json: args.json, explain: args.explain }, deps)
    },
    deps.stderr,
  )
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(hideBin(process.argv), realDeps()).then((code) => process.exit(code))
}
