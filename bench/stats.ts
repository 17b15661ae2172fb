/** Small statistics for repeated measurements: median and spread, never a lone number. */

export interface Summary {
  n: number
  median: number
  mean: number
  min: number
  max: number
  /** 25th and 75th percentiles (linear interpolation). */
  p25: number
  p75: number
}

export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN
  const pos = (sorted.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo)
}

export function summarize(values: number[], digits = 3): Summary {
  const s = [...values].sort((a, b) => a - b)
  const r = (x: number) => Number(x.toFixed(digits))
  return {
    n: s.length,
    median: r(quantile(s, 0.5)),
    mean: r(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)),
    min: r(s[0] ?? NaN),
    max: r(s.at(-1) ?? NaN),
    p25: r(quantile(s, 0.25)),
    p75: r(quantile(s, 0.75)),
  }
}

/** "1.23 [1.10–1.40]": median and min–max. */
export function fmt(s: Summary | undefined, unit = '', digits = 2): string {
  if (!s || s.n === 0) return '—'
  return `${s.median.toFixed(digits)}${unit} [${s.min.toFixed(digits)}–${s.max.toFixed(digits)}]`
}

export const round = (x: number, digits = 3) => Number(x.toFixed(digits))
