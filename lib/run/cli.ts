/** How errors become exit codes and one clear line on stderr (sysexits.h numbering). */
import { ConsulError } from '../consul/consul-api.js'
import { InputError } from '../consul/checks-payload.js'
import { ConfigError } from '../config/config.js'
import { LockError } from '../state/lock.js'
import { OutputError } from '../base/log.js'
import { StateFileError } from '../state/state-errors.js'
import { StrategyError } from '../decide/strategy.js'

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 64,
  /** Consul's stdin was not a valid checks payload. */
  badInput: 65,
  /**
   * A state file (snapshot, ledger/outbox) is unreadable or corrupt, or could not be written; or
   * the run's decisions were recorded but its logFile or metrics textfile could not be written.
   */
  stateFile: 74,
  /** The state lock could not be taken in time. */
  lock: 75,
  /** An own Consul agent could not be used (unreachable, refused by its ACLs); Keystone, Masakari or a BMC did not answer (validate, fence-check). */
  consul: 69,
  /** Config or strategy file invalid. */
  config: 78,
} as const

export class UsageError extends Error {
  override name = 'UsageError'
}

/**
 * yargs' `.fail` for the handlers' command lines. yargs reports every problem with the command
 * line as a message (a missing option value comes with its own error object too): all of them
 * are usage errors.
 */
export function usageFailure(msg: string | undefined, err: Error | undefined): never {
  throw msg ? new UsageError(msg) : err
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return EXIT.usage
  if (err instanceof InputError) return EXIT.badInput
  if (err instanceof ConfigError || err instanceof StrategyError) return EXIT.config
  if (err instanceof StateFileError || err instanceof OutputError) return EXIT.stateFile
  if (err instanceof LockError) return EXIT.lock
  if (err instanceof ConsulError) return EXIT.consul
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return EXIT.stateFile
  return EXIT.failure
}

/** Runs a command body; any error becomes one line on stderr and its exit code. */
export async function guarded(program: string, body: () => Promise<number | undefined>, stderr: (line: string) => void): Promise<number> {
  try {
    return (await body()) ?? EXIT.ok
  } catch (err) {
    const e = err as Error
    const code = exitCodeFor(err)
    const detail = code === EXIT.failure && e.stack ? `\n${e.stack}` : ''
    stderr(`${program}: error: ${e.message}${detail}`)
    return code
  }
}
