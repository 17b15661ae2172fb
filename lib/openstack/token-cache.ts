import { readFile, unlink } from 'node:fs/promises'
import { writeFileAtomic } from '../state/atomic-file.js'
import { type CachedToken, CachedTokenSchema, type TokenCache } from './keystone.js'

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

/**
 * For a command that only reads (status, explain): the kept token is used, a new one is kept in
 * memory only, so that a run as root leaves no root-owned token.json for Consul's user.
 */
export function readOnlyTokenCache(kept: TokenCache): TokenCache {
  // undefined: not asked yet (the kept one stands); null: cleared (a refused token is not loaded again).
  let held: CachedToken | null | undefined
  return {
    load: async () => (held === undefined ? kept.load() : (held ?? undefined)),
    save: async (token) => {
      held = token
    },
    clear: async () => {
      held = null
    },
  }
}
