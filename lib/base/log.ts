/**
 * Structured logging: one JSON object per line. Consul keeps a handler's stderr (at DEBUG, 4 KB),
 * so every line also goes to the optional log file where operators actually look.
 */
export const LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type Level = (typeof LEVELS)[number]
export type Fields = Record<string, unknown>

export interface Logger {
  debug(msg: string, fields?: Fields): void
  info(msg: string, fields?: Fields): void
  warn(msg: string, fields?: Fields): void
  error(msg: string, fields?: Fields): void
}

export type LogSink = (line: string) => void

/** Lines below `min` (config `log.level`) are dropped before they are built: a quiet run stays cheap. */
export function jsonLogger(sinks: LogSink[], now: () => Date, base: Fields = {}, min: Level = 'info'): Logger {
  const floor = LEVELS.indexOf(min)
  const drop = () => {}
  const emit = (level: Level) =>
    LEVELS.indexOf(level) < floor
      ? drop
      : (msg: string, fields: Fields = {}) => {
          const line = JSON.stringify({ time: now().toISOString(), level, msg, ...base, ...fields })
          for (const sink of sinks) sink(line)
        }
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') }
}

/** A logger that keeps what it was told, for tests. */
export interface RecordingLogger extends Logger {
  lines: Array<{ level: Level; msg: string } & Fields>
}

export function recordingLogger(): RecordingLogger {
  const lines: RecordingLogger['lines'] = []
  const rec =
    (level: Level) =>
    (msg: string, fields: Fields = {}) => {
      lines.push({ level, msg, ...fields })
    }
  return { lines, debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error') }
}

/**
 * A run did its work (decisions recorded) but could not write its log file or metrics file:
 * exit 74 (I/O), so that Consul, which keeps a handler's output only at DEBUG, logs the failed
 * handler at ERROR.
 */
export class OutputError extends Error {
  override name = 'OutputError'
  constructor(readonly problems: string[]) {
    super(`decisions were recorded, but: ${problems.join('; ')}`)
  }
}
