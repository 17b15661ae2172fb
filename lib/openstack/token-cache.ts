import { readFile, unlink } from 'node:fs/promises'
import { writeFileAtomic } from '../state/atomic-file.js'
import { CachedTokenSchema, type TokenCache } from './keystone.js'

/** The Keystone token kept between runs, readable by the monitor's user only. */
export function fileTokenCache(path: string): TokenCache {
  return {
    async load() {
      try {
        const parsed = CachedTokenSchema.safeParse(JSON.parse(await readFile(path, 'utf8')))
        return parsed.success ? parsed.data : undefined
      } catch {
        return undefined
      }
    },
    save: (token) => writeFileAtomic(path, JSON.stringify(token), 0o600),
    clear: () => unlink(path).catch(() => {}),
  }
}
