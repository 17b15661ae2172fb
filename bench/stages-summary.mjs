// Summarises the stage lines handler runs append when MASAKARI_CONSUL_STAGES names a file
// (lib/base/stages.ts): `node bench/stages-summary.mjs FILE`. Only runs that reached a POST's
// answer count (a lone failure's decisive run). Per stage: the ms since the previous one,
// median [min–max] over those runs, then node start → POST answered.
import { readFileSync } from 'node:fs'

const file = process.argv[2]
if (!file) {
  process.stderr.write('usage: node bench/stages-summary.mjs FILE\n')
  process.exit(64)
}
const runs = readFileSync(file, 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l))
  .filter((r) => r.stages.some(([name]) => name === 'POST answered'))

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const fmt = (xs) => `${median(xs).toFixed(1)} [${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}]`

// Per stage name and its occurrence in the run (a record is read more than once): the gaps.
const gaps = new Map()
const totals = []
for (const r of runs) {
  const seen = new Map()
  let previous = r.node.start
  const steps = [['node bootstrap', r.node.bootstrapComplete], ...r.stages]
  for (const [name, ms] of steps) {
    const n = (seen.get(name) ?? 0) + 1
    seen.set(name, n)
    const key = n === 1 ? name : `${name} (#${n})`
    if (!gaps.has(key)) gaps.set(key, [])
    gaps.get(key).push(ms - previous)
    previous = ms
    if (name === 'POST answered' && n === 1) totals.push(ms - r.node.start)
  }
}
process.stdout.write(`${runs.length} run(s) that reached a POST's answer; ms since the previous stage, median [min–max]\n`)
for (const [key, xs] of gaps) process.stdout.write(`${key.padEnd(48)} ${fmt(xs)}${xs.length < runs.length ? ` (${xs.length} runs)` : ''}\n`)
if (totals.length > 0) process.stdout.write(`${'node start → POST answered'.padEnd(48)} ${fmt(totals)}\n`)
