/**
 * The resident (lib/run/resident.ts, #22) on the real stack: one controller, the pulse every
 * 3 s, which starts it. It decides ahead of the watch runs; and whatever happens to it (killed,
 * frozen, its config changed), a failed compute still gets exactly one STOPPED, from the
 * watch's own run, and the pulse brings a resident back.
 *
 * Every wait is for a positive signal: a stored notification, a log line, the heartbeat note.
 */
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { appendFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startRealStack, waitUntil } from './harness.js'

const computes = ['cmp1', 'cmp2', 'cmp3', 'cmp4']
const stack = await startRealStack(t, { computes, octet: 210, pulse: '3s', fastGossip: true })

/** The resident's pid, from its heartbeat note, once its process is there. */
function residentPid(): number | undefined {
  try {
    const pid = Number(readFileSync(join(stack.stateDir, 'resident'), 'utf8').split('\n', 1)[0])
    process.kill(pid, 0)
    return pid
  } catch {
    return undefined
  }
}

const aResident = (other?: number) =>
  waitUntil(
    other === undefined ? 'a resident' : `a resident other than ${other}`,
    async () => {
      const pid = residentPid()
      return pid !== undefined && pid !== other ? pid : undefined
    },
    60_000,
  )

/**
 * Which run first saw the host down on storage and decided on it: the component of its first
 * decision line there (the harness's hold makes it a held decision; the worker sends it).
 */
function decidedBy(host: string): unknown {
  const down = (l: Record<string, unknown>) => (l.vector as Record<string, string> | undefined)?.storage === 'down'
  return stack.logLines().find((l) => l.msg === 'decision' && l.host === host && down(l))?.component
}

/** The storage agent of `host` frozen: exactly one STOPPED, then thawed: the STARTED, and idle again. */
async function failAndRecover(t: Test, host: string): Promise<unknown> {
  stack.consul.freeze(host, 'storage')
  await stack.waitForNotifications(host, 1, 60_000)
  await stack.waitForDelivery(60_000)
  t.same(
    (await stack.notifications(host)).map((n) => n.payload.event),
    ['STOPPED'],
    `exactly one STOPPED for ${host}`,
  )
  const by = decidedBy(host)
  stack.consul.thaw(host, 'storage')
  await stack.waitForNotifications(host, 2, 60_000)
  await stack.waitForSnapshot(host, 'storage', 'up', 60_000)
  await stack.waitForDelivery(60_000)
  return by
}

t.test('the pulse starts a resident; it decides a failure ahead of the watch run, once', async (t) => {
  await aResident()
  await stack.waitForDelivery(60_000)
  t.equal(await failAndRecover(t, 'cmp1'), 'resident/storage', 'decided by the resident')
})

t.test('the resident killed: the watch run decides alone, once; the pulse starts another', async (t) => {
  const killed = await aResident()
  process.kill(killed, 'SIGKILL')
  await waitUntil('the killed resident gone', async () => (residentPid() === killed ? undefined : true), 10_000)
  // Before the next pulse can start another: the failure meets no resident.
  stack.consul.freeze('cmp2', 'storage')
  await stack.waitForNotifications('cmp2', 1, 60_000)
  await stack.waitForDelivery(60_000)
  t.same(
    (await stack.notifications('cmp2')).map((n) => n.payload.event),
    ['STOPPED'],
    'exactly one STOPPED for cmp2',
  )
  t.equal(decidedBy('cmp2'), 'checks-handler/storage', "decided by the watch's own run")
  stack.consul.thaw('cmp2', 'storage')
  await stack.waitForNotifications('cmp2', 2, 60_000)
  await stack.waitForDelivery(60_000)
  t.not(await aResident(killed), killed, 'a new resident')
})

t.test('the resident frozen (SIGSTOP): the watch run decides after its head start, once; thawed, no second', async (t) => {
  const frozen = await aResident()
  process.kill(frozen, 'SIGSTOP')
  try {
    stack.consul.freeze('cmp3', 'storage')
    await stack.waitForNotifications('cmp3', 1, 60_000)
    t.equal(decidedBy('cmp3'), 'checks-handler/storage', "decided by the watch's own run")
  } finally {
    process.kill(frozen, 'SIGCONT')
  }
  // Thawed, it answers the change it slept through: the record has it, no second STOPPED.
  await stack.waitForDelivery(60_000)
  t.same(
    (await stack.notifications('cmp3')).map((n) => n.payload.event),
    ['STOPPED'],
    'exactly one STOPPED for cmp3',
  )
  stack.consul.thaw('cmp3', 'storage')
  await stack.waitForNotifications('cmp3', 2, 60_000)
  await stack.waitForDelivery(60_000)
})

t.test('the config changed: the resident ends, the pulse starts another, and it decides', async (t) => {
  const before = await aResident()
  await appendFile(stack.configPath, '# touched\n')
  const ended = await waitUntil(
    "the resident's end",
    async () => stack.logLines().find((l) => l.msg === 'resident: ended' && /changed/.test(String(l.why))),
    60_000,
  )
  t.match(ended, { why: new RegExp(`${stack.configPath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} changed`) }, 'it says why')
  const after = await aResident(before)
  t.not(after, before, 'a new resident')
  t.equal(await failAndRecover(t, 'cmp4'), 'resident/storage', 'decided by the new resident')
})

t.test('nothing started by this test survives it', async (t) => {
  t.same(await stack.stop(), [])
})
