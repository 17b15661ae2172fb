// The floor a handler run is compared with: a bare `node` that reads the same stdin the way
// the handler does (read(2) in 1 MiB steps, lib/commands/runtime.ts) and JSON.parses it. Nothing else.
import { readSync } from 'node:fs'

const chunks = []
let buf = Buffer.allocUnsafe(1 << 20)
let used = 0
for (;;) {
  if (used === buf.length) {
    chunks.push(buf)
    buf = Buffer.allocUnsafe(Math.min(buf.length * 2, 16 << 20))
    used = 0
  }
  let n
  try {
    n = readSync(0, buf, used, buf.length - used, null)
  } catch (err) {
    if (err.code === 'EAGAIN') continue
    if (err.code === 'EOF') break
    throw err
  }
  if (n === 0) break
  used += n
}
chunks.push(buf.subarray(0, used))
const checks = JSON.parse(Buffer.concat(chunks).toString('utf8'))
if (!Array.isArray(checks)) process.exit(65)
