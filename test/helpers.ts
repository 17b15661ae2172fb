/** Recording side effects for in-process tests of the handlers and lib. */
import { readdirSync, readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stringify } from 'yaml'
import type { Fetch, HttpResponse } from '../lib/openstack/masakari.js'
import type { Deps } from '../lib/run/deps.js'
import type { ConfigEnv } from '../lib/config/config.js'
import type { AgentProcess } from '../lib/fence/fence-agent.js'
import { runAgentProcess } from '../lib/fence/agent-process.js'

export interface Recorded {
  stdout: string[]
  stderr: string[]
  spawned: string[]
  logFile: string[]
  requests: Array<{ url: string; method: string; headers: Record<string, string>; body?: unknown }>
  /** Every fence agent started: its file, stdin and environment (there are no arguments to record); fakeDeps sets it. */
  agents?: AgentProcess[]
  /** The config of each fence check the pulse started in the background (`--pulse --fence-check`); fakeDeps sets it. */
  fenceChecks?: string[]
}

export interface FakeOptions {
  stdin?: string | Uint8Array
  now?: () => Date
  fetch?: Fetch
  env?: Record<string, string>
}

export function fakeDeps(opts: FakeOptions = {}): Deps & { rec: Recorded } {
  const rec: Recorded = { stdout: [], stderr: [], spawned: [], logFile: [], requests: [], agents: [], fenceChecks: [] }
  return {
    rec,
    readStdin: async () => (typeof opts.stdin === 'string' || opts.stdin === undefined ? Buffer.from(opts.stdin ?? '[]') : opts.stdin),
    now: opts.now ?? (() => new Date('2026-11-25T12:00:00.000Z')),
    fetch: async () => opts.fetch ?? refuseFetch,
    tlsAgent: async () => undefined,
    spawnWorker: (config) => rec.spawned.push(config),
    spawnFenceCheck: (config) => rec.fenceChecks?.push(config),
    sleep: async () => {},
    stdout: (t) => rec.stdout.push(t),
    stderr: (l) => rec.stderr.push(l),
    appendLog: (_f, l) => rec.logFile.push(l),
    // Recorded, then run for real: the tests' fence agent is a shell script in their testdir.
    runAgent: (run) => {
      rec.agents?.push(run)
      return runAgentProcess(run)
    },
    configEnv: { readFile: (p) => readFile(p, 'utf8'), env: opts.env ?? {}, hostname: () => 'controller' },
  }
}

const refuseFetch: Fetch = async (url) => {
  throw new Error(`connect ECONNREFUSED (test: no network for ${url})`)
}

export function response(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponse {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]))
  return {
    status,
    headers: { get: (name) => lower[name.toLowerCase()] ?? null },
    text: async () => (typeof body === 'string' ? body : JSON.stringify(body)),
  }
}

/** A fetch answering from a script of responses, recording every request. */
export function scriptedFetch(
  rec: Recorded,
  answer: (url: string, method: string, nth: number) => HttpResponse | Promise<HttpResponse>,
): Fetch {
  let n = 0
  return async (url, init) => {
    rec.requests.push({
      url,
      method: init.method,
      headers: init.headers,
      body: init.body === undefined ? undefined : JSON.parse(init.body),
    })
    return answer(url, init.method, n++)
  }
}

/** Guards that never hold anything back: the pipeline's own behaviour, for tests not about guards. */
export const GUARDS_OFF = {
  hold: { recovery: 0, back: 0 },
  burst: { quietWindow: 0 },
  isolation: { maxDownFraction: 1 },
  rateLimit: { maxRecoveries: 0 },
}

export function configYaml(stateDir: string, extra: Record<string, unknown> = {}): string {
  return stringify({
    stateDir,
    hostname: 'controller',
    guards: GUARDS_OFF,
    masakari: {
      authUrl: 'http://127.0.0.1:35000/v3',
      auth: {
        username: 'masakari-consul',
        userDomainName: 'Default',
        password: 'secret',
        projectName: 'service',
        projectDomainName: 'Default',
      },
      ...((extra.masakari as object | undefined) ?? {}),
    },
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'masakari')),
  })
}

export function check(node: string, status: string, checkId = 'serfHealth', extra: Record<string, unknown> = {}) {
  return {
    Node: node,
    CheckID: checkId,
    Name: checkId === 'serfHealth' ? 'Serf Health Status' : checkId,
    Status: status,
    Notes: '',
    Output: '',
    ServiceID: '',
    ServiceName: '',
    ServiceTags: [],
    Type: '',
    Definition: {},
    CreateIndex: 6,
    ModifyIndex: 6,
    ...extra,
  }
}

/** The checks payload a watch writes for nodes in the given serfHealth states. */
export function payload(states: Record<string, 'passing' | 'critical'>, maintenance: string[] = []): string {
  const checks: unknown[] = []
  for (const [node, status] of Object.entries(states)) {
    checks.push(check(node, status))
    checks.push(check(node, 'passing', 'service:nova-compute', { ServiceID: 'nova-compute', ServiceName: 'nova-compute' }))
  }
  for (const node of maintenance) checks.push(check(node, 'critical', '_node_maintenance'))
  return JSON.stringify(checks)
}

export async function readState(stateDir: string): Promise<string | undefined> {
  return readFile(join(stateDir, 'state.json'), 'utf8').catch(() => undefined)
}

/** One sample of a Prometheus text exposition: its family's name, labels and value. */
export interface PromSample {
  name: string
  labels: Record<string, string>
  value: number
}

/**
 * Checks text against the Prometheus text exposition format (0.0.4), as node_exporter's
 * textfile collector parses it: HELP and TYPE at most once per family and before its samples,
 * a family's samples together, valid metric and label names, escaped label values, float
 * values, no duplicate series, a final newline. Throws naming the line; returns the samples
 * and each family's type.
 */
export function parsePrometheusText(text: string): { samples: PromSample[]; types: Map<string, string> } {
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
  const VALUE = '(?:[+-]?(?:\\d+\\.?\\d*(?:[eE][+-]?\\d+)?|\\.\\d+(?:[eE][+-]?\\d+)?)|NaN|[+-]Inf)'
  const sampleLine = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (${VALUE})(?: -?\\d+)?$`)
  const labelPair = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)/
  if (text !== '' && !text.endsWith('\n')) throw new Error('the text does not end with a newline')
  const types = new Map<string, string>()
  const helps = new Set<string>()
  const seen = new Set<string>()
  const closed = new Set<string>()
  let current: string | undefined
  const samples: PromSample[] = []
  const enter = (family: string, n: number) => {
    if (family === current) return
    if (closed.has(family)) throw new Error(`line ${n}: ${family} continues after another family`)
    if (current !== undefined) closed.add(current)
    current = family
  }
  text
    .slice(0, -1)
    .split('\n')
    .forEach((line, i) => {
      const n = i + 1
      const meta = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line)
      if (meta) {
        const [, kind, family, rest] = meta as unknown as [string, string, string, string]
        enter(family, n)
        if (kind === 'HELP') {
          if (helps.has(family)) throw new Error(`line ${n}: second HELP for ${family}`)
          if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`line ${n}: bad escape in HELP`)
          helps.add(family)
        } else {
          if (types.has(family)) throw new Error(`line ${n}: second TYPE for ${family}`)
          if (samples.some((s) => s.name === family)) throw new Error(`line ${n}: TYPE after samples of ${family}`)
          if (!/^(counter|gauge|histogram|summary|untyped)$/.test(rest)) throw new Error(`line ${n}: unknown type ${rest}`)
          types.set(family, rest)
        }
        return
      }
      if (line.startsWith('#')) return // a comment
      const m = sampleLine.exec(line)
      if (!m) throw new Error(`line ${n}: not a sample: ${JSON.stringify(line)}`)
      const [, name, rawLabels = '', value] = m as unknown as [string, string, string | undefined, string]
      enter(name, n)
      const labels: Record<string, string> = {}
      for (let rest = rawLabels; rest !== ''; ) {
        const p = labelPair.exec(rest)
        if (!p) throw new Error(`line ${n}: bad labels: ${rawLabels}`)
        if (p[1]! in labels) throw new Error(`line ${n}: label ${p[1]} twice`)
        labels[p[1]!] = p[2]!.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c))
        rest = rest.slice(p[0].length)
      }
      const series = `${name}${JSON.stringify(Object.entries(labels).sort())}`
      if (seen.has(series)) throw new Error(`line ${n}: duplicate series ${series}`)
      seen.add(series)
      samples.push({ name, labels, value: Number(value.replace('Inf', 'Infinity')) })
    })
  return { samples, types }
}

/** A recorded answer of the real Keystone or Masakari (test/fixtures/recorded/NAME.json; RECORD_FIXTURES=1 rewrites them). */
export function recordedFixture(name: string) {
  return JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'recorded', `${name}.json`), 'utf8'))
}

/** Keystone issuing a token whose catalog has Masakari at http://127.0.0.1:15868/v1/p. */
export const keystoneAnswer = () =>
  response(
    201,
    {
      token: {
        expires_at: '2026-11-25T13:00:00.000Z',
        catalog: [{ type: 'instance-ha', endpoints: [{ interface: 'public', url: 'http://127.0.0.1:15868/v1/p' }] }],
      },
    },
    { 'X-Subject-Token': 'tok' },
  )

/**
 * A config's files and environment in memory; `modes` (else 0600) for the files whose mode the
 * secret rule checks, and without `modes` no mode is known (no such warning).
 */
export function memoryConfigEnv(
  files: Record<string, string>,
  vars: Record<string, string> = {},
  modes?: Record<string, number>,
): ConfigEnv {
  return {
    readFile: async (p) => {
      if (p in files) return files[p]!
      throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), { code: 'ENOENT' })
    },
    env: vars,
    hostname: () => 'ctl1',
    ...(modes ? { fileMode: async (p: string) => modes[p] ?? 0o600 } : {}),
  }
}

/**
 * Kills every process whose command line holds `arg` (a test's config path: the detached workers
 * a handler run started) and resolves once they are gone, so that none writes into a test
 * directory while tap removes it.
 */
export async function killProcessesWith(arg: string, timeoutMs = 5_000): Promise<void> {
  const pids = () =>
    readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name) && Number(name) !== process.pid)
      .filter((name) => {
        try {
          return readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(arg)
        } catch {
          return false // gone meanwhile
        }
      })
      .map(Number)
  const deadline = Date.now() + timeoutMs
  for (let left = pids(); left.length > 0; left = pids()) {
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // exited meanwhile
      }
    }
    if (Date.now() > deadline) throw new Error(`processes with ${arg} still running after ${timeoutMs} ms: ${left.join(', ')}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
