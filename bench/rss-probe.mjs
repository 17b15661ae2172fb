// Loaded with `node --import`: on exit, appends this process's peak RSS (kB) and CPU time to
// the file named by $BENCH_RSS_FILE. process.exit() still runs 'exit' listeners.
import { appendFileSync } from 'node:fs'

const file = process.env.BENCH_RSS_FILE
if (file) {
  process.on('exit', () => {
    const u = process.resourceUsage()
    appendFileSync(file, `${JSON.stringify({ maxRssKb: u.maxRSS, userUs: u.userCPUTime, systemUs: u.systemCPUTime })}\n`)
  })
}
