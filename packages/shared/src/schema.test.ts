import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { isSpokeError } from './errors.js';
import { envInt, LOG_LEVEL, parseEnv, parseWith } from './schema.js';

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isSpokeError(e)) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'accepted';
}

const ENV = z.object({ SPOKE_X_MS: envInt(5000), SPOKE_GRACE_MS: envInt(60_000, 0), SPOKE_LOG_LEVEL: LOG_LEVEL.default('info') });

describe('envInt: one meaning for a numeric setting', () => {
  it('unset or empty is the default; a whole number is taken', () => {
    expect(parseEnv(ENV, {})).toEqual({ SPOKE_X_MS: 5000, SPOKE_GRACE_MS: 60_000, SPOKE_LOG_LEVEL: 'info' });
    expect(parseEnv(ENV, { SPOKE_X_MS: '', SPOKE_GRACE_MS: ' ' })).toMatchObject({ SPOKE_X_MS: 5000, SPOKE_GRACE_MS: 60_000 });
    expect(parseEnv(ENV, { SPOKE_X_MS: '250', SPOKE_GRACE_MS: '0', SPOKE_LOG_LEVEL: 'debug' })).toEqual({
      SPOKE_X_MS: 250,
      SPOKE_GRACE_MS: 0,
      SPOKE_LOG_LEVEL: 'debug',
    });
  });

  it.each([
    [{ SPOKE_X_MS: '5s' }, 'CONFIG_INVALID: SPOKE_X_MS must be a whole number of at least 1 (got "5s")'],
    [{ SPOKE_X_MS: '0' }, 'CONFIG_INVALID: SPOKE_X_MS must be a whole number of at least 1 (got "0")'],
    [{ SPOKE_X_MS: '-3' }, 'CONFIG_INVALID: SPOKE_X_MS must be a whole number of at least 1 (got "-3")'],
    [{ SPOKE_X_MS: '1.5' }, 'CONFIG_INVALID: SPOKE_X_MS must be a whole number of at least 1 (got "1.5")'],
    [{ SPOKE_X_MS: '1e3' }, 'CONFIG_INVALID: SPOKE_X_MS must be a whole number of at least 1 (got "1e3")'],
    [{ SPOKE_GRACE_MS: 'off' }, 'CONFIG_INVALID: SPOKE_GRACE_MS must be a whole number of at least 0 (got "off")'],
    [{ SPOKE_LOG_LEVEL: 'loud' }, 'CONFIG_INVALID: SPOKE_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "loud")'],
  ])('refuses %j with one line naming the variable', (env, msg) => {
    expect(refusal(() => parseEnv(ENV, env))).toBe(msg);
  });
});

describe('parseWith', () => {
  const FILE = z.looseObject({ name: z.string(), sub: z.strictObject({ a: z.number().optional(), b: z.array(z.string()).optional() }).optional() });

  it('returns the checked value', () => {
    expect(parseWith(FILE, { name: 'x', sub: { a: 1 }, extra: true }, 'f.json')).toEqual({ name: 'x', sub: { a: 1 }, extra: true });
  });

  it.each([
    [{}, 'CONFIG_INVALID: f.json: name is missing'],
    [{ name: 3 }, 'CONFIG_INVALID: f.json: name must be a string'],
    [{ name: 'x', sub: [] }, 'CONFIG_INVALID: f.json: sub must be an object'],
    [{ name: 'x', sub: { c: 1 } }, 'CONFIG_INVALID: f.json: sub.c is not a known setting (known: a, b)'],
    [{ name: 'x', sub: { b: ['ok', 2] } }, 'CONFIG_INVALID: f.json: sub.b.1 must be a string'],
    [null, 'CONFIG_INVALID: f.json: the value must be an object'],
  ])('refuses %j with the field and what is wanted', (v, msg) => {
    expect(refusal(() => parseWith(FILE, v, 'f.json'))).toBe(msg);
  });

  it('uses the code it is given', () => {
    expect(refusal(() => parseWith(FILE, {}, 'task 3 (x.y)', 'INVALID_ARGUMENT'))).toBe('INVALID_ARGUMENT: task 3 (x.y): name is missing');
  });
});
