/**
 * consul-config/watch.sh and pulse.sh, run as Consul runs them (/bin/sh), with a stand-in for
 * node: a failed watch run reaches the monitor's check and makes a resync due; the pulse starts
 * the resync when it is due and reports the worst failure note.
 */
import t, { type Test } from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { chmod, mkdir, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..', 'consul-config')
const WATCH = join(root, 'watch.sh')
const PULSE = join(root, 'pulse.sh')

function sh(args: string[], stdin = '', env = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', args, { stdio: ['pipe', 'pipe', 'pipe'], env })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }))
    child.stdin.on('error', () => {}) // pulse.sh does not read stdin
    child.stdin.end(stdin)
  })
}

/** sh, then until every process it left in the background has ended too (its own process group). */
async function shAndBackground(args: string[]): Promise<{ code: number; stdout: string }> {
  const child = spawn('/bin/sh', args, { stdio: ['ignore', 'pipe', 'ignore'], detached: true })
  let stdout = ''
  child.stdout.on('data', (d) => (stdout += d))
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)))
  const gone = () => {
    try {
      process.kill(-child.pid!, 0)
      return false
    } catch {
      return true
    }
  }
  while (!gone()) await new Promise((r) => setTimeout(r, 20))
  return { code, stdout }
}

/** A state dir, and a stand-in for node that records its arguments and stdin, then exits with `code`. */
async function setup(
  t: Test,
  code: number,
  say = 'checks-handler: error: invalid config x.yaml:\n  - masakari.auth.passwordFile: cannot read it',
) {
  const dir = t.testdir({})
  const state = join(dir, 'state')
  await mkdir(state)
  // A deep look has run since the install (pulse.sh takes one while this note is missing).
  await writeFile(join(state, 'warmed'), '{"at":"2026-12-06T00:00:00.000Z"}\n')
  // A resident is alive (lib/run/resident.ts): its heartbeat note, just written.
  await writeFile(join(state, 'resident'), `${process.pid}\n${uptimeS()}\n`)
  const node = join(dir, 'node')
  const calls = join(dir, 'calls')
  await writeFile(node, `#!/bin/sh\necho "$*" >>"${calls}"\ncat >>"${calls}.stdin"\nprintf '%s\\n' "${say}" >&2\nexit ${code}\n`)
  await chmod(node, 0o755)
  const config = join(dir, 'config.yaml')
  await writeFile(config, 'stateDir: x\n')
  return { dir, state, node, calls, config }
}

const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : undefined)

t.test('watch.sh: a successful run leaves no note; the payload and arguments reach the handler', async (t) => {
  const s = await setup(t, 0, '')
  const r = await sh([WATCH, 'storage', s.config, s.state, '/b/checks-handler.js', s.node], '[{"Node":"a"}]')
  t.equal(r.code, 0)
  t.equal(read(s.calls), `/b/checks-handler.js --network storage --config ${s.config}\n`)
  t.equal(read(`${s.calls}.stdin`), '[{"Node":"a"}]')
  t.notOk(existsSync(join(s.state, 'failed-storage')))
  t.notOk(existsSync(join(s.state, 'resync')))
})

t.test('watch.sh: a failed run keeps its exit code and stderr, notes the failure for the check and makes a resync due now', async (t) => {
  const s = await setup(t, 78)
  const before = Math.floor(Date.now() / 1000)
  const r = await sh([WATCH, 'storage', s.config, s.state, '/b/checks-handler.js', s.node], '[]')
  t.equal(r.code, 78, 'Consul sees the handler failing')
  t.match(r.stderr, /passwordFile: cannot read it/, 'its stderr is passed on')
  const [status, reason] = read(join(s.state, 'failed-storage'))!.split('\n')
  t.equal(status, 'critical')
  t.match(reason, /^the storage watch run failed \(exit 78\) at \d{4}-\d\d-\d\dT[\d:]+Z: - masakari\.auth\.passwordFile: cannot read it$/)
  const due = Number(read(join(s.state, 'resync')))
  t.ok(due >= before && due <= Date.now() / 1000 + 1, 'the resync is due now')
})

t.test('watch.sh: node missing is a failed run like any other (exit 127, named)', async (t) => {
  const s = await setup(t, 0)
  const r = await sh([WATCH, 'tenant', s.config, s.state, '/b/checks-handler.js', '/nonexistent/node'], '[]')
  t.equal(r.code, 127)
  t.match(read(join(s.state, 'failed-tenant')), /critical\nthe tenant watch run failed \(exit 127\) at .*\/nonexistent\/node.*not found/)
})

/** The system's uptime as pulse.sh reads it, whole seconds. */
const uptimeS = () => Number(readFileSync('/proc/uptime', 'utf8').split('.')[0])

t.test('pulse.sh: an idle pulse starts no process (it runs every 15 s)', async (t) => {
  const s = await setup(t, 0)
  // The only programs on its PATH record that they ran.
  const bin = join(s.dir, 'bin')
  await mkdir(bin)
  for (const name of ['find', 'date', 'sed', 'cut', 'tail', 'mv', 'rm', 'cat']) {
    await writeFile(join(bin, name), `#!/bin/sh\necho ${name} >>"${s.calls}.programs"\n`)
    await chmod(join(bin, name), 0o755)
  }
  await writeFile(join(s.state, 'health'), `passing\n0 notification(s) pending\n${uptimeS()}\n`)
  const r = await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node], '', { PATH: bin })
  t.same(r, { code: 0, stdout: 'passing: 0 notification(s) pending\n', stderr: '' })
  t.equal(read(`${s.calls}.programs`), undefined, 'no program ran')
  t.equal(read(s.calls), undefined, 'no deep look')
})

t.test(
  'pulse.sh: a deep look once the health note is 30 minutes old, after a reboot, and by its mtime when it has no uptime',
  async (t) => {
    const cases: Array<[string, (up: number) => string, Date | undefined, boolean]> = [
      ['29 min 59 s old', (up) => `${up - 1799}`, undefined, false],
      ['30 minutes old', (up) => `${up - 1800}`, undefined, true],
      ['written before a reboot (uptime below its own)', (up) => `${up + 60}`, undefined, true],
      ['no uptime line, 31 minutes old by mtime', () => '', new Date(Date.now() - 31 * 60_000), true],
      ['no uptime line, fresh', () => '', undefined, false],
      ['a damaged uptime line, 31 minutes old by mtime', () => '12x', new Date(Date.now() - 31 * 60_000), true],
    ]
    for (const [what, third, mtime, deep] of cases) {
      const s = await setup(t, 0, '')
      // The config older than the note: only the note's age decides.
      await utimes(s.config, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000))
      const health = join(s.state, 'health')
      await writeFile(health, `passing\n0 notification(s) pending\n${third(uptimeS())}\n`)
      if (mtime) await utimes(health, mtime, mtime)
      const r = await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
      t.equal(r.code, 0, what)
      t.equal(
        read(s.calls),
        deep ? `/b/checks-handler.js --pulse --config ${s.config}\n` : undefined,
        `${what}: ${deep ? 'a deep look' : 'none'}`,
      )
    }
  },
)

t.test('pulse.sh: just installed (no warmed note, a fresh passing health note): a deep look, then none', async (t) => {
  const s = await setup(t, 0, '')
  await utimes(s.config, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000))
  await writeFile(join(s.state, 'health'), `passing\n0 notification(s) pending\n${uptimeS()}\n`)
  rmSync(join(s.state, 'warmed'))
  await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  t.equal(read(s.calls), `/b/checks-handler.js --pulse --config ${s.config}\n`, 'a deep look')
  // What the deep look (lib/run/pulse.ts) leaves behind.
  await writeFile(join(s.state, 'warmed'), '{"at":"2026-12-06T00:00:00.000Z"}\n')
  await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  t.equal(read(s.calls), `/b/checks-handler.js --pulse --config ${s.config}\n`, 'none the next pulse')
})

t.test(
  'pulse.sh: a fresh warning note (a BMC that does not answer the fence check) takes no deep look; critical takes one each pulse',
  async (t) => {
    const cases: Array<[string, boolean]> = [
      ['passing', false],
      ['warning', false],
      ['critical', true],
    ]
    for (const [status, deep] of cases) {
      const s = await setup(t, 0, '')
      await utimes(s.config, new Date(Date.now() - 3600_000), new Date(Date.now() - 3600_000))
      await writeFile(join(s.state, 'health'), `${status}\nfence check at …: the BMC of cmp3 did not answer\n${uptimeS()}\n`)
      await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
      t.equal(
        read(s.calls),
        deep ? `/b/checks-handler.js --pulse --config ${s.config}\n` : undefined,
        `${status}: ${deep ? 'a deep look' : 'none'}`,
      )
    }
  },
)

t.test('pulse.sh: a failure note outweighs a passing health note, the worst one wins', async (t) => {
  const s = await setup(t, 0)
  await writeFile(join(s.state, 'health'), 'passing\n0 notification(s) pending\n')
  let r = await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  t.equal(r.code, 0)
  t.equal(r.stdout, 'passing: 0 notification(s) pending\n')
  await writeFile(join(s.state, 'failed-resync'), 'warning\nthe resync failed at T: storage: no answer\n')
  r = await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  t.equal(r.code, 1)
  t.equal(r.stdout, 'warning: the resync failed at T: storage: no answer\n')
  await writeFile(join(s.state, 'failed-storage'), 'critical\nthe storage watch run failed (exit 74) at T: state.json torn\n')
  r = await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  t.equal(r.code, 2)
  t.equal(r.stdout, 'critical: the storage watch run failed (exit 74) at T: state.json torn\n')
})

t.test('pulse.sh: a due resync is started (once), and one that fails is noted at warning', async (t) => {
  const s = await setup(t, 69, 'checks-handler: error: resync: storage: no answer within 5 s')
  await writeFile(join(s.state, 'health'), 'passing\n1 notification(s) pending\n')
  await writeFile(join(s.state, 'resync'), `${Math.floor(Date.now() / 1000) - 1}\n`)
  const r = await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  t.equal(r.code, 0, 'the check reports what it knows now; the resync runs in the background')
  const deadline = Date.now() + 10_000
  while (!existsSync(join(s.state, 'failed-resync')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  t.equal(read(s.calls), `/b/checks-handler.js --resync --config ${s.config}\n`)
  t.match(
    read(join(s.state, 'failed-resync')),
    /^warning\nthe resync failed at .*: checks-handler: error: resync: storage: no answer within 5 s\n$/,
  )
})

t.test('pulse.sh: no resync while settled (no note) or before it is due', async (t) => {
  const s = await setup(t, 0)
  await writeFile(join(s.state, 'health'), 'passing\n0 notification(s) pending\n')
  await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  await writeFile(join(s.state, 'resync'), `${Math.floor(Date.now() / 1000) + 60}\n`)
  await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  t.equal(read(s.calls), undefined, 'node never started')
})

t.test('pulse.sh: a due worker that fails is written down (critical); one that ends well removes the note', async (t) => {
  const s = await setup(t, 1, 'TypeError: x is not a function')
  await writeFile(join(s.state, 'health'), 'passing\n1 notification(s) pending\n')
  await writeFile(join(s.state, 'wake'), `${Math.floor(Date.now() / 1000) - 1}\n`)
  await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  const deadline = Date.now() + 10_000
  while (!existsSync(join(s.state, 'failed-worker')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  t.equal(read(s.calls), `/b/checks-handler.js --worker --config ${s.config}\n`)
  t.match(read(join(s.state, 'failed-worker')), /^critical\nthe worker failed \(exit 1\) at .*worker\.stderr\n$/)
  // Nothing due any more: this pulse only reports (a worker started now would outlive the test).
  rmSync(join(s.state, 'wake'))
  const r = await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  t.equal(r.code, 2, 'the check is critical while it is there')
})

/** A watch run as Consul makes it: CONSUL_INDEX set; the stand-in node records the resident's index note as it found it. */
async function residentSetup(t: Test, heartbeatAge: number | undefined, pid = process.pid) {
  const s = await setup(t, 0, '')
  const note = join(s.state, 'resident-storage')
  await writeFile(s.node, `#!/bin/sh\necho "$*" >>"${s.calls}"\ncat "${note}" >>"${s.calls}" 2>/dev/null\nexit 0\n`)
  if (heartbeatAge === undefined) rmSync(join(s.state, 'resident'))
  else await writeFile(join(s.state, 'resident'), `${pid}\n${uptimeS() - heartbeatAge}\n`)
  await writeFile(note, '41\n')
  const watch = () =>
    sh([WATCH, 'storage', s.config, s.state, '/b/checks-handler.js', s.node], '[]', { ...process.env, CONSUL_INDEX: '42' })
  return { ...s, note, watch }
}

t.test("watch.sh: a live resident gets a head start: the handler runs once the resident's index note reaches CONSUL_INDEX", async (t) => {
  const s = await residentSetup(t, 5)
  const run = s.watch()
  await new Promise((r) => setTimeout(r, 300))
  await writeFile(s.note, '42\n')
  t.equal((await run).code, 0)
  t.equal(read(s.calls), `/b/checks-handler.js --network storage --config ${s.config}\n42\n`, 'after the resident, never instead of it')
})

t.test(
  'watch.sh: no head start without a live resident (no heartbeat, one 30 s old, its process gone) or without CONSUL_INDEX',
  async (t) => {
    // A pid no process has now: a child's that has exited.
    const gone = spawnSync('/bin/true').pid
    for (const [what, age, index, pid] of [
      ['no heartbeat note', undefined, '42', process.pid],
      ['a heartbeat 30 s old', 30, '42', process.pid],
      ['a fresh heartbeat, its process gone (killed)', 5, '42', gone],
      ['no CONSUL_INDEX', 5, '', process.pid],
    ] as const) {
      const s = await residentSetup(t, age, pid)
      const late = setTimeout(() => void writeFile(s.note, '42\n'), 2000)
      const r = await sh([WATCH, 'storage', s.config, s.state, '/b/checks-handler.js', s.node], '[]', {
        ...process.env,
        CONSUL_INDEX: index,
      })
      clearTimeout(late)
      t.equal(r.code, 0, what)
      t.equal(read(s.calls), `/b/checks-handler.js --network storage --config ${s.config}\n41\n`, `${what}: the handler at once`)
    }
  },
)

t.test('watch.sh: a live resident that never handles the change: the handler runs anyway (the full path)', async (t) => {
  const s = await residentSetup(t, 5)
  const r = await s.watch()
  t.equal(r.code, 0)
  t.equal(read(s.calls), `/b/checks-handler.js --network storage --config ${s.config}\n41\n`)
})

t.test('pulse.sh: no live resident: one is started; a live one is left alone', async (t) => {
  const s = await setup(t, 0, '')
  await writeFile(join(s.state, 'health'), `passing\n0 notification(s) pending\n${uptimeS()}\n`)
  await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  t.equal(read(s.calls), undefined, 'alive: none started')
  await writeFile(join(s.state, 'resident'), `${process.pid}\n${uptimeS() - 30}\n`)
  await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  const deadline = Date.now() + 10_000
  while (read(s.calls) === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  t.equal(read(s.calls), `/b/checks-handler.js --resident --config ${s.config}\n`, 'its heartbeat 30 s old: one started')
})

t.test('pulse.sh: after a resident failed (its note, at warning), another is started only 5 minutes later', async (t) => {
  const s = await setup(t, 0, '')
  await writeFile(join(s.state, 'health'), `passing\n0 notification(s) pending\n${uptimeS()}\n`)
  rmSync(join(s.state, 'resident'))
  // What lib/run/resident.ts writes when it fails: the uptime on the third line.
  await writeFile(join(s.state, 'failed-resident'), `warning\nthe resident failed at T: boom\n${uptimeS() - 10}\n`)
  const r = await shAndBackground([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  t.same([r.code, r.stdout], [1, 'warning: the resident failed at T: boom\n'], 'the check warns')
  t.equal(read(s.calls), undefined, 'none started 10 s after (once everything the pulse started has ended)')
  await writeFile(join(s.state, 'failed-resident'), `warning\nthe resident failed at T: boom\n${uptimeS() - 300}\n`)
  await sh([PULSE, s.config, s.state, '/b/checks-handler.js', s.node])
  const deadline = Date.now() + 10_000
  while (read(s.calls) === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  t.equal(read(s.calls), `/b/checks-handler.js --resident --config ${s.config}\n`, '5 minutes after: one started')
})

t.test('watch.sh and pulse.sh without resident.sh beside them (a partial copy): the handler at once, no resident started', async (t) => {
  const s = await residentSetup(t, 5)
  const copy = join(s.dir, 'alone')
  await mkdir(copy)
  for (const f of [WATCH, PULSE]) await writeFile(join(copy, f.split('/').at(-1)!), readFileSync(f))
  const r = await sh([join(copy, 'watch.sh'), 'storage', s.config, s.state, '/b/checks-handler.js', s.node], '[]', {
    ...process.env,
    CONSUL_INDEX: '42',
  })
  t.equal(r.code, 0)
  t.equal(read(s.calls), `/b/checks-handler.js --network storage --config ${s.config}\n41\n`, 'no head start: the handler at once')
  rmSync(join(s.state, 'resident'))
  await writeFile(join(s.state, 'health'), `passing\n0 notification(s) pending\n${uptimeS()}\n`)
  const p = await shAndBackground([join(copy, 'pulse.sh'), s.config, s.state, '/b/checks-handler.js', s.node])
  t.same([p.code, p.stdout], [0, 'passing: 0 notification(s) pending\n'])
  t.equal(read(s.calls), `/b/checks-handler.js --network storage --config ${s.config}\n41\n`, 'no resident started')
})
