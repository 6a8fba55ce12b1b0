/**
 * A site's certificate and key on this web server, and the HTTP-01 challenge files (capability
 * 12). Certificates live under `<stateDir>/tls/<domain>/` (dir 0700, files 0600, owned by root
 * when the agent is root): the web server's master process reads them as root at a reload, its
 * workers never. Each certificate is written under a name made from its own hash, so a new one
 * changes the vhost text (which makes WebConfig test and reload) and the previous pair stays on
 * disk until the new vhost passed the config test: a failed test puts the old vhost back, and
 * the old vhost still finds its files. Only after a good reload are older pairs pruned.
 *
 * Challenges go to the ACME dir (agent.json `http.acmeDir`, default
 * `/var/lib/spoke-agent/acme-challenge` under `--root`), which every site vhost serves at
 * `/.well-known/acme-challenge/` on its plain listen address: readable by the web server's
 * workers (0755 dirs, 0644 files), holding only tokens, never keys.
 */
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { checkDomain, fail, type Logger } from '@spoke/shared';
import { writeAtomic } from '../converge/fsutil.js';

/** The challenge dir when agent.json names none (a namespace path: under `--root`). */
export const DEFAULT_ACME_DIR = '/var/lib/spoke-agent/acme-challenge';

/** Where a site's certificate pair is, as the vhost names it. */
export interface TlsPaths {
  cert: string;
  key: string;
}

/** What the tls store needs. */
export interface SiteTlsDeps {
  /** The agent's state dir: certificates go to `<stateDir>/tls/<domain>/`. */
  stateDir: string;
  /** Host path of the challenge dir the vhosts serve. */
  acmeDir: string;
  log: Logger;
}

const PEM_CERT = /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*$/;
const PEM_KEY = /^-----BEGIN (EC |RSA )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END (EC |RSA )?PRIVATE KEY-----\s*$/;

/** RFC 8555 8.3: the token is base64url; the key authorization is token "." thumbprint. */
const TOKEN = /^[A-Za-z0-9_-]{16,256}$/;
const KEY_AUTHORIZATION = /^[A-Za-z0-9_-]{16,256}\.[A-Za-z0-9_-]{16,128}$/;

/**
 * Checks that the text is PEM certificates only (leaf first), without anything a config could
 * trip on. @throws SpokeError CERT_INVALID
 */
export function checkCertPem(pem: string): string {
  const blocks = pem.split(/(?<=-----END CERTIFICATE-----)\s*/).filter((b) => b.trim());
  if (blocks.length === 0 || !blocks.every((b) => PEM_CERT.test(b.trim()))) {
    throw fail('CERT_INVALID', 'the certificate is not a PEM certificate chain (-----BEGIN CERTIFICATE----- blocks only)');
  }
  return `${blocks.map((b) => b.trim()).join('\n')}\n`;
}

/** Checks that the text is one PEM private key. @throws SpokeError CERT_INVALID */
export function checkKeyPem(pem: string): string {
  if (!PEM_KEY.test(pem.trim())) throw fail('CERT_INVALID', 'the key is not one PEM private key');
  return `${pem.trim()}\n`;
}

/** Stores site certificates and ACME challenge files. */
export class SiteTlsStore {
  private readonly deps: SiteTlsDeps;

  constructor(deps: SiteTlsDeps) {
    this.deps = deps;
  }

  /** The challenge dir (host path) the vhosts serve. */
  get acmeDir(): string {
    return this.deps.acmeDir;
  }

  private siteDir(domain: string): string {
    return join(this.deps.stateDir, 'tls', checkDomain(domain));
  }

  /**
   * Writes the pair (idempotent: the same pair gets the same names) and returns its paths.
   * @throws SpokeError CERT_INVALID, INVALID_DOMAIN
   */
  write(domain: string, certPem: string, keyPem: string): TlsPaths {
    const cert = checkCertPem(certPem);
    const key = checkKeyPem(keyPem);
    const id = createHash('sha256').update(cert).update('\0').update(key).digest('hex').slice(0, 16);
    const dir = this.siteDir(domain);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(join(this.deps.stateDir, 'tls'), 0o700);
    chmodSync(dir, 0o700);
    const paths = { cert: join(dir, `${id}.crt`), key: join(dir, `${id}.key`) };
    writeAtomic(paths.cert, cert, true, 0o600);
    writeAtomic(paths.key, key, true, 0o600);
    if (process.getuid?.() === 0) {
      for (const p of [dir, paths.cert, paths.key]) chownSync(p, 0, 0);
    }
    return paths;
  }

  /** Removes the site's pairs other than `keep` (after a good reload; [] keeps none). */
  prune(domain: string, keep: TlsPaths | null): string[] {
    const dir = this.siteDir(domain);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    const kept = new Set(keep ? [keep.cert, keep.key] : []);
    const removed = names.map((n) => join(dir, n)).filter((p) => !kept.has(p));
    for (const p of removed) rmSync(p, { force: true });
    if (!keep) rmSync(dir, { recursive: true, force: true });
    return removed;
  }

  /** The challenge file of a token (host path). @throws SpokeError INVALID_ARGUMENT */
  challengePath(token: string): string {
    if (!TOKEN.test(token)) throw fail('INVALID_ARGUMENT', 'the ACME challenge token is not base64url');
    return join(this.deps.acmeDir, token);
  }

  /**
   * Puts (or with `remove`, deletes) an HTTP-01 challenge answer.
   * @throws SpokeError INVALID_ARGUMENT
   */
  challenge(token: string, keyAuthorization: string, remove: boolean): string {
    const path = this.challengePath(token);
    if (remove) {
      rmSync(path, { force: true });
      return path;
    }
    if (!KEY_AUTHORIZATION.test(keyAuthorization) || !keyAuthorization.startsWith(`${token}.`)) {
      throw fail('INVALID_ARGUMENT', 'the ACME key authorization is not <token>.<thumbprint>');
    }
    this.ensureAcmeDir();
    writeAtomic(path, keyAuthorization, false, 0o644);
    chmodSync(path, 0o644);
    this.deps.log.info({ path }, 'acme challenge written');
    return path;
  }

  /** Creates the challenge dir (0755) so the vhosts that name it pass the config test. */
  ensureAcmeDir(): void {
    mkdirSync(this.deps.acmeDir, { recursive: true, mode: 0o755 });
    chmodSync(this.deps.acmeDir, 0o755);
  }
}
