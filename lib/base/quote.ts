/**
 * Untrusted text (a node name, a value from an operator's file, a parser's message quoting its
 * input) inside a one-line error: every control or line-breaking character escaped, long text
 * cut. Consul keeps a handler's output in a 4 KB buffer, and a newline would forge a log line.
 */

// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const BREAKING = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g

const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }

/** The text with each control or line-breaking character as \uXXXX (\n, \r, \t as such). */
export function escapeControls(text: string): string {
  return text.replace(BREAKING, (c) => SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** A JSON-style quoted string, escaped, cut at `max` characters with the full length said. */
export function quote(text: string, max = 64): string {
  const cut = text.length > max
  // JSON.stringify escapes quotes, backslashes and C0; escapeControls the rest (DEL, C1, U+2028/9).
  const body = escapeControls(JSON.stringify(cut ? `${text.slice(0, max)}…` : text).slice(1, -1))
  return cut ? `"${body}" (${text.length} characters)` : `"${body}"`
}

/** A message (a parser's, say) on one line, at most `max` characters. */
export function oneLine(text: string, max = 300): string {
  const flat = escapeControls(text)
  return flat.length > max ? `${flat.slice(0, max)}…` : flat
}
