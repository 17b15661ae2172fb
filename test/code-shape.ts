/**
 * The shape the codebase promises a maintainer: no function in lib/ or handlers/ longer than
 * MAX_FUNCTION_LINES (pure decisions stay small enough to read and to test by table).
 */
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import ts from 'typescript'

export const MAX_FUNCTION_LINES = 60
const ROOT = join(import.meta.dirname, '..')

/** Every named function, method or function-valued const in a source file, with its length in lines. */
export function functionLengths(file: string, text: string): Array<{ name: string; line: number; lines: number }> {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true)
  const found: Array<{ name: string; line: number; lines: number }> = []
  const lineOf = (pos: number) => source.getLineAndCharacterOfPosition(pos).line + 1
  const visit = (node: ts.Node, name?: string) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const label = (node.name && ts.isIdentifier(node.name) ? node.name.text : undefined) ?? name ?? '(anonymous)'
      const start = lineOf(node.getStart(source))
      found.push({ name: label, line: start, lines: lineOf(node.getEnd()) - start + 1 })
    }
    const childName = ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) ? node.name.text : undefined
    ts.forEachChild(node, (child) => visit(child, childName))
  }
  visit(source)
  return found
}

t.test(`no function in lib/ or handlers/ is over ${MAX_FUNCTION_LINES} lines`, async (t) => {
  const long: string[] = []
  for (const dir of ['lib', 'handlers']) {
    // recursive: lib/ is in folders (lib/run/, lib/decide/, …)
    for (const f of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'))) {
      const path = join(dir, f)
      for (const fn of functionLengths(path, readFileSync(join(ROOT, path), 'utf8'))) {
        if (fn.lines > MAX_FUNCTION_LINES) long.push(`${path}:${fn.line} ${fn.name} (${fn.lines} lines)`)
      }
    }
  }
  t.same(long, [])
})

t.test('the measure counts a function from its first line to its last', async (t) => {
  const body = Array.from({ length: 61 }, (_, i) => `  const x${i} = ${i}`).join('\n')
  const text = `export function long() {\n${body}\n}\nconst short = () => {\n  return 1\n}\n`
  t.same(functionLengths('x.ts', text), [
    { name: 'long', line: 1, lines: 63 },
    { name: 'short', line: 64, lines: 3 },
  ])
})
