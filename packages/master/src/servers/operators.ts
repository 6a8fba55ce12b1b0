/**
 * Operator certificates (issue 23): each one issued is recorded (table `operator_certs`: name,
 * fingerprint, issued, expiry), listed by `spoke operator ls` and revoked by name with
 * `spoke operator revoke NAME`; every operator call over TLS checks its certificate's fingerprint
 * against the revoked ones, as agent calls are checked. Certificates issued before this table
 * existed are not listed and cannot be revoked by name: issue new ones.
 */
import { certIdentity, fail } from '@spoke/shared';
import type { Db } from '../namespace/store.js';
import type { Clock } from '../types.js';

/** One issued operator certificate. */
export interface OperatorCertInfo {
  name: string;
  fingerprint: string;
  issuedMs: number;
  expiresMs: number;
  /** null while valid. */
  revokedMs: number | null;
}

interface Row {
  name: string;
  fingerprint: string;
  issued_ms: number;
  expires_ms: number;
  revoked_ms: number | null;
}

/** The record of operator certificates. */
export class OperatorCerts {
  private readonly db: Db;
  private readonly clock: Clock;

  constructor(deps: { db: Db; clock: Clock }) {
    this.db = deps.db;
    this.clock = deps.clock;
  }

  /** Records a certificate just issued to `name`. */
  record(name: string, certPem: string): OperatorCertInfo {
    const id = certIdentity(certPem);
    this.db
      .prepare('INSERT OR REPLACE INTO operator_certs (fingerprint, name, issued_ms, expires_ms, revoked_ms) VALUES (?, ?, ?, ?, NULL)')
      .run(id.fingerprint, name, this.clock(), id.notAfter.getTime());
    return { name, fingerprint: id.fingerprint, issuedMs: this.clock(), expiresMs: id.notAfter.getTime(), revokedMs: null };
  }

  /** Every recorded certificate, by name then issue time. */
  list(): OperatorCertInfo[] {
    return (this.db.prepare('SELECT * FROM operator_certs ORDER BY name, issued_ms').all() as Row[]).map((r) => ({
      name: r.name,
      fingerprint: r.fingerprint,
      issuedMs: r.issued_ms,
      expiresMs: r.expires_ms,
      revokedMs: r.revoked_ms,
    }));
  }

  /**
   * Revokes every valid certificate of `name`; the next call with one is refused. Returns them.
   * @throws SpokeError OPERATOR_NOT_FOUND when `name` has no valid certificate
   */
  revoke(name: string): OperatorCertInfo[] {
    return this.db.transaction(() => {
      const valid = this.list().filter((c) => c.name === name && c.revokedMs === null);
      if (valid.length === 0) {
        const known = this.list().some((c) => c.name === name);
        throw fail(
          'OPERATOR_NOT_FOUND',
          known ? `every certificate of operator ${name} is revoked already` : `no operator certificate was issued to ${name} (see: spoke operator ls)`,
        );
      }
      const now = this.clock();
      this.db.prepare('UPDATE operator_certs SET revoked_ms = ? WHERE name = ? AND revoked_ms IS NULL').run(now, name);
      return valid.map((c) => ({ ...c, revokedMs: now }));
    })();
  }

  /** True when the certificate with this fingerprint was revoked. */
  isRevoked(fingerprint: string): boolean {
    const r = this.db.prepare('SELECT revoked_ms FROM operator_certs WHERE fingerprint = ?').get(fingerprint) as { revoked_ms: number | null } | undefined;
    return r?.revoked_ms != null;
  }
}
