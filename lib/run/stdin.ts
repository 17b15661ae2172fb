/** Reading the watch's stdin, for the quiet run (lib/run/quiet-run.ts) and every other run alike. */
import { readSync } from 'node:fs'

/**
 * All of stdin, read with plain read(2) calls of 1 MiB: for the 35 MB a 10,000-node cluster
 * sends, the stream machinery's 64 KiB chunks cost more than the read itself. A stdin that is
 * non-blocking (EAGAIN) is waited for, never cut short. Reading stops once past maxBytes (the
 * caller rejects that much): an endless stdin must not exhaust memory.
 */
export function readStdinSync(maxBytes: number): Buffer {
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
