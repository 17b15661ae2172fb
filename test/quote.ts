/** Untrusted text in one-line errors. */
import t from 'tap'
import { escapeControls, oneLine, quote } from '../lib/base/quote.js'

t.test('every control or line-breaking character is escaped; the rest is kept', async (t) => {
  t.equal(
    escapeControls('a\nb\rc\td\u0000e\u001bf\u007fg\u0085h\u009fi\u2028j\u2029k é'),
    'a\\nb\\rc\\td\\u0000e\\u001bf\\u007fg\\u0085h\\u009fi\\u2028j\\u2029k é',
  )
})

t.test('quote: a JSON-style string, cut at 64 characters with the length said', async (t) => {
  t.equal(quote('cmp"1\\\n\u0085'), '"cmp\\"1\\\\\\n\\u0085"')
  t.equal(quote('x'.repeat(64)), `"${'x'.repeat(64)}"`)
  t.equal(quote('x'.repeat(65)), `"${'x'.repeat(64)}…" (65 characters)`)
})

t.test('oneLine: escaped and cut', async (t) => {
  t.equal(oneLine('Unexpected token \n in JSON'), 'Unexpected token \\n in JSON')
  t.equal(oneLine('y'.repeat(301)), `${'y'.repeat(300)}…`)
})
