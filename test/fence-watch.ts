/**
 * The pulse's fence check (issue #21): the deep look starts it when due, in a process of its
 * own (`--pulse --fence-check`, run here in-process against the fake fence agent); a BMC that
 * does not answer turns the health note warning, naming the host and the agent's message, and
 * keeps it so whatever run writes the note next; `status` shows the last check.
 */
import t, { type Test } from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, rm, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { main } from '../handlers/checks-handler.js'
import { main as operator } from '../handlers/operator-cli.js'
import {
  FENCE_CHECK_EVERY_S,
  type FenceCheckNote,
  type FenceCheckResult,
  fenceCheckDue,
  fenceCheckProblem,
} from '../lib/decide/fence-watch.js'
import { fakeFenceAgent } from './fake-fence-agent.js'
import { configYaml, fakeDeps, payload } from './helpers.js'

const PASSWORD = 'hunter2'
const allUp = payload({ controller: 'passing', cmp1: 'passing', cmp2: 'passing', cmp3: 'passing' })
const T0 = Date.parse('2026-11-25T12:00:00.000Z')
const at = (s: number) => new Date(T0 + s * 1000)

/** A config fencing cmp1..cmp3 through the fake agent; every network seen all up, so the health note is passing. */
async function setup(t: Test, fencing: Record<string, unknown> = {}) {
  const dir = t.testdir({})
  const stateDir = join(dir, 'state')
  const agent = await fakeFenceAgent(dir, PASSWORD)
  await writeFile(join(dir, 'fence-password'), `${PASSWORD}\n`)
  await chmod(join(dir, 'fence-password'), 0o600)
  const config = join(dir, 'config.yaml')
  const section = {
    enabled: true,
    agent: './fence_fake',
    hosts: { cmp1: { ip: '127.77.0.1' }, cmp2: { ip: '127.77.0.2' }, cmp3: { ip: '127.77.0.3' } },
    passwordFile: 'fence-password',
    timeout: 5,
  }
  await writeFile(config, configYaml(stateDir, { fencing: { ...section, ...fencing } }))
  for (const n of ['management', 'tenant', 'storage'])
    t.equal(await main(['--network', n, '--config', config], fakeDeps({ stdin: allUp })), 0, `${n} all up`)
  const run = async (args: string[], now = at(0), stdin?: string) => {
    const deps = fakeDeps({ now: () => now, ...(stdin ? { stdin } : {}) })
    t.equal(await main([...args, '--config', config], deps), 0, args.join(' '))
    return deps
  }
  return {
    dir,
    stateDir,
    config,
    agent,
    /** The deep look pulse.sh takes. */
    pulse: (now?: Date) => run(['--pulse'], now),
    /** The fence check the deep look starts. */
    check: (now?: Date) => run(['--pulse', '--fence-check'], now),
    watch: (now?: Date) => run(['--network', 'storage'], now, allUp),
    health: () => readFileSync(join(stateDir, 'health'), 'utf8').split('\n').slice(0, 2),
    note: () => readFileSync(join(stateDir, 'fence-check'), 'utf8'),
  }
}

type Deps = ReturnType<typeof fakeDeps>
/** The deep look's one line. */
const deepLook = (deps: Deps) => {
  const lines = deps.rec.stderr.map((l) => JSON.parse(l)).filter((l) => l.msg === 'pulse: deep look')
  return lines.length === 1 ? lines[0] : { lines: lines.length }
}

t.test('a deep look with a check due starts it in the background and runs no agent itself; the next pulses do not', async (t) => {
  const h = await setup(t)
  const first = await h.pulse()
  t.same(first.rec.fenceChecks, [h.config], 'the fence check started (--pulse --fence-check)')
  t.same(first.rec.agents, [], 'no agent run by the pulse itself (Consul kills it after 10 s)')
  t.match(deepLook(first), { level: 'info', fenceCheck: { started: true } })
  t.same(JSON.parse(h.note()), { startedAt: at(0).toISOString() }, 'its start is noted before it runs')
  // A critical check takes a deep look every 15 s: they start no other check meanwhile.
  for (const s of [15, 30, FENCE_CHECK_EVERY_S - 15]) t.same((await h.pulse(at(s))).rec.fenceChecks, [], `+${s} s: none`)
  t.same((await h.pulse(at(FENCE_CHECK_EVERY_S))).rec.fenceChecks, [h.config], 'one again once due')
})

t.test('the check, every BMC answering: status asked once each, health passing, an info line with the result', async (t) => {
  const h = await setup(t)
  const deps = await h.check()
  t.same((await h.agent.actions()).sort(), ['127.77.0.1 status', '127.77.0.2 status', '127.77.0.3 status'])
  t.equal(deps.rec.agents?.length, 3, 'through Deps.runAgent')
  t.same(deps.rec.fenceChecks, [], 'it starts no other')
  t.equal(h.health()[0], 'passing')
  t.match(deepLook(deps), { level: 'info', fenceCheck: { at: at(0).toISOString(), agent: 'fence_fake', hosts: 3, failed: [] } })
  t.match(JSON.parse(h.note()), { startedAt: at(0).toISOString(), last: { hosts: 3, failed: [] } })
})

t.test(
  'a BMC that does not answer (or an agent that errs) turns the health note warning, naming the host and the agent’s message',
  async (t) => {
    const cases: Array<[string, (h: Awaited<ReturnType<typeof setup>>) => Promise<unknown>, RegExp]> = [
      [
        'the BMC refuses',
        (h) => h.agent.set('fail-127.77.0.3', 'Failed: Unable to connect/login to fencing device'),
        /^fence check at 2026-11-25T12:00:0\d\.\d+Z: the BMC of cmp3 did not answer \(fence_fake: Failed: Unable to connect\/login to fencing device \(exit 1\)\): such a host cannot be fenced if it fails$/,
      ],
      [
        'no answer within fencing.timeout',
        (h) => h.agent.set('hang-127.77.0.2', '1'),
        /: the BMC of cmp2 did not answer \(fence_fake: no answer in time: killed\)/,
      ],
      [
        'an agent whose message holds the password: it is hidden',
        (h) => h.agent.set('fail-127.77.0.1', `Failed: login admin/${PASSWORD} refused`),
        /: the BMC of cmp1 did not answer \(fence_fake: Failed: login admin\/\*\*\* refused \(exit 1\)\)/,
      ],
      [
        'a wrong password: every host, each with its message',
        (h) => writeFile(join(h.dir, 'fence-password'), 'wrong\n'),
        /: the BMCs of 3 hosts did not answer \(fence_fake: cmp1: Failed: Unable to obtain correct plug status or plug is not available \(exit 1\); cmp2: .*; cmp3: .*\)/,
      ],
    ]
    for (const [name, breakIt, reason] of cases) {
      const h = await setup(t, { timeout: 1 })
      await breakIt(h)
      const deps = await h.check()
      const [status, why] = h.health()
      t.equal(status, 'warning', name)
      t.match(why, reason, `${name}: the reason`)
      t.match(deepLook(deps), { level: 'warn', fenceCheck: { failed: [{ host: /^cmp/, message: String }] } }, `${name}: a warning line`)
      const everything = [why, h.note(), ...deps.rec.stderr].join('\n')
      t.notOk(everything.includes(PASSWORD), `${name}: the password is nowhere`)
    }
  },
)

t.test('the warning outlives the runs between two checks, and goes at the check that finds every BMC answering', async (t) => {
  const h = await setup(t)
  await h.agent.set('fail-127.77.0.1', 'Failed: Connection timed out')
  await h.check()
  await h.watch(at(60))
  t.match(h.health(), ['warning', /the BMC of cmp1 did not answer/], 'a watch run writes the note: still warning')
  await h.pulse(at(120))
  t.match(h.health(), ['warning', /the BMC of cmp1 did not answer/], 'a deep look with no check due: still warning')
  await rm(join(h.dir, 'fail-127.77.0.1'))
  await h.check(at(FENCE_CHECK_EVERY_S))
  t.equal(h.health()[0], 'passing')
})

t.test('fencing off: no agent run, no check started, no note, the health note as before', async (t) => {
  const h = await setup(t, { enabled: false })
  await writeFile(join(h.stateDir, 'fence-check'), JSON.stringify({ startedAt: at(0).toISOString(), last: failedAt(0, 'cmp1') }))
  for (const deps of [await h.pulse(), await h.check()]) {
    t.same(deps.rec.agents, [], 'no agent run')
    t.same(deps.rec.fenceChecks, [], 'no check started')
    t.notOk('fenceCheck' in deepLook(deps), 'nothing said of it')
  }
  t.same(await h.agent.actions(), [])
  t.notOk(existsSync(join(h.stateDir, 'fence-check')), 'an earlier note is removed')
  t.equal(h.health()[0], 'passing')
})

t.test('a config changed since the last check makes one due at the next deep look', async (t) => {
  const h = await setup(t)
  await h.pulse()
  t.same((await h.pulse(at(60))).rec.fenceChecks, [], 'not due yet')
  await utimes(h.config, at(90), at(90))
  t.same((await h.pulse(at(120))).rec.fenceChecks, [h.config], 'the config changed after it: due')
  t.same((await h.pulse(at(135))).rec.fenceChecks, [], 'once')
})

t.test('status: the fencing line with the last check', async (t) => {
  const h = await setup(t)
  const line = async () => {
    const deps = fakeDeps()
    t.equal(await operator(['status', '--config', h.config], deps), 0)
    return deps.rec.stdout
      .join('')
      .split('\n')
      .find((l) => l.startsWith('fencing: '))
  }
  t.equal(await line(), 'fencing: fence_fake for 3 hosts; no fence check by the pulse yet (masakari-consul fence-check asks now)')
  await h.agent.set('fail-127.77.0.2', 'Failed: Connection timed out')
  await h.check()
  t.equal(
    await line(),
    `fencing: fence_fake for 3 hosts; last check ${JSON.parse(h.note()).last.at}: the BMC of cmp2 did not answer (fence_fake: Failed: Connection timed out (exit 1))`,
  )
  await rm(join(h.dir, 'fail-127.77.0.2'))
  await h.check(at(FENCE_CHECK_EVERY_S))
  t.equal(await line(), `fencing: fence_fake for 3 hosts; last check ${at(FENCE_CHECK_EVERY_S).toISOString()}: every BMC answered`)
  const off = await setup(t, { enabled: false })
  const deps = fakeDeps()
  t.equal(await operator(['status', '--config', off.config], deps), 0)
  t.notMatch(deps.rec.stdout.join(''), /^fencing/m, 'off: no line')
})

function failedAt(s: number, ...hosts: string[]): FenceCheckResult {
  return {
    at: at(s).toISOString(),
    agent: 'fence_ipmilan',
    hosts: 3,
    failed: hosts.map((host) => ({ host, message: `${host} timed out` })),
  }
}

t.test(
  'fenceCheckDue: none yet, every FENCE_CHECK_EVERY_S, after a config change; not while critical pulses come every 15 s',
  async (t) => {
    const note = (s: number): FenceCheckNote => ({ startedAt: at(s).toISOString() })
    const cases: Array<[string, FenceCheckNote | undefined, number, number | undefined, boolean]> = [
      ['no check yet', undefined, 0, undefined, true],
      ['started 15 s ago (a critical pulse)', note(0), 15, undefined, false],
      ['started just under the interval ago', note(0), FENCE_CHECK_EVERY_S - 1, undefined, false],
      ['started the interval ago', note(0), FENCE_CHECK_EVERY_S, undefined, true],
      ['the config changed after its start', note(0), 60, 30, true],
      ['the config changed before its start', note(0), 60, -30, false],
      ['a config mtime in the future: not a change yet', note(0), 60, 120, false],
      ['a start in the future (the clock stepped back)', note(600), 0, undefined, true],
      ['a start that is not a time', { startedAt: 'yesterday' }, 0, undefined, true],
    ]
    for (const [name, n, now, changed, want] of cases)
      t.equal(fenceCheckDue(n, at(now), changed === undefined ? undefined : at(changed)), want, name)
  },
)

t.test('fenceCheckProblem: every failed host still in fencing.hosts, with its message; nothing when all answered', async (t) => {
  const covers = (h: string) => h !== 'gone'
  const cases: Array<[string, FenceCheckResult | undefined, string | undefined]> = [
    ['no check finished', undefined, undefined],
    ['every BMC answered', failedAt(0), undefined],
    [
      'one host',
      failedAt(0, 'cmp1'),
      'fence check at 2026-11-25T12:00:00.000Z: the BMC of cmp1 did not answer (fence_ipmilan: cmp1 timed out): such a host cannot be fenced if it fails',
    ],
    [
      'four hosts: three named, the rest counted',
      failedAt(0, 'a', 'b', 'c', 'd'),
      'fence check at 2026-11-25T12:00:00.000Z: the BMCs of 4 hosts did not answer (fence_ipmilan: a: a timed out; b: b timed out; c: c timed out; and 1 more): such a host cannot be fenced if it fails',
    ],
    ['a host since taken out of fencing.hosts', failedAt(0, 'gone'), undefined],
  ]
  for (const [name, result, want] of cases) t.equal(fenceCheckProblem(result, covers), want, name)
})
