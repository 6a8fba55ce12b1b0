/**
 * Who is calling. The master runs two gRPC servers: the local unix socket (plaintext, Operator
 * service only; its file mode 0600 is the operator check) and the TLS port (Agent service, and
 * Operator for holders of an operator certificate). Handlers are built knowing which one they
 * serve, and read the verified peer certificate on TLS.
 */
import { certFingerprint, fail } from '@spoke/shared';

/** Which listener a handler set serves. */
export type Via = 'socket' | 'tls';

/** The parts of a grpc-js call that auth reads. */
export interface AuthCall {
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: { raw?: Buffer; subject: Record<string, string | string[] | undefined> } };
}

/** The caller of one RPC. */
export type Caller = { via: 'socket' } | { via: 'tls'; commonName: string; role: string; fingerprint: string } | { via: 'tls-anonymous' };

/** Reads the caller from a call's auth context (grpc-js gives a peer cert only when verified). */
export function callerOf(call: AuthCall, via: Via): Caller {
  if (via === 'socket') return { via: 'socket' };
  const cert = call.getAuthContext().sslPeerCertificate;
  if (!cert?.raw) return { via: 'tls-anonymous' };
  const pick = (v: string | string[] | undefined) => (Array.isArray(v) ? (v[0] ?? '') : (v ?? ''));
  return {
    via: 'tls',
    commonName: pick(cert.subject.CN),
    role: pick(cert.subject.OU),
    fingerprint: certFingerprint(cert.raw),
  };
}

/**
 * Allows operator calls from the unix socket or with an operator certificate.
 * @throws SpokeError CERT_REQUIRED, CERT_UNKNOWN
 */
export function requireOperator(call: AuthCall, via: Via, isRevoked: (fingerprint: string) => boolean = () => false): Caller {
  const c = callerOf(call, via);
  if (c.via === 'socket') return c;
  if (c.via === 'tls-anonymous') {
    throw fail('CERT_REQUIRED', 'operator calls over TCP need an operator certificate (see: spoke operator cert)');
  }
  if (c.role !== 'operator') throw fail('CERT_UNKNOWN', `certificate ${c.commonName} (${c.role}) is not an operator certificate`);
  if (isRevoked(c.fingerprint))
    throw fail('CERT_REVOKED', `the operator certificate of ${c.commonName} was revoked; ask for a new one (spoke operator cert, on the master)`);
  return c;
}
