/**
 * Structured logging: one JSON object per line. Consul keeps a handler's stderr (at DEBUG, 4 KB),
 * so every line also goes to the optional log file where operators actually look.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error'
export type Fields = Record<string, unknown>

export interface Logger {
  debug(msg: string, fields?: Fields): void
  info(msg: string, fields?: Fields): void
  warn(msg: string, fields?: Fields): void
  error(msg: string, fields?: Fields): void
}

export type LogSink = (line: string) => void

export function jsonLogger(sinks: LogSink[], now: () => Date, base: Fields = {}): Logger {
  const emit =
    (level: Level) =>
    (msg: string, fields: Fields = {}) => {
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
