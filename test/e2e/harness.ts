/**
 * The real stack (stack/real-stack.ts) bound to tap: stopped at the test's teardown, its
 * progress as test comments, and where its logs are when a test failed.
 */
import type { Test } from 'tap'
import { type RealStack, type RealStackOptions, startRealStack as startStack } from '../../stack/real-stack.js'

export {
  EVALUATE,
  HANDLER,
  MONITOR_ACL_RULES,
  type Monitor,
  PULSE,
  type RealStack,
  type RealStackOptions,
  type RecordView,
  ROOT,
  readRecord,
  waitUntil,
} from '../../stack/real-stack.js'

export async function startRealStack(t: Test, opts: RealStackOptions): Promise<RealStack> {
  const log = opts.log ?? ((m: string) => t.comment(m))
  return startStack({
    ...opts,
    log,
    teardown: (stop, logsHint) =>
      t.teardown(async () => {
        await stop()
        if (!t.passing()) log(`a test failed; ${logsHint()}`)
      }),
  })
}
