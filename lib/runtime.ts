/** The real side effects, for the bundles' entry points. */
import { spawn } from 'node:child_process'
import { appendFileSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { realConfigEnv } from './config.js'
import type { Fetch } from './masakari.js'
import type { Deps } from './monitor.js'

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export function realDeps(): Deps {
  const madeDirs = new Set<string>()
  return {
    readStdin: () => readAll(process.stdin),
    now: () => new Date(),
    // Loaded on first use: a run that sends nothing does not pay for the HTTP client.
    fetch: async () => (await import('node-fetch')).default as unknown as Fetch,
    tlsAgent: async (ca, insecure) => {
      if (ca === undefined && !insecure) return undefined
      const { Agent } = await import('node:https')
      return new Agent({ ca, rejectUnauthorized: !insecure, keepAlive: true })
    },
    spawnDeliverer: (configPath) => {
      const script = process.argv[1]
      if (!script) return
      const child = spawn(process.execPath, [script, '--deliver', '--config', configPath], { detached: true, stdio: 'ignore' })
      child.on('error', () => {}) // the next run starts one again; the outbox keeps the work
      child.unref()
    },
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    stdout: (text) => process.stdout.write(text),
    stderr: (line) => process.stderr.write(line + '\n'),
    appendLog: (file, line) => {
      const dir = dirname(file)
      if (!madeDirs.has(dir)) {
        mkdirSync(dir, { recursive: true })
        madeDirs.add(dir)
      }
      appendFileSync(file, line + '\n')
    },
    configEnv: realConfigEnv,
  }
}
