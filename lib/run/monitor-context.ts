/** What a run has loaded (lib/run/load-monitor.ts) and carries through its steps. */
import type { Logger } from '../base/log.js'
import type { Config } from '../config/config.js'
import type { Strategy } from '../decide/strategy.js'
import type { Store } from '../state/store.js'
import type { Coordination } from './coordination.js'

export interface Monitor {
  config: Config
  strategy: Strategy
  /** Where decisions are recorded: the shared record when controllers coordinate, else state.json. */
  store: Store
  /** state.json and state.lock in the state directory (this controller's own). */
  local: Store
  /** Present when several controllers elect one sender (see coordination.ts). */
  coordination?: Coordination
  logger: Logger
  /** An operator's command that only reads (status, explain, outbox): it writes no cache either (masakari-hosts.ts). */
  readOnly?: boolean
  /**
   * What this run could not write besides its record (logFile, the metrics textfile): said in
   * the health note, and it ends the run with exit 74 (assertOutputsWritten).
   */
  problems: string[]
  /**
   * What this run was refused in a way that blinds it (an own agent's answer that cannot see
   * nodes: ACLs): the health note turns critical with it (withProblems).
   */
  critical: string[]
}
