/**
 * The README's module map (Development → Layout) stays true: it names every module in handlers/
 * and lib/, and nothing that is not there.
 */
import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const modules = (dir: string) =>
  readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => `${dir}/${f}`)
/** lib/'s folders (lib/run/, lib/decide/, …): each has a line of its own above its modules. */
const folders = readdirSync(join(root, 'lib'), { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => `lib/${e.name}/`)
const readme = readFileSync(join(root, 'README.md'), 'utf8')
const development = readme.slice(readme.indexOf('\n## Development'))
/** The layout list's entries: lines "- `lib/x.ts` — …" in the Development section. */
const listed = [...development.matchAll(/^\s*- `((?:handlers|lib)\/[^`]+\.ts)` /gm)].map((m) => m[1]!)

t.test('every module in handlers/ and lib/ is in the layout list', async (t) => {
  const missing = [...modules('handlers'), ...modules('lib')].filter((m) => !listed.includes(m))
  t.same(missing, [], 'README.md, Development → Layout: add a line for each of these')
})

t.test('every folder in lib/ has its line in the layout list', async (t) => {
  const described = [...development.matchAll(/^\s*- `(lib\/[^`/]+\/)` — /gm)].map((m) => m[1]!)
  t.same(
    folders.filter((f) => !described.includes(f)),
    [],
    'README.md, Development → Layout: add a line for each of these folders',
  )
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
