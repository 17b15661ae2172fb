import { open, rename, unlink, mkdir } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'
import { randomBytes } from 'node:crypto'

/**
 * Readers see the old file or the new one, never a torn one, and a crash after this returns
 * keeps the new one: write a temp file beside it, fsync it, rename over, fsync the directory.
 */
export async function writeFileAtomic(
  path: string,
  data: string,
  mode = 0o644,
  opts: {
    /** Runs just before the rename (e.g. to check a lock is still ours); a throw leaves the old file. */
    beforeRename?: () => Promise<void>
  } = {},
): Promise<void> {
  const dir = dirname(path)
  await mkdir(dir, { recursive: true })
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  const file = await open(tmp, 'w', mode)
  try {
    await file.writeFile(data)
    await file.sync()
  } catch (err) {
    await file.close()
    await unlink(tmp).catch(() => {})
    throw err
  }
  await file.close()
  try {
    await opts.beforeRename?.()
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  const dirHandle = await open(dir, 'r')
  try {
    await dirHandle.sync()
  } finally {
    await dirHandle.close()
  }
}
