/**
 * The ACME client (RFC 8555, HTTP-01) the master runs for its sites, over `acme-client` (no
 * JOSE of our own). The account key is made once and kept in `<state-dir>/acme/account.key`
 * (0600); the directory URL, contact e-mail and a CA bundle for the ACME server's own TLS are
 * master options (`--acme-directory`, `--acme-email`, `--acme-ca`). The challenge answers are
 * put on every web server of the site by the caller; the master never resolves a site's names
 * itself (the ACME server's validation is the check: `skipChallengeVerification`).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { dirname } from 'node:path';
import * as acme from 'acme-client';
import { fail } from '@spoke/shared';

/** The master's ACME settings. */
export interface AcmeSettings {
  /** The directory URL (staging and production are just URLs). */
  directoryUrl: string;
  /** Account contact ("" = none). */
  email: string;
  /** PEM bundle trusted for the ACME server's TLS ("" = the system's). */
  caPem: string;
  /** Where the account key is kept. */
  accountKeyFile: string;
}

/** Where HTTP-01 answers go: every web server of the site. */
export interface ChallengeTarget {
  put(token: string, keyAuthorization: string): Promise<void>;
  remove(token: string): Promise<void>;
}

/** A certificate from the ACME server and the key made for it. */
export interface IssuedPair {
  certPem: string;
  keyPem: string;
}

/** Attempts acme-client makes again after a failed request (a server error, a refused connection). */
export const ACME_HTTP_RETRIES = 2;
/** Seconds before its first retry (the second waits twice as long) unless the server says Retry-After. */
export const ACME_HTTP_RETRY_DELAY_S = 2;

/** Issues certificates from one ACME directory. */
export class AcmeIssuer {
  private readonly settings: AcmeSettings;
  private client: acme.Client | null = null;

  constructor(settings: AcmeSettings) {
    this.settings = settings;
    // acme-client talks through its own axios instance: the ACME server's CA goes there.
    if (settings.caPem) acme.axios.defaults.httpsAgent = new Agent({ ca: settings.caPem, keepAlive: false });
    // Its own retries of a request that failed (5 attempts, waiting 5, 10, … 25 s: 75 s against an
    // ACME server that is down) held a task, and the site's lock, that long; the renewer retries
    // with its own backoff (1 h doubling), so two quick attempts are enough here.
    const defaults = acme.axios.defaults as typeof acme.axios.defaults & { acmeSettings?: Record<string, number> };
    defaults.acmeSettings = { ...defaults.acmeSettings, retryMaxAttempts: ACME_HTTP_RETRIES, retryDefaultDelay: ACME_HTTP_RETRY_DELAY_S };
  }

  /** The directory URL. */
  get directoryUrl(): string {
    return this.settings.directoryUrl;
  }

  private accountKey(): string {
    const file = this.settings.accountKeyFile;
    if (existsSync(file)) return readFileSync(file, 'utf8');
    return '';
  }

  private async getClient(): Promise<acme.Client> {
    if (this.client) return this.client;
    let key = this.accountKey();
    if (!key) {
      key = (await acme.crypto.createPrivateEcdsaKey()).toString();
      mkdirSync(dirname(this.settings.accountKeyFile), { recursive: true, mode: 0o700 });
      writeFileSync(this.settings.accountKeyFile, key, { mode: 0o600 });
      chmodSync(this.settings.accountKeyFile, 0o600);
    }
    this.client = new acme.Client({ directoryUrl: this.settings.directoryUrl, accountKey: key });
    return this.client;
  }

  /**
   * Orders a certificate for `hosts` (the first is the subject) with HTTP-01 challenges put on
   * `target`, and returns it with its new key (ECDSA P-256). `log` gets one line per step.
   * @throws SpokeError ACME_FAILED (with the ACME server's own words)
   */
  async issue(hosts: readonly string[], target: ChallengeTarget, log: (m: string) => void): Promise<IssuedPair> {
    try {
      const client = await this.getClient();
      const [key, csr] = await acme.crypto.createCsr({ commonName: hosts[0], altNames: [...hosts] }, await acme.crypto.createPrivateEcdsaKey());
      const certPem = await client.auto({
        csr,
        email: this.settings.email || undefined,
        termsOfServiceAgreed: true,
        challengePriority: ['http-01'],
        skipChallengeVerification: true,
        challengeCreateFn: async (authz, challenge, keyAuthorization) => {
          if (challenge.type !== 'http-01')
            throw new Error(`the ACME server offered ${challenge.type} for ${authz.identifier.value}; Spoke answers http-01 only`);
          await target.put(challenge.token, keyAuthorization);
          log(`challenge for ${authz.identifier.value} put on the web servers`);
        },
        challengeRemoveFn: async (_authz, challenge) => {
          if (challenge.type === 'http-01') await target.remove(challenge.token);
        },
      });
      return { certPem, keyPem: key.toString() };
    } catch (e) {
      const m = (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').trim();
      throw fail('ACME_FAILED', `${this.settings.directoryUrl}: ${m || 'the order failed'}`);
    }
  }
}
