/**
 * The master's certificate authority and enrollment tokens. The CA key lives in the state dir
 * (mode 0600) and never leaves it. A token is one-time, expiring, stored only as a hash, and
 * carries the CA fingerprint so the enrolling agent can pin the master before it trusts it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MASTER_TLS_NAME, certFingerprint, certIdentity, checkName, createCA, fail, issueKeyPair, signCsr, type KeyPair } from '@spoke/shared';
import type { Namespace } from '../namespace/namespace.js';
import type { Db } from '../namespace/store.js';
import type { Clock } from '../types.js';

/** Default lifetime of an enrollment token. */
export const DEFAULT_TOKEN_TTL_MS = 3_600_000;
/** Longest allowed token lifetime (7 days). */
export const MAX_TOKEN_TTL_MS = 7 * 86_400_000;

/** Loads the CA from `<stateDir>/pki`, creating it on first start. */
export async function loadOrCreateCA(stateDir: string): Promise<KeyPair> {
  const dir = join(stateDir, 'pki');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  if (existsSync(certFile) && existsSync(keyFile)) {
    return { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
  }
  const ca = await createCA('Spoke CA');
  writeFileSync(keyFile, ca.keyPem, { mode: 0o600 });
  writeFileSync(certFile, ca.certPem, { mode: 0o644 });
  return ca;
}

/** Issues the master's TLS certificate (CA + names it answers to); regenerated at each start. */
export async function issueMasterCert(ca: KeyPair, extraHosts: string[] = []): Promise<KeyPair> {
  const ips = ['127.0.0.1', '::1'];
  const dns = [MASTER_TLS_NAME, 'localhost'];
  for (const h of extraHosts) {
    if (/^[\d.]+$/.test(h) || h.includes(':')) {
      if (!ips.includes(h)) ips.push(h);
    } else if (h && !dns.includes(h)) dns.push(h);
  }
  return issueKeyPair(ca, { commonName: MASTER_TLS_NAME, role: 'master', dnsNames: dns, ips, days: 365 });
}

/** A parsed enrollment token. */
export interface ParsedToken {
  secret: string;
  caFingerprint: string;
}

const TOKEN_RE = /^spoke1\.([A-Za-z0-9_-]{43})\.([0-9a-f]{64})$/;

/** Splits a token into its secret and CA pin. @throws SpokeError TOKEN_INVALID */
export function parseToken(token: string): ParsedToken {
  const m = TOKEN_RE.exec(token.trim());
  if (!m) throw fail('TOKEN_INVALID', 'the enrollment token is malformed (expected spoke1.<secret>.<ca-fingerprint>)');
  return { secret: m[1] as string, caFingerprint: m[2] as string };
}

function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** What an enrollment produced. */
export interface Enrollment {
  certPem: string;
  caPem: string;
  server: string;
  cluster: string | null;
}

/** Tokens and certificate issuing over the store. */
export class Enroller {
  private readonly db: Db;
  private readonly ns: Namespace;
  private readonly ca: KeyPair;
  private readonly clock: Clock;
  readonly caFingerprint: string;

  constructor(deps: { db: Db; ns: Namespace; ca: KeyPair; clock: Clock }) {
    this.db = deps.db;
    this.ns = deps.ns;
    this.ca = deps.ca;
    this.clock = deps.clock;
    this.caFingerprint = certFingerprint(deps.ca.certPem);
  }

  /** The CA certificate (PEM). */
  get caPem(): string {
    return this.ca.certPem;
  }

  /**
   * Creates a one-time token for an agent server named `server`, optionally joining `cluster`.
   * @throws SpokeError INVALID_NAME, INVALID_TTL, SERVER_EXISTS, SERVER_IS_CLUSTER, SERVER_NOT_CLUSTER,
   *   SERVER_IN_CLUSTER
   */
  createToken(input: { server: string; cluster?: string; ttlMs?: number; replace?: boolean }): {
    token: string;
    expiresMs: number;
  } {
    checkName(input.server, 'server name');
    if (input.cluster) checkName(input.cluster, 'cluster name');
    if (input.cluster === input.server) throw fail('INVALID_NAME', 'an agent cannot have the same name as its cluster');
    const ttl = input.ttlMs ?? DEFAULT_TOKEN_TTL_MS;
    if (!(ttl > 0 && ttl <= MAX_TOKEN_TTL_MS)) throw fail('INVALID_TTL', 'token lifetime must be between 1s and 7d');
    if (this.ns.hasServer(input.server)) {
      const s = this.ns.getServer(input.server);
      if (s.kind === 'cluster') throw fail('SERVER_IS_CLUSTER', `${input.server} is a cluster; pick a name for the new agent server`);
      if (!input.replace) {
        throw fail('SERVER_EXISTS', `server ${input.server} already exists; use --replace to re-enroll it (its old certificate stops working)`);
      }
      if (input.cluster && s.cluster && s.cluster !== input.cluster) {
        throw fail('SERVER_IN_CLUSTER', `${input.server} is a member of cluster ${s.cluster}, not ${input.cluster}`);
      }
    }
    if (input.cluster && this.ns.hasServer(input.cluster) && this.ns.getServer(input.cluster).kind !== 'cluster') {
      throw fail('SERVER_NOT_CLUSTER', `${input.cluster} is an agent server, not a cluster`);
    }
    const secret = randomBytes(32).toString('base64url');
    const now = this.clock();
    const expiresMs = now + ttl;
    this.db
      .prepare('INSERT INTO tokens (hash, server, cluster, replace, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?, ?)')
      .run(hashSecret(secret), input.server, input.cluster ?? null, input.replace ? 1 : 0, now, expiresMs);
    return { token: `spoke1.${secret}.${this.caFingerprint}`, expiresMs };
  }

  /**
   * Trades a token and a CSR for a certificate. The token is consumed in the same transaction
   * that records the server, so a token works exactly once.
   * @throws SpokeError TOKEN_INVALID, TOKEN_USED, TOKEN_EXPIRED, CA_MISMATCH, CSR_INVALID and the
   *   namespace errors of recordEnrollment
   */
  async enroll(token: string, csrPem: string): Promise<Enrollment> {
    const parsed = parseToken(token);
    const pin = Buffer.from(parsed.caFingerprint, 'hex');
    if (!timingSafeEqual(pin, Buffer.from(this.caFingerprint, 'hex'))) {
      throw fail('CA_MISMATCH', 'this token was made by another master (CA fingerprint differs)');
    }
    const row = this.lookup(parsed.secret);
    // Sign outside the transaction (async), then commit only if the token is still unused.
    const certPem = await signCsr(this.ca, csrPem, { commonName: row.server, role: 'agent' });
    const fingerprint = certIdentity(certPem).fingerprint;
    this.db.transaction(() => {
      const again = this.lookup(parsed.secret);
      const res = this.db
        .prepare('UPDATE tokens SET used_ms = ?, used_fingerprint = ? WHERE hash = ? AND used_ms IS NULL')
        .run(this.clock(), fingerprint, hashSecret(parsed.secret));
      if (res.changes !== 1) throw fail('TOKEN_USED', 'this enrollment token was already used; create a new one');
      this.ns.recordEnrollment({ server: again.server, cluster: again.cluster, fingerprint, replace: again.replace === 1 });
    })();
    return { certPem, caPem: this.ca.certPem, server: row.server, cluster: row.cluster };
  }

  private lookup(secret: string): { server: string; cluster: string | null; replace: number } {
    const row = this.db.prepare('SELECT * FROM tokens WHERE hash = ?').get(hashSecret(secret)) as
      { server: string; cluster: string | null; replace: number; expires_ms: number; used_ms: number | null } | undefined;
    if (!row) throw fail('TOKEN_INVALID', 'this enrollment token is not known to the master');
    if (row.used_ms !== null) throw fail('TOKEN_USED', 'this enrollment token was already used; create a new one');
    if (row.expires_ms <= this.clock()) throw fail('TOKEN_EXPIRED', 'this enrollment token has expired; create a new one');
    return row;
  }

  /** Signs an operator certificate for `name` (issued only over the local socket). */
  async issueOperatorCert(name: string, csrPem: string, ttlMs: number): Promise<string> {
    checkName(name, 'operator name');
    return signCsr(this.ca, csrPem, { commonName: name, role: 'operator', days: Math.max(1, Math.round(ttlMs / 86_400_000)) });
  }
}
