/**
 * The pulse's fence check (issue #21): every configured host's BMC asked for its power status
 * now and then, as Pacemaker's stonith monitor does, so that a BMC with a wrong password or no
 * route is found before a failure needs it. When one is due, what its note keeps, and what the
 * health note, the log and `status` say of it (pure).
 */
import { z } from 'zod'

/**
 * How often the pulse's deep look starts a check. The deep look comes every 30 minutes while
 * the check is passing or warning (consul-config/pulse.sh): a little less, so that each of those
 * starts one; while critical it comes every 15 s, and this keeps those from asking every BMC
 * each time.
 */
export const FENCE_CHECK_EVERY_S = 25 * 60

const FailedSchema = z.object({ host: z.string(), message: z.string() })

/** What a finished check found: the hosts whose agent did not answer, with its own message. */
export const FenceCheckResultSchema = z.object({
  at: z.string(),
  agent: z.string(),
  /** How many hosts were asked. */
  hosts: z.number().int().nonnegative(),
  failed: z.array(FailedSchema),
})
export type FenceCheckResult = z.infer<typeof FenceCheckResultSchema>

/** The `fence-check` note in the state directory. */
export const FenceCheckNoteSchema = z.object({
  /** When the last check was started: written before it runs, so that the next deep looks do not start another. */
  startedAt: z.string(),
  /** The last finished check; absent until one has finished. */
  last: FenceCheckResultSchema.optional(),
})
export type FenceCheckNote = z.infer<typeof FenceCheckNoteSchema>

/** One host's answer, as the fence check gives it (lib/run/fence-check.ts). */
export interface FenceCheckAnswer {
  host: string
  result: string
  message?: string
}

/**
 * Is a check due? When none was started, the last was started FENCE_CHECK_EVERY_S ago, or the
 * config changed since (the operator fixed an address: the warning must not outlast the fix by
 * half an hour). A start in the future is a clock stepped back: it would hold checks off until then.
 */
export function fenceCheckDue(note: FenceCheckNote | undefined, now: Date, configChangedAt?: Date): boolean {
  const started = Date.parse(note?.startedAt ?? '')
  if (Number.isNaN(started) || started > now.getTime()) return true
  const changed = configChangedAt?.getTime()
  if (changed !== undefined && changed > started && changed <= now.getTime()) return true
  return now.getTime() - started >= FENCE_CHECK_EVERY_S * 1000
}

/** A finished check's result from its answers. */
export function fenceCheckResult(answers: readonly FenceCheckAnswer[], agent: string, at: Date): FenceCheckResult {
  // A host the template cannot be filled for cannot be fenced either: it warns as a silent BMC does.
  const failed = answers
    .filter((a) => a.result === 'error' || a.result === 'uncovered')
    .map((a) => ({ host: a.host, message: `${a.result === 'uncovered' ? 'not covered: ' : ''}${a.message ?? 'no message'}` }))
  return { at: at.toISOString(), agent, hosts: answers.length, failed }
}

/** Hosts named in a line, at most this many: the rest counted. */
const NAMED = 3

/** "the BMC of cmp3 did not answer (fence_ipmilan: …)"; several: each with its message; undefined when all answered. */
export function failedText(result: FenceCheckResult, covers: (host: string) => boolean = () => true): string | undefined {
  const failed = result.failed.filter((f) => covers(f.host))
  if (failed.length === 0) return undefined
  if (failed.length === 1) return `the BMC of ${failed[0]!.host} did not answer (${result.agent}: ${failed[0]!.message})`
  const named = failed.slice(0, NAMED).map((f) => `${f.host}: ${f.message}`)
  const more = failed.length > NAMED ? `; and ${failed.length - NAMED} more` : ''
  return `the BMCs of ${failed.length} hosts did not answer (${result.agent}: ${named.join('; ')}${more})`
}

/**
 * The health note's reason when the last check found a BMC that does not answer (hosts since
 * taken out of fencing.hosts left out): a warning, as a fence that would fail is not a failure
 * yet. Undefined when every BMC answered, or no check has finished.
 */
export function fenceCheckProblem(result: FenceCheckResult | undefined, covers: (host: string) => boolean): string | undefined {
  if (result === undefined) return undefined
  const failed = failedText(result, covers)
  return failed && `fence check at ${result.at}: ${failed}: such a host cannot be fenced if it fails`
}

/** The last check in a few words, for `status`. */
export function fenceCheckText(result: FenceCheckResult | undefined): string {
  if (result === undefined) return 'no fence check by the pulse yet (masakari-consul fence-check asks now)'
  return `last check ${result.at}: ${failedText(result) ?? 'every BMC answered'}`
}
