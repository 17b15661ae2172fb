/**
 * Strings in code-point order: host names and ISO timestamps. Not localeCompare: its order
 * depends on the process's locale (two controllers could break a rate-limit tie differently),
 * and its first call loads ICU's collator, ~17 ms of a failure's run on these cores (issue #22).
 */
export function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
