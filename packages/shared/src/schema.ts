/**
 * Settings checked by schema (zod): the daemons' environment settings, agent.json, task params.
 * A schema gives both the check and the type (`z.output<typeof schema>`); a value it refuses
 * becomes one SpokeError line that names the file or variable, the field and what is wanted.
 */
import { z } from 'zod';
import { fail, type ErrorCode } from './errors.js';

/**
 * An integer environment setting: unset or "" is `def`; anything else must be a whole number of
 * at least `min` (default 1), or the daemon refuses to start. The one meaning of a numeric
 * setting, on the master and the agent alike.
 */
export function envInt(def: number, min = 1): z.ZodType<number, string | undefined> {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return def;
      const n = /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n) || n < min) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number of at least ${min} (got ${JSON.stringify(v)})` });
        return z.NEVER;
      }
      return n;
    });
}

/** The log levels the daemons take (pino's), for SPOKE_LOG_LEVEL. */
export const LOG_LEVEL = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
  error: (i) => `must be one of fatal, error, warn, info, debug, trace, silent (got ${JSON.stringify(i.input)})`,
});

/**
 * Reads the environment through a schema of its settings.
 * @throws SpokeError CONFIG_INVALID naming the variable, e.g. `SPOKE_HEARTBEAT_MS must be a whole number of at least 1 (got "5s")`
 */
export function parseEnv<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.output<S> {
  return parseWith(schema, env, '');
}

/**
 * Checks a value (a parsed JSON file, a stored row) against a schema.
 * @throws SpokeError `code` (default CONFIG_INVALID): `<where>: <field> <what is wrong>`
 */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, where: string, code: ErrorCode = 'CONFIG_INVALID'): z.output<S> {
  const r = schema.safeParse(value, { error: plainMessage });
  if (r.success) return r.data;
  const issue = r.error.issues[0] as z.core.$ZodIssue;
  const path = issue.path.map(String);
  let field = path.join('.');
  let what = issue.message;
  if (issue.code === 'unrecognized_keys') {
    const known = keysAt(schema, path);
    field = [...path, issue.keys[0] ?? ''].join('.');
    what = `is not a known setting${known.length ? ` (known: ${known.join(', ')})` : ''}`;
  }
  const subject = field || 'the value';
  throw fail(code, where ? `${where}: ${subject} ${what}` : `${subject} ${what}`);
}

/** Messages for the issues a schema gave no words of its own (those win over these). */
function plainMessage(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code === 'invalid_type') return issue.input === undefined ? 'is missing' : `must be ${article(issue.expected)}`;
  if (issue.code === 'invalid_value') return `must be ${issue.values.map((v) => JSON.stringify(v)).join(' or ')} (got ${JSON.stringify(issue.input)})`;
  if (issue.code === 'too_small' && issue.origin === 'array') return `must have at least ${String(issue.minimum)} entr${issue.minimum === 1 ? 'y' : 'ies'}`;
  return undefined;
}

function article(expected: string): string {
  if (expected === 'array') return 'an array';
  if (expected === 'object') return 'an object';
  if (expected === 'int') return 'a whole number';
  return `a ${expected}`;
}

/** The keys an object schema knows at `path` (best effort, for the message). */
function keysAt(schema: z.ZodType, path: string[]): string[] {
  let s: unknown = schema;
  for (const p of [...path, '']) {
    while (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodPipe) {
      s = s instanceof z.ZodPipe ? s.in : s.unwrap();
    }
    if (!(s instanceof z.ZodObject)) return [];
    if (p === '') return Object.keys(s.shape);
    s = (s.shape as Record<string, unknown>)[p];
  }
  return [];
}
