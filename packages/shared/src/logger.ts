/**
 * Structured logging (pino). Each daemon builds one root logger in main.ts and hands child loggers
 * (`log.child({ component: 'master.tasks' })`) to the components it wires.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

/** Options for createLogger. */
export interface LoggerOptions {
  /** pino level (default "info"; SPOKE_LOG_LEVEL is read by config.ts, not here). */
  level?: string;
  /** Where lines go: a stream, or a file path (appended, created 0600). Default: stderr. */
  destination?: DestinationStream | string;
  /** Fields on every line, e.g. `{ daemon: 'master' }`. */
  base?: Record<string, unknown>;
}

/** Builds a JSON logger; never a module-level singleton. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const base = opts.base ?? {};
  return pino(
    {
      level: opts.level ?? 'info',
      base,
      timestamp: pino.stdTimeFunctions.isoTime,
      // One key, one value: a line's own `msg` field would be written beside the message (parsers
      // keep the second), and a field that repeats a base field (`server`) twice.
      formatters: { log: (obj) => uniqueKeys(obj, base) },
    },
    typeof opts.destination === 'string'
      ? pino.destination({ dest: opts.destination, sync: true, mkdir: true, mode: 0o600 })
      : (opts.destination ?? pino.destination({ fd: 2, sync: true })),
  );
}

/**
 * A line's fields without keys the line writes anyway: `msg` becomes `message` (the text is kept),
 * a base field with the same value is dropped and with another value renamed `<key>Field`.
 */
export function uniqueKeys(obj: Record<string, unknown>, base: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  const own = () => (out ??= { ...obj });
  if ('msg' in obj) {
    const o = own();
    o.message = o.msg;
    delete o.msg;
  }
  for (const k of Object.keys(base)) {
    if (!(k in obj)) continue;
    const o = own();
    if (o[k] !== base[k]) o[`${k}Field`] = o[k];
    delete o[k];
  }
  return out ?? obj;
}

/** A logger that drops everything (tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
