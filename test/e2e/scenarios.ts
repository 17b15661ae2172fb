/**
 * End-to-end scenarios shared by more than one test file (each file is one real stack, so a
 * scenario run under two gossip profiles lives here and is started from two small files).
 */
import type { Test } from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startRealStack } from './harness.js'

const storage = 'storage' as const

/**
 * Issue #9's mass failure: on a cluster of 8 computes where one is already down on storage and
 * one has left it, 6 storage agents are frozen at the same instant. Consul declares them failed
 * one by one over up to ~30 s; the burst guard must hold every one of them until the isolation
 * guard sees that most of the network went down: zero STOPPED.
 */
export async function massFailure(t: Test, opts: { octet: number; fastGossip: boolean }): Promise<void> {
  const computes = ['cmp1', 'cmp2', 'cmp3', 'cmp4', 'cmp5', 'cmp6', 'cmp7', 'cmp8']
  const stack = await startRealStack(t, {
    computes,
    octet: opts.octet,
    fastGossip: opts.fastGossip,
    // the example config's guards; the rate limit lifted so that it cannot hide a false STOPPED
    monitor: { guards: { rateLimit: { maxRecoveries: 0 } } },
  })
  const frozen = computes.slice(0, 6)

  await t.test('set-up: cmp8 already down on storage (notified), cmp7 has left storage', async (t) => {
    stack.consul.freeze('cmp8', storage)
    const got = await stack.waitForNotifications('cmp8', 1, 90_000)
    t.same(
      got.map((n) => n.payload.event),
      ['STOPPED'],
    )
    await stack.consul.leave('cmp7', storage)
    await stack.waitForSnapshot('cmp7', storage, 'absent', 60_000)
    await stack.waitForDelivery(60_000)
  })

  await t.test('6 of 8 storage agents frozen at once: no STOPPED for any of them', async (t) => {
    const t0 = Date.now()
    for (const c of frozen) stack.consul.freeze(c, storage)
    const seen: string[] = []
    await Promise.all(
      frozen.map(async (c) => {
        await stack.waitForSnapshot(c, storage, 'down', 120_000)
        seen.push(`${c} +${((Date.now() - t0) / 1000).toFixed(1)} s`)
      }),
    )
    t.comment(`declared failed (as the watch saw it): ${seen.join(', ')}`)
    // Positive signal that every decision is made: the snapshot shows all six down, the outbox
    // is empty and no monitor process (handler or worker) is left running.
    await stack.waitForDelivery(120_000)
    const stopped = (await stack.notifications()).filter((n) => frozen.includes(n.hostname))
    t.same(
      stopped.map((n) => `${n.hostname} ${n.payload.event}`),
      [],
      'Masakari holds no notification for the frozen hosts',
    )
    const lines = stack.logLines()
    t.ok(
      lines.some((l) => /SELF-ISOLATION SUSPECTED/.test(String(l.msg)) && l.network === storage),
      'the isolation guard decided the burst',
    )
    // Never silently blind: hosts are down and nobody is told, so the monitor's own check (the
    // note the pulse reports) says why until fewer hosts are down.
    const [status, reason] = (await readFile(join(stack.stateDir, 'health'), 'utf8')).split('\n')
    t.equal(status, 'warning', "the monitor's check is warning while the guard holds")
    t.match(reason, /self-isolation guard holds every recovery back \(storage since/, 'and says why')
    const held = lines.filter((l) => frozen.includes(String(l.host)) && l.guard === 'burst')
    t.comment(`${held.length} decision lines held by the burst guard`)
  })

  await t.test('nothing started by this test survives it', async (t) => {
    t.same(await stack.stop(), [])
  })
}
