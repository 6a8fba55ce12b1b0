/**
 * Where a site's HTTPS lives on the master: the row in `site_https` (settings, the certificate
 * served, renewal state; migration 8) and the certificate pairs in
 * `<state-dir>/tls/<domain>/<id>.crt|.key` (dir 0700, files 0600). A pair's id is made from its
 * content, so storing the same pair twice is harmless; a new pair never replaces a file the
 * current one uses, and a failed renewal leaves the row, and so the served certificate, alone.
 * The key is read only to be sent to the site's web servers; it is never put in a row, a task
 * or a log line.
 */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkDomain, fail } from '@spoke/shared';
import type { Db } from '../../namespace/store.js';
import type { CertInfo } from './certs.js';

/** Where the site's certificate comes from. */
export type HttpsSource = 'acme' | 'operator' | 'self-signed';

/** A site's HTTPS row. */
export interface HttpsRecord {
  domain: string;
  enabled: boolean;
  /** What the operator asked for. */
  source: HttpsSource;
  redirect: boolean;
  hsts: boolean;
  /** The pair served now ("" = none yet). */
  certId: string;
  /** Where the served certificate came from ("" = none yet). */
  certKind: HttpsSource | '';
  issuer: string;
  names: string[];
  notBeforeMs: number;
  notAfterMs: number;
  /** When the renewer replaces it (0 = never: an operator certificate). */
  renewAtMs: number;
  failures: number;
  lastError: string;
  nextAttemptMs: number;
}

interface Row {
  domain: string;
  enabled: number;
  source: HttpsSource;
  redirect: number;
  hsts: number;
  cert_id: string;
  cert_kind: HttpsSource | '';
  issuer: string;
  names_json: string;
  not_before_ms: number;
  not_after_ms: number;
  renew_at_ms: number;
  failures: number;
  last_error: string;
  next_attempt_ms: number;
}

function fromRow(r: Row): HttpsRecord {
  return {
    domain: r.domain,
    enabled: r.enabled === 1,
    source: r.source,
    redirect: r.redirect === 1,
    hsts: r.hsts === 1,
    certId: r.cert_id,
    certKind: r.cert_kind,
    issuer: r.issuer,
    names: JSON.parse(r.names_json) as string[],
    notBeforeMs: r.not_before_ms,
    notAfterMs: r.not_after_ms,
    renewAtMs: r.renew_at_ms,
    failures: r.failures,
    lastError: r.last_error,
    nextAttemptMs: r.next_attempt_ms,
  };
}

/** Writes a file through a temp name, created with `mode` (never readable by others in between). */
function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode, flag: 'w' });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

/** A certificate pair as stored. */
export interface CertPair {
  certPem: string;
  keyPem: string;
}

/** The rows and the pair files. */
export class HttpsStore {
  private readonly db: Db;
  private readonly dir: string;

  constructor(deps: { db: Db; /** `<state-dir>/tls` */ dir: string }) {
    this.db = deps.db;
    this.dir = deps.dir;
  }

  /** The site's row, or null when HTTPS was never set for it. */
  get(domain: string): HttpsRecord | null {
    const r = this.db.prepare('SELECT * FROM site_https WHERE domain = ?').get(domain) as Row | undefined;
    return r ? fromRow(r) : null;
  }

  /** Every row. */
  list(): HttpsRecord[] {
    return (this.db.prepare('SELECT * FROM site_https ORDER BY domain').all() as Row[]).map(fromRow);
  }

  /** Writes the row (insert or replace). */
  put(r: HttpsRecord): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO site_https (domain, enabled, source, redirect, hsts, cert_id, cert_kind, issuer, names_json, not_before_ms, not_after_ms, renew_at_ms, failures, last_error, next_attempt_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        r.domain,
        r.enabled ? 1 : 0,
        r.source,
        r.redirect ? 1 : 0,
        r.hsts ? 1 : 0,
        r.certId,
        r.certKind,
        r.issuer,
        JSON.stringify(r.names),
        r.notBeforeMs,
        r.notAfterMs,
        r.renewAtMs,
        r.failures,
        r.lastError,
        r.nextAttemptMs,
      );
  }

  /** Puts back a row as it was (null: none). */
  restore(domain: string, previous: HttpsRecord | null): void {
    if (previous) this.put(previous);
    else this.db.prepare('DELETE FROM site_https WHERE domain = ?').run(domain);
  }

  /** Records a failed renewal (the served certificate is left as it is). */
  recordFailure(domain: string, message: string, nextAttemptMs: number): void {
    this.db
      .prepare('UPDATE site_https SET failures = failures + 1, last_error = ?, next_attempt_ms = ? WHERE domain = ?')
      .run(message.slice(0, 500), nextAttemptMs, domain);
  }

  /** The row with `pair` as the served certificate (failures cleared). */
  withCert(r: HttpsRecord, id: string, kind: HttpsSource, info: CertInfo, renewAtMs: number): HttpsRecord {
    return {
      ...r,
      certId: id,
      certKind: kind,
      issuer: info.issuer,
      names: info.names,
      notBeforeMs: info.notBeforeMs,
      notAfterMs: info.notAfterMs,
      renewAtMs,
      failures: 0,
      lastError: '',
      nextAttemptMs: 0,
    };
  }

  private siteDir(domain: string): string {
    return join(this.dir, checkDomain(domain));
  }

  /** Stores a pair (0600) and returns its id (from its content). */
  savePair(domain: string, pair: CertPair): string {
    const id = createHash('sha256').update(pair.certPem).update('\0').update(pair.keyPem).digest('hex').slice(0, 24);
    const dir = this.siteDir(domain);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
    chmodSync(dir, 0o700);
    writeAtomic(join(dir, `${id}.crt`), pair.certPem, 0o600);
    writeAtomic(join(dir, `${id}.key`), pair.keyPem, 0o600);
    return id;
  }

  /** Reads a stored pair. @throws SpokeError CERT_INVALID when its files are gone */
  pair(domain: string, id: string): CertPair {
    const dir = this.siteDir(domain);
    if (!/^[0-9a-f]{24}$/.test(id)) throw fail('CERT_INVALID', `no certificate ${JSON.stringify(id)} for ${domain}`);
    try {
      return { certPem: readFileSync(join(dir, `${id}.crt`), 'utf8'), keyPem: readFileSync(join(dir, `${id}.key`), 'utf8') };
    } catch (e) {
      throw fail(
        'CERT_INVALID',
        `the certificate files of ${domain} (${join(dir, id)}.crt/.key) cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; run: spoke site https ${domain} on`,
      );
    }
  }

  /** Whether a stored pair exists. */
  hasPair(domain: string, id: string): boolean {
    return /^[0-9a-f]{24}$/.test(id) && existsSync(join(this.siteDir(domain), `${id}.crt`)) && existsSync(join(this.siteDir(domain), `${id}.key`));
  }

  /**
   * Removes the site's pairs except `keep` (the ones rows name: current, and what an undo could
   * go back to). Never the one the row serves.
   */
  prune(domain: string, keep: readonly string[]): number {
    let names: string[];
    try {
      names = readdirSync(this.siteDir(domain));
    } catch {
      return 0;
    }
    const current = this.get(domain)?.certId;
    const kept = new Set([...keep, ...(current ? [current] : [])]);
    const gone = names.filter((n) => !kept.has(n.replace(/\.(crt|key)$/, '')));
    for (const n of gone) rmSync(join(this.siteDir(domain), n), { force: true });
    return gone.length;
  }

  /**
   * A renamed site's pairs follow it (the row follows by ON UPDATE CASCADE). A dir already under
   * the new name is what an earlier site of that name left behind: no row names it any more.
   */
  moveSite(from: string, to: string): void {
    const src = this.siteDir(from);
    if (!existsSync(src)) return;
    const dest = this.siteDir(to);
    rmSync(dest, { recursive: true, force: true });
    renameSync(src, dest);
  }

  /** Removes a deleted site's pairs (its row went with the site). */
  forgetSite(domain: string): void {
    rmSync(this.siteDir(domain), { recursive: true, force: true });
  }
}
