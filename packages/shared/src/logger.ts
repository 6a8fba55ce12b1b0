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
  return pino(
    { level: opts.level ?? 'info', base: opts.base ?? {}, timestamp: pino.stdTimeFunctions.isoTime },
    typeof opts.destination === 'string'
      ? pino.destination({ dest: opts.destination, sync: true, mkdir: true, mode: 0o600 })
      : (opts.destination ?? pino.destination({ fd: 2, sync: true })),
  );
}

/** A logger that drops everything (tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
