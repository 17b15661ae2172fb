/** The real side effects, for the bundles' entry points. */
import { execFile, spawn } from 'node:child_process'
import { closeSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { chown, readFile, realpath, stat, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { openAppend, openWorkerStderr } from '../state/append-file.js'
import { writeFileAtomic } from '../state/atomic-file.js'
import { type InstallDeps, type PathStat, runsScriptChecks } from './install-watches.js'
import { realConfigEnv } from '../config/config.js'
import type { Fetch } from '../base/http.js'
import { agentUrl } from '../consul/consul-api.js'
import type { Deps } from '../run/deps.js'
import { UsageError } from '../run/cli.js'
import { readStdinSync } from '../run/stdin.js'
import { runAgentProcess } from '../fence/agent-process.js'

const stderrLine = (line: string) => {
  process.stderr.write(`${line}\n`)
}

/**
 * The worker is run by /bin/sh so that its failure (any exit but 0, a crash) is written down as
 * `failed-worker` for the pulse check, as watch.sh does for a watch run: a worker that fails
 * each time it starts would otherwise leave its work undone behind a passing check. A worker
 * that ends well removes it. `$1` is the state directory, the rest the command.
 */
const NOTE_WORKER_FAILURE = [
  'state=$1; shift',
  '"$@"; rc=$?',
  'if [ "$rc" -eq 0 ]; then rm -f "$state/failed-worker"; exit 0; fi',
  'printf "critical\\nthe worker failed (exit %s) at %s: its stack trace, if any, is in %s/worker.stderr\\n" "$rc" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$state" >"$state/failed-worker.$$" && mv -f "$state/failed-worker.$$" "$state/failed-worker"',
  'exit "$rc"',
].join('\n')

/**
 * This bundle (`process.argv[1]`) again, in a detached process that outlives the run. Its log
 * lines go to logFile like every run's; its stderr to worker.stderr, which keeps what nothing
 * else would (a crash's stack trace).
 */
function spawnDetached(stateDir: string, command: (script: string) => [string, string[]]): void {
  const script = process.argv[1]
  if (!script) return
  const { fd, warning } = openWorkerStderr(stateDir)
  if (warning) stderrLine(JSON.stringify({ time: new Date().toISOString(), level: 'warn', msg: warning, stateDir }))
  const [file, args] = command(script)
  const child = spawn(file, args, { detached: true, stdio: ['ignore', 'ignore', fd ?? 'ignore'] })
  if (fd !== undefined) closeSync(fd)
  child.on('error', () => {}) // the next run starts one again; the outbox (or the due check) keeps the work
  child.unref()
}

export function realDeps(): Deps {
  const logFds = new Map<string, number>()
  return {
    readStdin: async (maxBytes) => readStdinSync(maxBytes),
    now: () => new Date(),
    // node-fetch is loaded on first use: a run that sends nothing and asks no agent does not
    // pay for it.
    fetch: async () => (await import('node-fetch')).default as unknown as Fetch,
    tlsAgent: async (ca, insecure) => {
      if (ca === undefined && !insecure) return undefined
      // Through require, not import(): import() has no loader in the handler's full part (see
      // lib/run/embedded.ts). https is loaded only when TLS options are set.
      const { Agent } = createRequire(import.meta.url)('node:https') as typeof import('node:https')
      return new Agent({ ca, rejectUnauthorized: !insecure, keepAlive: true })
    },
    spawnWorker: (configPath, stateDir) =>
      spawnDetached(stateDir, (script) => [
        '/bin/sh',
        ['-c', NOTE_WORKER_FAILURE, 'worker', stateDir, process.execPath, script, '--worker', '--config', configPath],
      ]),
    // Not written down when it fails, as the worker is: the next due deep look starts another.
    spawnFenceCheck: (configPath, stateDir) =>
      spawnDetached(stateDir, (script) => [process.execPath, [script, '--pulse', '--fence-check', '--config', configPath]]),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    stdout: (text) => process.stdout.write(text),
    stderr: stderrLine,
    // One O_APPEND descriptor per file for the whole run (a first sight of 10,000 hosts logs
    // 10,000 lines); each line is written whole at the end of the file, as appendFileSync did.
    // Never through a symlink (openAppend refuses it: the logger warns once).
    appendLog: (file, line) => {
      let fd = logFds.get(file)
      if (fd === undefined) {
        fd = openAppend(file)
        logFds.set(file, fd)
      }
      const data = Buffer.from(`${line}\n`)
      for (let done = 0; done < data.length; ) done += writeSync(fd, data, done)
    },
    runAgent: runAgentProcess,
    configEnv: realConfigEnv,
  }
}

/**
 * install-watches' side effects: the agents' config files, atomic; the consul binary. 0644, but a
 * watch holding the ACL token is 0640 with the state directory's group (the agents' user owns it):
 * Debian's /etc/consul.d is root 0755, so the directory alone would not keep the token from others.
 */
export function realInstallDeps(deps: Deps): InstallDeps {
  return {
    stdout: deps.stdout,
    configEnv: deps.configEnv,
    readExisting: (path) =>
      readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined
        throw err
      }),
    writeFile: writeAgentConfig,
    statChain,
    isDir: async (path) => (await stat(path).catch(() => undefined))?.isDirectory() ?? false,
    scriptChecks: async (addr, watchToken) => {
      try {
        const fetch = await deps.fetch()
        // The watches' token (agent:read in the monitor's policy); this shell's when they carry none.
        const token = watchToken ?? deps.configEnv.env.CONSUL_HTTP_TOKEN
        // Plain http unless the address says https: this install's Consul TLS settings are not loaded here.
        const res = await fetch(`${agentUrl(addr, { ssl: false })}/v1/agent/self`, {
          method: 'GET',
          headers: token ? { 'X-Consul-Token': token } : {},
          signal: AbortSignal.timeout(5000),
        })
        if (res.status === 403) return 'forbidden'
        return runsScriptChecks(await res.text())
      } catch {
        return undefined
      }
    },
    // A non-zero exit is an answer (the output says why); only a consul that cannot be run rejects.
    exec: (file, args) =>
      new Promise((resolve, reject) => {
        execFile(file, args, (err, stdout, stderr) => {
          const code = (err as NodeJS.ErrnoException | null)?.code
          if (typeof code === 'string') reject(err)
          else resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` })
        })
      }),
  }
}

/** An agent config file, atomic; one holding the ACL token 0640 with the group of `groupOf` (see realInstallDeps). */
async function writeAgentConfig(path: string, text: string | undefined, groupOf?: string): Promise<void> {
  if (text === undefined) return unlink(path).catch(() => {})
  if (groupOf === undefined) return writeFileAtomic(path, text, 0o644)
  const gid = await stat(groupOf).then(
    (s) => s.gid,
    (err: Error) => {
      throw new UsageError(
        `${path} holds the ACL token, readable only by the agents' group, taken from the state directory: ${err.message} (create it, owned by the agents' user, first)`,
      )
    },
  )
  await writeFileAtomic(path, text, 0o640)
  await chown(path, process.getuid?.() ?? 0, gid)
}

/** The path (symlinks followed) and every directory above it: owner, group, mode. */
async function statChain(path: string): Promise<PathStat[] | undefined> {
  let file: string
  try {
    file = await realpath(path)
  } catch {
    return undefined
  }
  const chain: PathStat[] = []
  for (let p = file; ; p = dirname(p)) {
    const s = await stat(p)
    chain.push({ path: p, uid: s.uid, gid: s.gid, mode: s.mode })
    if (p === dirname(p)) return chain
  }
}
