/**
 * Fencing's parts (issue #21): the pure step by step decision, how an agent's answer is read,
 * the runner against a fake fence agent (stdin protocol, the password never on argv nor in its
 * environment, the timeout that kills its children), and a whole fence: off, status until off.
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { type AgentAnswer, fenceStep, type FenceProgress } from '../lib/decide/fence-step.js'
import { agentAnswer, agentMessage, agentStdin, type AgentContext, runFenceAgent } from '../lib/fence/fence-agent.js'
import { runAgentProcess } from '../lib/fence/agent-process.js'
import { fenceHost } from '../lib/fence/fence-host.js'
import type { FenceOptions, FencingConfig } from '../lib/fence/fence-config.js'
import { fenceTarget } from '../lib/fence/fence-template.js'
import { fakeFenceAgent } from './fake-fence-agent.js'
import { fakeDeps } from './helpers.js'

const ON: AgentAnswer = { kind: 'on' }
const OFF: AgentAnswer = { kind: 'off' }
const DONE: AgentAnswer = { kind: 'done' }
const err = (message: string): AgentAnswer => ({ kind: 'error', message })
const LIMITS = { timeout: 10_000, statusInterval: 1000 }

t.test('fenceStep: what to do next, from the answers so far', async (t) => {
  const cases: Array<[string, FenceProgress, ReturnType<typeof fenceStep>]> = [
    ['nothing yet: power off', { elapsed: 0, statuses: 0 }, { step: 'off' }],
    ['off done: a status at once', { elapsed: 300, off: DONE, statuses: 0 }, { step: 'status', wait: 0 }],
    [
      'status on: the next one a statusInterval later',
      { elapsed: 1500, off: DONE, status: { answer: ON, at: 1200 }, statuses: 1 },
      { step: 'status', wait: 700 },
    ],
    [
      'status on long ago: at once',
      { elapsed: 5000, off: DONE, status: { answer: ON, at: 1200 }, statuses: 1 },
      { step: 'status', wait: 0 },
    ],
    ['never past the deadline', { elapsed: 9800, off: DONE, status: { answer: ON, at: 9500 }, statuses: 5 }, { step: 'status', wait: 200 }],
    [
      'a status error: polled again',
      { elapsed: 2000, off: DONE, status: { answer: err('BMC busy'), at: 2000 }, statuses: 2 },
      { step: 'status', wait: 1000 },
    ],
    ['status off: fenced', { elapsed: 2500, off: DONE, status: { answer: OFF, at: 2500 }, statuses: 3 }, { step: 'fenced', statuses: 3 }],
    [
      'off seen just at the deadline still counts',
      { elapsed: 10_000, off: DONE, status: { answer: OFF, at: 10_000 }, statuses: 4 },
      { step: 'fenced', statuses: 4 },
    ],
    [
      'power off refused: failed at once, with its message',
      { elapsed: 900, off: err('Failed: Unable to obtain correct plug status (exit 1)'), statuses: 0 },
      { step: 'failed', reason: 'power off failed: Failed: Unable to obtain correct plug status (exit 1)' },
    ],
    [
      'timed out while on',
      { elapsed: 10_000, off: DONE, status: { answer: ON, at: 9900 }, statuses: 9 },
      { step: 'failed', reason: 'power off not confirmed within 10 s: last status: on (9 status runs)' },
    ],
    [
      'timed out on errors: the last one said',
      { elapsed: 10_001, off: DONE, status: { answer: err('no route to host'), at: 9000 }, statuses: 9 },
      { step: 'failed', reason: 'power off not confirmed within 10 s: last status: error: no route to host' },
    ],
    [
      'timed out before any status',
      { elapsed: 12_000, off: DONE, statuses: 0 },
      { step: 'failed', reason: 'power off not confirmed within 10 s: no status answer' },
    ],
    [
      'a clock that does not move: bounded by the count',
      { elapsed: 0, off: DONE, status: { answer: ON, at: 0 }, statuses: 11 },
      { step: 'failed', reason: 'power off not confirmed within 10 s: last status: on (11 status runs)' },
    ],
    [
      'an off answered as a status is no power-off',
      { elapsed: 100, off: OFF, statuses: 0 },
      { step: 'failed', reason: 'power off answered as a status (off): not a power-off' },
    ],
  ]
  for (const [name, progress, want] of cases) t.same(fenceStep(progress, LIMITS), want, name)
})

const exit = (code: number | null, stdout = '', stderr = '', more: object = {}) => ({ code, stdout, stderr, timedOut: false, ...more })
const WARNING = "/usr/share/fence/fencing.py:12: DeprecationWarning: 'telnetlib' is deprecated\n  import telnetlib\n"

t.test("agentAnswer: an agent's exit as fencing.py gives it", async (t) => {
  const cases: Array<[string, Parameters<typeof agentAnswer>[0], ReturnType<typeof exit>, AgentAnswer]> = [
    ['status on', 'status', exit(0, 'Status: ON\n', WARNING), ON],
    ['status off', 'status', exit(2, 'Status: OFF\n', WARNING), OFF],
    [
      'exit 2 without Status: OFF (EC_BAD_ARGS in older agents) is no off',
      'status',
      exit(2, '', 'bad arguments\n'),
      err('exit 2 with no "Status:" line: not a power state'),
    ],
    ['exit 0 saying OFF is no answer', 'status', exit(0, 'Status: OFF\n'), err('exit 0 with "Status: OFF": not a power state')],
    ['exit 0 without a line is on (as Pacemaker reads it)', 'status', exit(0, ''), ON],
    [
      'a wrong password',
      'status',
      exit(1, '', `${WARNING}2024-05-01 10:00:00,123 ERROR: Failed: Unable to obtain correct plug status or plug is not available\n`),
      err('Failed: Unable to obtain correct plug status or plug is not available (exit 1)'),
    ],
    ['off done', 'off', exit(0, 'Success: Powered OFF\n'), DONE],
    ['monitor failing without a message', 'monitor', exit(1, ''), err('no message (exit 1)')],
    [
      'not found',
      'status',
      exit(null, '', '', { error: 'spawn /usr/sbin/fence_nope ENOENT' }),
      err('could not be run: spawn /usr/sbin/fence_nope ENOENT'),
    ],
    ['killed at its timeout', 'status', exit(null, '', 'connecting\n', { timedOut: true }), err('no answer in time: killed: connecting')],
  ]
  for (const [name, action, e, want] of cases) t.same(agentAnswer(action, e), want, name)
  t.same(
    agentAnswer('status', exit(1, '', 'ERROR: Failed: login hunter2 refused\n'), 'hunter2'),
    err('ERROR: Failed: login *** refused (exit 1)'),
    'the password never in a message',
  )
})

t.test("agentMessage: the agent's ERROR lines, else its last line, on one line", async (t) => {
  t.equal(
    agentMessage({ stdout: '', stderr: `${WARNING}2024-05-01 10:00:00,1 ERROR: Failed: a\n2024-05-01 10:00:00,2 ERROR: b\n` }),
    'Failed: a; b',
  )
  t.equal(agentMessage({ stdout: 'Connection timed out\n', stderr: WARNING }), 'Connection timed out')
  t.equal(agentMessage({ stdout: '', stderr: WARNING }), '', 'only Python warnings: no message')
})

t.test('agentStdin: key=value lines, the action, the password last; booleans as fencing.py reads them', async (t) => {
  t.equal(
    agentStdin('status', { ip: '10.0.0.1', ipport: 623, lanplus: true, verbose: false }, 'pw'),
    'ip=10.0.0.1\nipport=623\nlanplus=1\nverbose=0\naction=status\npassword=pw\n',
  )
  t.equal(agentStdin('off', { ip: 'x' }, undefined), 'ip=x\naction=off\n', 'no password line without a password')
})

function fencing(agent: string, over: Partial<FencingConfig> = {}): FencingConfig {
  return {
    enabled: true,
    agent,
    options: { username: 'admin', lanplus: 1 },
    hosts: { cmp1: { ip: '127.77.0.1', ipport: 6231 }, cmp2: { ip: '127.77.0.2' } },
    timeout: 5,
    statusInterval: 0.02,
    ...over,
  }
}

t.test('the runner: options and password on stdin only, never on argv nor in the environment', async (t) => {
  const dir = t.testdir({})
  const agent = await fakeFenceAgent(dir, 'hunter2')
  const deps = fakeDeps()
  const ctx: AgentContext = {
    run: deps.runAgent,
    env: { PATH: process.env.PATH, MC_FENCE_PASSWORD: 'hunter2', OS_PASSWORD: 'keystone-secret', HOME: '/root' },
    fencing: fencing(agent.path),
    password: 'hunter2',
  }
  t.same(await runFenceAgent(ctx, optionsOf(ctx, 'cmp1'), 'status', 5000), ON)
  t.same(fenceTarget(ctx.fencing, 'cmp9'), { reason: 'no fencing.hosts or fencing.hostsFile entry for cmp9, and no fencing.template' })
  t.equal(
    await agent.stdin(),
    'username=admin\nlanplus=1\nip=127.77.0.1\nipport=6231\naction=status\npassword=hunter2\n',
    "the host's options over the common ones, the action, the password",
  )
  t.same(await agent.actions(), ['127.77.0.1 status'], 'one run; none for a host without options')
  const cmdline = await agent.cmdlines()
  t.match(cmdline, /fence_fake/, "the agent's own argv was read")
  t.notOk(cmdline.includes('hunter2'), `no password on argv: ${cmdline}`)
  t.same(
    deps.rec.agents?.map((a) => Object.keys(a).sort()),
    [['env', 'file', 'stdin', 'timeoutMs']],
    'nothing to start it with but its file, stdin and environment',
  )
  const environ = await agent.environ('127.77.0.1')
  t.notOk(environ.includes('hunter2') || environ.includes('keystone-secret'), 'no secret of the monitor in its environment')
  t.match(environ, /^HOME=\/root$/m, 'what an agent needs is passed')
})

/** The host's options as delivery gets them (fenceTarget); a host without any fails the test. */
function optionsOf(ctx: AgentContext, host: string): FenceOptions {
  const target = fenceTarget(ctx.fencing, host)
  if ('reason' in target) throw new Error(target.reason)
  return target.options
}

const agentAnswerOf = (ctx: AgentContext, host: string) => runFenceAgent(ctx, optionsOf(ctx, host), 'status', 5000)

t.test("the runner: a BMC's errors in the agent's words; an agent that does not exist", async (t) => {
  const dir = t.testdir({})
  const agent = await fakeFenceAgent(dir, 'hunter2')
  const ctx: AgentContext = { run: runAgentProcess, env: {}, fencing: fencing(agent.path), password: 'wrong' }
  t.same(await agentAnswerOf(ctx, 'cmp1'), err('Failed: Unable to obtain correct plug status or plug is not available (exit 1)'))
  await agent.set('fail-127.77.0.2', 'Failed: Connection timed out')
  t.same(await agentAnswerOf({ ...ctx, password: 'hunter2' }, 'cmp2'), err('Failed: Connection timed out (exit 1)'))
  const missing = await agentAnswerOf({ ...ctx, fencing: fencing(`${dir}/fence_nope`) }, 'cmp1')
  t.match(missing, { kind: 'error', message: /^could not be run: .*ENOENT/ })
})

t.test('the runner: an agent that does not answer is killed at its timeout, with what it started', async (t) => {
  const dir = t.testdir({})
  const agent = await fakeFenceAgent(dir, 'hunter2')
  await agent.set('hang-127.77.0.1', 'yes')
  const ctx: AgentContext = { run: runAgentProcess, env: {}, fencing: fencing(agent.path), password: 'hunter2' }
  const start = Date.now()
  t.same(await runFenceAgent(ctx, optionsOf(ctx, 'cmp1'), 'status', 300), err('no answer in time: killed'))
  t.ok(Date.now() - start < 5000, 'not the 30 s it would sleep')
  const child = Number((await agent.read('child-127.77.0.1')).trim())
  t.ok(child > 0, 'the agent started a child')
  // Gone, or a zombie left for init to reap: killed either way.
  const state = await readFile(`/proc/${child}/stat`, 'utf8').then(
    (s) => s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3),
    () => 'gone',
  )
  t.ok(state === 'gone' || state === 'Z', `its child is killed too (${state})`)
})

const clock = { now: () => new Date(), sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)) }

t.test('fenceHost: power off, then status until the agent reports off', async (t) => {
  const dir = t.testdir({})
  const agent = await fakeFenceAgent(dir, 'hunter2')
  await agent.set('lag-127.77.0.1', '3') // three status runs still answer on after the off
  const ctx: AgentContext = { run: runAgentProcess, env: {}, fencing: fencing(agent.path), password: 'hunter2' }
  const result = await fenceHost(ctx, clock, optionsOf(ctx, 'cmp1'))
  t.match(result, { fenced: true })
  t.same(
    result.runs.map((r) => [r.action, r.answer.kind]),
    [
      ['off', 'done'],
      ['status', 'on'],
      ['status', 'on'],
      ['status', 'on'],
      ['status', 'off'],
    ],
  )
  t.same(await agent.actions(), ['127.77.0.1 off', ...Array(4).fill('127.77.0.1 status')], 'the agent got one power-off')
})

t.test('fenceHost: a power that never drops fails at the timeout; a refused off fails at once', async (t) => {
  const dir = t.testdir({})
  const agent = await fakeFenceAgent(dir, 'hunter2')
  await agent.set('lag-127.77.0.1', '1000000')
  const ctx: AgentContext = {
    run: runAgentProcess,
    env: {},
    fencing: fencing(agent.path, { timeout: 0.5, statusInterval: 0.1 }),
    password: 'hunter2',
  }
  const slow = await fenceHost(ctx, clock, optionsOf(ctx, 'cmp1'))
  t.match(slow, { fenced: false, reason: /^power off not confirmed within 0\.5 s: last status: on \(\d+ status runs\)$/ })
  t.ok(slow.elapsed >= 500 && slow.elapsed < 3000, `${slow.elapsed} ms`)
  t.ok(slow.runs.length >= 3 && slow.runs.length <= 7, `${slow.runs.length} runs: every statusInterval, not in a busy loop`)

  const refused = await fenceHost({ ...ctx, password: 'wrong' }, clock, optionsOf(ctx, 'cmp2'))
  t.same(refused.runs.length, 1, 'no status after a refused off')
  t.equal(refused.reason, 'power off failed: Failed: Unable to obtain correct plug status or plug is not available (exit 1)')
})
