/**
 * The docs stay true: the module map (docs/development.md, Layout) names every module in
 * handlers/ and lib/, and nothing that is not there; the README stays short; and every relative
 * link in the README, docs/*.md and bench/README.md leads to a file that exists and, for an
 * `#anchor` into a .md file, to a heading it has.
 */
import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const root = join(import.meta.dirname, '..')
const modules = (dir: string) =>
  readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => `${dir}/${f}`)
/** lib/'s folders (lib/run/, lib/decide/, …): each has a line of its own above its modules. */
const folders = readdirSync(join(root, 'lib'), { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => `lib/${e.name}/`)
const devDoc = readFileSync(join(root, 'docs', 'development.md'), 'utf8')
const layout = devDoc.slice(devDoc.indexOf('\n## Layout'))
/** The layout list's entries: lines "- `lib/x.ts` — …" in the Layout section. */
const listed = [...layout.matchAll(/^\s*- `((?:handlers|lib)\/[^`]+\.ts)` /gm)].map((m) => m[1]!)

t.test('every module in handlers/ and lib/ is in the layout list', async (t) => {
  const missing = [...modules('handlers'), ...modules('lib')].filter((m) => !listed.includes(m))
  t.same(missing, [], 'docs/development.md, Layout: add a line for each of these')
})

t.test('every folder in lib/ has its line in the layout list', async (t) => {
  const described = [...layout.matchAll(/^\s*- `(lib\/[^`/]+\/)` — /gm)].map((m) => m[1]!)
  t.same(
    folders.filter((f) => !described.includes(f)),
    [],
    'docs/development.md, Layout: add a line for each of these folders',
  )
})

t.test('every module in the layout list exists, and is listed once', async (t) => {
  t.same(
    listed.filter((m) => !existsSync(join(root, m))),
    [],
    'docs/development.md, Layout: these are not in the tree',
  )
  t.same(
    listed.filter((m, i) => listed.indexOf(m) !== i),
    [],
    'listed twice',
  )
})

t.test('the README is one an operator reads in ten minutes: at most 300 lines', async (t) => {
  const lines = readFileSync(join(root, 'README.md'), 'utf8').replace(/\n$/, '').split('\n').length
  t.ok(lines <= 300, `README.md has ${lines} lines`)
})

/** The text outside fenced code blocks and inline code: links there are text, not links. */
function prose(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/``[^`]*``|`[^`\n]*`/g, '``')
}

/** GitHub's anchor for each heading of a markdown file (github-slugger's rules, repeats get -1, -2…). */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  const withoutFences = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
  for (const m of withoutFences.matchAll(/^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$/gm)) {
    const text = m[1]!
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link's text
      .replace(/<[^>]+>/g, '') // inline HTML
      .replace(/[`*]/g, '') // code and emphasis markers
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

/** Every relative link of one markdown file that leads nowhere: "file: target (why)". */
export function brokenLinks(file: string, markdown: string, read: (path: string) => string | undefined): string[] {
  const problems: string[] = []
  const text = prose(markdown)
  const targets = [
    ...[...text.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!),
    ...[...text.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/gm)].map((m) => m[1]!),
  ]
  for (const target of targets) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // https:, mailto:
    const hash = target.indexOf('#')
    const path = decodeURIComponent(hash === -1 ? target : target.slice(0, hash))
    const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1))
    const dest = path === '' ? file : resolve(dirname(file), path)
    const name = relative(root, file)
    const content = path === '' ? markdown : read(dest)
    if (content === undefined) {
      problems.push(`${name}: ${target} (no such file)`)
      continue
    }
    if (anchor !== undefined && dest.endsWith('.md') && !anchors(content).has(anchor))
      problems.push(`${name}: ${target} (no heading with that anchor in ${relative(root, dest)})`)
  }
  return problems
}

const readIfThere = (path: string) => {
  if (!existsSync(path)) return undefined
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return '' // a directory: it exists
  }
}

t.test('every relative link in README.md, docs/*.md and bench/README.md leads somewhere', async (t) => {
  const files = [
    join(root, 'README.md'),
    join(root, 'bench', 'README.md'),
    ...readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => join(root, 'docs', f)),
  ]
  t.ok(files.length >= 5, 'README, bench/README and the docs')
  let links = 0
  const problems: string[] = []
  for (const file of files) {
    const markdown = readFileSync(file, 'utf8')
    links += [...prose(markdown).matchAll(/\]\(/g)].length
    problems.push(...brokenLinks(file, markdown, readIfThere))
  }
  t.ok(links > 20, `${links} links read`)
  t.same(problems, [], 'fix these links, or the headings they point to')
})

t.test('the link check can fail: a missing file, a missing heading, a heading anchor as GitHub makes it', async (t) => {
  const file = join(root, 'docs', 'example.md')
  const markdown = [
    '# Title',
    '## Configuration reference (`/etc/masakari-consul/config.yaml`)',
    "## Masakari's answers",
    '## 1. Layout: three Consul agents per host',
    '## Logs',
    '## Logs',
    '```sh',
    '# not a heading',
    '```',
    '[a](#configuration-reference-etcmasakari-consulconfigyaml) [b](#masakaris-answers)',
    '[c](#1-layout-three-consul-agents-per-host) [d](#logs) [e](#logs-1) [f](../README.md)',
    '[g](#not-a-heading) [h](missing.md) [i](../README.md#no-such-heading) `[j](not-a-link.md)`',
    '[k](https://example.org/x.md#y)',
  ].join('\n')
  t.same(brokenLinks(file, markdown, readIfThere), [
    'docs/example.md: #not-a-heading (no heading with that anchor in docs/example.md)',
    'docs/example.md: missing.md (no such file)',
    'docs/example.md: ../README.md#no-such-heading (no heading with that anchor in README.md)',
  ])
})
