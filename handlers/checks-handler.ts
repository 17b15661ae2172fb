/**
 * Consul `checks` watch handler: `node checks-handler.js --network storage --config FILE`.
 * Consul runs it with the cluster's checks on stdin on every health change of that network.
 * The same bundle is the worker (--worker), the pulse's deep look (--pulse; --pulse --fence-check,
 * which the deep look starts, asks every BMC first), the resync (--resync) and the resident
 * (--resident, which the pulse keeps running).
 */
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { runWatch } from '../lib/run/watch-run.js'
import { guarded, usageFailure, UsageError } from '../lib/run/cli.js'
import { DEFAULT_CONFIG_PATH } from '../lib/config/config.js'
import { type Network, NETWORKS, networkFromName } from '../lib/base/networks.js'
import type { Deps } from '../lib/run/deps.js'
import { realDeps } from '../lib/commands/runtime.js'
import { runPulse } from '../lib/run/pulse.js'
import { runResident } from '../lib/run/resident.js'
import { runResync } from '../lib/run/resync.js'
import { runWorker } from '../lib/run/worker.js'

type Args = {
  network?: Network
  config: string
  dryRun: boolean
  worker: boolean
  pulse: boolean
  fenceCheck: boolean
  resync: boolean
  resident: boolean
  help?: boolean
}

export async function main(argv: string[], deps: Deps): Promise<number> {
  return guarded(
    'checks-handler',
    async () => {
      // yargs (≈ 30 ms to load) only for what a watch, the worker or the pulse never pass:
      // --help, a mistake, an unusual spelling.
      const args = plainArgs(argv) ?? (await yargsArgs(argv))
      if (args.help) return 0 // yargs has printed it
      if (args.worker) return runWorker(args.config, deps)
      if (args.pulse || args.fenceCheck) return runPulse(args.config, deps, { fenceCheck: args.fenceCheck })
      if (args.resync) return runResync(args.config, deps)
      if (args.resident) return runResident(args.config, process.argv[1] ?? '', deps, stopSignal())
      if (!args.network) throw new UsageError(`--network is required (one of ${NETWORKS.join(', ')})`)
      await runWatch({ network: args.network, config: args.config, dryRun: args.dryRun, consulIndex: process.env.CONSUL_INDEX }, deps)
    },
    deps.stderr,
  )
}

/** The command lines the watches, the worker and the pulse use; undefined for anything else. */
function plainArgs(argv: string[]): Args | undefined {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        network: { type: 'string' },
        config: { type: 'string' },
        'dry-run': { type: 'boolean' },
        worker: { type: 'boolean' },
        deliver: { type: 'boolean' },
        pulse: { type: 'boolean' },
        'fence-check': { type: 'boolean' },
        resync: { type: 'boolean' },
        resident: { type: 'boolean' },
      },
    })
    const network = values.network === undefined ? undefined : networkFromName(values.network)
    if (positionals.length > 0 || (values.network !== undefined && network !== values.network)) return undefined
    const worker = Boolean(values.worker || values.deliver)
    const fenceCheck = Boolean(values['fence-check'])
    if (!network && !worker && !values.pulse && !fenceCheck && !values.resync && !values.resident) return undefined
    return {
      ...(network ? { network } : {}),
      config: values.config ?? DEFAULT_CONFIG_PATH,
      dryRun: Boolean(values['dry-run']),
      worker,
      pulse: Boolean(values.pulse),
      fenceCheck,
      resync: Boolean(values.resync),
      resident: Boolean(values.resident),
    }
  } catch {
    return undefined
  }
}

async function yargsArgs(argv: string[]): Promise<Args> {
  const { default: yargs } = await import('yargs')
  return (
    yargs(argv)
      .scriptName('checks-handler.js')
      .usage('$0 --network <network> [--config FILE] [--dry-run]\n\nReads a Consul checks watch payload on stdin.')
      .option('network', { choices: NETWORKS, describe: 'the network this agent watches' })
      .option('config', { type: 'string', default: DEFAULT_CONFIG_PATH, requiresArg: true, describe: 'monitor config (YAML)' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'print decisions; write and send nothing' })
      // The worker is this bundle run with --worker (lib/run/worker.ts). --deliver is its former
      // name: a handler started before an upgrade may still spawn the new bundle with it.
      .option('worker', { type: 'boolean', default: false, hidden: true, alias: 'deliver' })
      // The pulse check's deep look (lib/run/pulse.ts, consul-config/pulse.sh).
      .option('pulse', { type: 'boolean', default: false, describe: 'write the health and wake notes; start a worker if due' })
      // The deep look the pulse starts in the background when a fence check is due (lib/run/fence-check.ts).
      .option('fence-check', { type: 'boolean', default: false, hidden: true })
      // The level-triggered backstop the pulse starts while anything is unsettled (lib/run/resync.ts).
      .option('resync', { type: 'boolean', default: false, describe: "read every network's checks from the own agents now and evaluate" })
      // The head start the pulse keeps running (lib/run/resident.ts, consul-config/pulse.sh).
      .option('resident', {
        type: 'boolean',
        default: false,
        describe: 'follow the own agents and act on each change at once; ends on SIGTERM',
      })
      .option('help', { alias: 'h', type: 'boolean', describe: 'show this help' })
      .version(false)
      .strict()
      .exitProcess(false)
      .fail(usageFailure)
      .parseAsync()
  )
}

/** Aborted on SIGTERM: the resident finishes the run under way, then ends. */
function stopSignal(): AbortSignal {
  const stop = new AbortController()
  process.once('SIGTERM', () => stop.abort())
  return stop.signal
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2), realDeps()).then((code) => process.exit(code))
}
