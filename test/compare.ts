/**
 * byCodePoint (lib/base/compare.ts): the order the evaluator sorts host names and timestamps in,
 * the same on every controller whatever its locale.
 */
import t from 'tap'
import { byCodePoint } from '../lib/base/compare.js'

t.test('code-point order: digits before capitals before lower case, a prefix first, ISO times in time order', async (t) => {
  const cases: Array<[string[], string[]]> = [
    [
      ['cmp2', 'cmp10', 'cmp1'],
      ['cmp1', 'cmp10', 'cmp2'],
    ],
    [
      ['cmp-b', 'Cmp-a', 'cmp'],
      ['Cmp-a', 'cmp', 'cmp-b'],
    ],
    [
      ['2026-12-06T10:00:01.000Z', '2026-12-06T09:59:59.999Z'],
      ['2026-12-06T09:59:59.999Z', '2026-12-06T10:00:01.000Z'],
    ],
    [
      ['b', 'a', 'b'],
      ['a', 'b', 'b'],
    ],
  ]
  for (const [input, sorted] of cases) t.same([...input].sort(byCodePoint), sorted, input.join(' '))
})
