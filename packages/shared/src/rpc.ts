/**
 * The edge between SpokeError and gRPC status. Servers map errors once (toServiceError); clients
 * map them back (fromServiceError) so the CLI prints `error: CODE: message`.
 */
import { Metadata, status as Status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { ERROR_CODES, SpokeError, fail, isErrorCode, type ErrorCode } from './errors.js';

const CODE_KEY = 'spoke-code';

/** Maps any thrown value to a gRPC status; unknown errors become INTERNAL without a stack. */
export function toServiceError(e: unknown): Partial<StatusObject> {
  const metadata = new Metadata();
  if (e instanceof SpokeError) {
    metadata.set(CODE_KEY, e.code);
    return { code: Status[ERROR_CODES[e.code]], details: e.message, metadata };
  }
  metadata.set(CODE_KEY, 'INTERNAL');
  return { code: Status.INTERNAL, details: 'internal error (see the master log)', metadata };
}

/** Maps a gRPC client error back to a SpokeError with its stable code. */
export function fromServiceError(e: unknown): SpokeError {
  if (e instanceof SpokeError) return e;
  const se = e as Partial<ServiceError>;
  if (typeof se?.code !== 'number') {
    return fail('INTERNAL', e instanceof Error ? e.message : String(e));
  }
  const raw = se.metadata?.get(CODE_KEY)[0];
  const code = typeof raw === 'string' && isErrorCode(raw) ? raw : undefined;
  if (code) return new SpokeError(code, se.details ?? se.message ?? code);
  if (se.code === Status.UNAVAILABLE) {
    return fail('MASTER_UNREACHABLE', `cannot reach the master: ${se.details || 'connection refused'}`);
  }
  if (se.code === Status.DEADLINE_EXCEEDED) return fail('MASTER_UNREACHABLE', 'the master did not answer in time');
  const fallback: ErrorCode = se.code === Status.UNAUTHENTICATED ? 'CERT_REQUIRED' : 'INTERNAL';
  return fail(fallback, se.details || se.message || 'unknown error');
}
