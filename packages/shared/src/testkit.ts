/**
 * The test door of `@spoke/shared` (`import { expectCode } from '@spoke/shared/testkit'`): helpers
 * the tests of every package share. No daemon imports it, so nothing here is in a bundle; it
 * imports no test framework either (a helper that fails throws, which fails the test).
 */
import { type ErrorCode, isSpokeError, type SpokeError } from './errors.js';

function check(thrown: unknown, code: ErrorCode | undefined): SpokeError {
  if (!isSpokeError(thrown)) {
    throw new Error(`expected a SpokeError${code ? ` ${code}` : ''}, got ${thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown)}`);
  }
  if (code !== undefined && thrown.code !== code) throw new Error(`expected ${code}, got ${thrown.code}: ${thrown.message}`);
  if (thrown.message.includes('\n')) throw new Error(`${thrown.code}: an error message is one line, got ${JSON.stringify(thrown.message)}`);
  return thrown;
}

function notRefused(code: ErrorCode | undefined): Error {
  return new Error(`expected ${code ?? 'a SpokeError'}, nothing was thrown`);
}

/**
 * The refusal `run` ends in: calls it (or awaits the promise, or what it returns) and returns the
 * SpokeError thrown, checking that its message is one line and, when `code` is given, its code.
 * @throws Error when nothing was thrown, when what was thrown is not a SpokeError, or when its
 *   code or message is not as said
 */
export function expectCode(run: Promise<unknown> | (() => Promise<unknown>), code?: ErrorCode): Promise<SpokeError>;
export function expectCode(run: () => unknown, code?: ErrorCode): SpokeError;
export function expectCode(run: Promise<unknown> | (() => unknown), code?: ErrorCode): SpokeError | Promise<SpokeError> {
  let result: unknown;
  if (typeof run === 'function') {
    try {
      result = run();
    } catch (e) {
      return check(e, code);
    }
  } else {
    result = run;
  }
  if (result instanceof Promise) {
    return result.then(
      () => {
        throw notRefused(code);
      },
      (e: unknown) => check(e, code),
    );
  }
  throw notRefused(code);
}
