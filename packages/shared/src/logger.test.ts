import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';

/** A logger into memory, and its raw lines. */
function capture(base: Record<string, unknown>) {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { log: createLogger({ base, destination, level: 'debug' }), lines };
}

/** Every key of a JSON object line, in order, as written (JSON.parse would hide repeats). */
function keysOf(line: string): string[] {
  return [...line.matchAll(/"([^"\\]+)":/g)].map((m) => m[1] as string);
}

describe('createLogger', () => {
  it('writes each key once: a msg field and a field repeating a base field do not duplicate keys', () => {
    const { log, lines } = capture({ daemon: 'agent', server: 'w1' });
    log.warn({ code: 'DB_FAILED', msg: 'access denied', server: 'w1' }, 'command failed');
    log.info({ server: 'w9' }, 'connected');
    log.child({ component: 'agent.link' }).info({ msg: 'x' }, 'child line');
    for (const l of lines) {
      const keys = keysOf(l);
      expect(new Set(keys).size, l).toBe(keys.length);
    }
    const [first, second] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(first).toMatchObject({ msg: 'command failed', message: 'access denied', server: 'w1', code: 'DB_FAILED' });
    expect(second).toMatchObject({ msg: 'connected', server: 'w1', serverField: 'w9' });
  });
});
