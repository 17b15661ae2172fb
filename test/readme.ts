/**
 * The README's module map (Development → Layout) stays true: it names every module in handlers/
 * and lib/, and nothing that is not there.
 */
import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const modules = (dir: string) =>
  readdirSync(join(root, dir))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => `${dir}/${f}`)
const readme = readFileSync(join(root, 'README.md'), 'utf8')
const development = readme.slice(readme.indexOf('\n## Development'))
/** The layout list's entries: lines "- `lib/x.ts` — …" in the Development section. */
const listed = [...development.matchAll(/^\s*- `((?:handlers|lib)\/[^`]+\.ts)` /gm)].map((m) => m[1]!)

t.test('every module in handlers/ and lib/ is in the layout list', async (t) => {
  const missing = [...modules('handlers'), ...modules('lib')].filter((m) => !listed.includes(m))
  t.same(missing, [], 'README.md, Development → Layout: add a line for each of these')
})

t.test('every module in the layout list exists, and is listed once', async (t) => {
  t.same(
    listed.filter((m) => !existsSync(join(root, m))),
    [],
    'README.md, Development → Layout: these are not in the tree',
  )
  t.same(
    listed.filter((m, i) => listed.indexOf(m) !== i),
    [],
    'listed twice',
  )
})
