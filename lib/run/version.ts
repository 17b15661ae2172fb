/** The package's version, for `--version` and the metrics textfile's build_info. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { z } from 'zod'

/** Set by build.mjs (esbuild `define`): a bundle copied on its own still knows its version. */
declare const MASAKARI_CONSUL_VERSION: string | undefined

let fromSource: string | undefined

/** Run from source (the tests), the version is package.json's, two directories up (read once). */
export function packageVersion(): string {
  if (typeof MASAKARI_CONSUL_VERSION === 'string') return MASAKARI_CONSUL_VERSION
  if (fromSource !== undefined) return fromSource
  const text = readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')
  fromSource = z.object({ version: z.string() }).parse(JSON.parse(text)).version
  return fromSource
}
