/**
 * Section 3, scale: generated payloads for N hosts × 10 service checks on three networks.
 * Per size: the first runs (every host first seen: the ledger is written), then steady runs
 * of the storage handler with nothing to decide, alternating with the floor (bench/floor.mjs:
 * read the same stdin, JSON.parse it). Wall time and peak RSS of each child.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { HANDLER, offlineConfig } from './common.js'
import { checksPayload } from './payloads.js'
import { FLOOR, runOk } from './proc.js'
import { round, summarize, type Summary } from './stats.js'

export interface ScaleRow {
  hosts: number
  checks: number
  payloadMB: number
  /** The three first runs (management, tenant, storage), every host new: ledger written, one log line per host. */
  firstRunMs: number[]
  handlerMs: Summary
  floorMs: Summary
  /** handler / floor per alternating pair. */
  ratio: Summary
  handlerRssMB: Summary
  floorRssMB: Summary
  handlerCpuMs: Summary
}

export async function scale(opts: { sizes: number[]; reps: number; dir: string; log: (m: string) => void }): Promise<ScaleRow[]> {
  const rows: ScaleRow[] = []
  for (const hosts of opts.sizes) {
    const dir = join(opts.dir, `hosts-${hosts}`)
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    const config = offlineConfig(join(dir, 'monitor'))
    const files: Record<string, string> = {}
    let bytes = 0
    for (const network of ['management', 'tenant', 'storage']) {
      const text = checksPayload({ hosts, servicesPerHost: 10 })
      bytes = text.length
      files[network] = join(dir, `${network}.json`)
      writeFileSync(files[network]!, text)
    }
    opts.log(`scale: ${hosts} hosts, ${(bytes / 1e6).toFixed(1)} MB per network`)
    const firstRunMs: number[] = []
    for (const network of ['management', 'tenant', 'storage']) {
      firstRunMs.push(
        round((await runOk(process.execPath, [HANDLER, '--network', network, '--config', config], { pipeFile: files[network] })).ms, 1),
      )
    }
    const handler: number[] = []
    const floor: number[] = []
    const hRss: number[] = []
    const fRss: number[] = []
    const hCpu: number[] = []
    for (let i = 0; i < opts.reps; i++) {
      const f = await runOk(process.execPath, [FLOOR], { pipeFile: files.storage, probe: true })
      const h = await runOk(process.execPath, [HANDLER, '--network', 'storage', '--config', config], {
        pipeFile: files.storage,
        probe: true,
      })
      handler.push(h.ms)
      floor.push(f.ms)
      hRss.push((h.maxRssKb ?? NaN) / 1024)
      fRss.push((f.maxRssKb ?? NaN) / 1024)
      hCpu.push(h.cpuMs ?? NaN)
    }
    rows.push({
      hosts,
      checks: (hosts + 1) * 11,
      payloadMB: round(bytes / 1e6, 1),
      firstRunMs,
      handlerMs: summarize(handler, 1),
      floorMs: summarize(floor, 1),
      ratio: summarize(
        handler.map((h, i) => h / floor[i]!),
        2,
      ),
      handlerRssMB: summarize(hRss, 1),
      floorRssMB: summarize(fRss, 1),
      handlerCpuMs: summarize(hCpu, 1),
    })
    rmSync(join(dir, 'management.json'), { force: true })
    rmSync(join(dir, 'tenant.json'), { force: true })
  }
  return rows
}
