/** The real side effects, for the bundles' entry points. */
import { execFile, spawn } from 'node:child_process'
import { closeSync, readSync, writeSync } from 'node:fs'
import { readFile, stat, unlink } from 'node:fs/promises'
import { openAppend, openWorkerStderr } from './append-file.js'
import { writeFileAtomic } from './atomic-file.js'
import type { InstallDeps } from './install-watches.js'
import { realConfigEnv } from './config.js'
import type { Fetch } from './http.js'
import type { Deps } from './monitor.js'

/**
 * All of stdin, read with plain read(2) calls of 1 MiB: for the 35 MB a 10,000-node cluster
 * sends, the stream machinery's 64 KiB chunks cost more than the read itself. A stdin that is
 * non-blocking (EAGAIN) is waited for, never cut short. Reading stops once past maxBytes (the
 * caller rejects that much): an endless stdin must not exhaust memory.
 */
function readStdinSync(maxBytes: number): Buffer {
  const chunks: Buffer[] = []
  let total = 0
  let buf = Buffer.allocUnsafe(1 << 20)
  let used = 0
  for (;;) {
    if (used === buf.length) {
      chunks.push(buf)
      buf = Buffer.allocUnsafe(Math.min(buf.length * 2, 16 << 20))
      used = 0
    }
    if (total > maxBytes) break
    let n: number
    try {
      n = readSync(0, buf, used, buf.length - used, null)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EAGAIN') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5)
        continue
      }
      if (code === 'EOF') break
      throw err
    }
    if (n === 0) break
    used += n
    total += n
  }
  chunks.push(buf.subarray(0, used))
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
}

const stderrLine = (line: string) => {
  process.stderr.write(`${line}\n`)
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
      const { Agent } = await import('node:https')
      return new Agent({ ca, rejectUnauthorized: !insecure, keepAlive: true })
    },
    spawnWorker: (configPath, stateDir) => {
      const script = process.argv[1]
      if (!script) return
      // Its log lines go to logFile like every run's; its stderr keeps what nothing else would
      // (a crash's stack trace).
      const { fd, warning } = openWorkerStderr(stateDir)
      if (warning) stderrLine(JSON.stringify({ time: new Date().toISOString(), level: 'warn', msg: warning, stateDir }))
      const child = spawn(process.execPath, [script, '--worker', '--config', configPath], {
        detached: true,
        stdio: ['ignore', 'ignore', fd ?? 'ignore'],
      })
      if (fd !== undefined) closeSync(fd)
      child.on('error', () => {}) // the next run starts one again; the outbox keeps the work
      child.unref()
    },
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
    configEnv: realConfigEnv,
  }
}

/** install-watches' side effects: the agents' config files (0644: the agent's user reads them; no secret in them), atomic; the consul binary. */
export function realInstallDeps(deps: Deps): InstallDeps {
  return {
    stdout: deps.stdout,
    configEnv: deps.configEnv,
    readExisting: (path) =>
      readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined
        throw err
      }),
    writeFile: (path, text) => (text === undefined ? unlink(path).catch(() => {}) : writeFileAtomic(path, text, 0o644)),
    isDir: async (path) => (await stat(path).catch(() => undefined))?.isDirectory() ?? false,
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
