/**
 * The steps of the HTTPS tasks (https.ts registers the tasks and submits them; the module doc
 * there says what each task does): the row (set-https), the settings, the vhosts, and the
 * certificate issued — ordered from the ACME CA with HTTP-01 answers on every web server, or
 * made self-signed — each undone when a later step fails.
 */
import { fail, isSpokeError } from '@spoke/shared';
import type { TaskContext } from '../../tasks/engine.js';
import type { Clock } from '../../types.js';
import type { Step } from '../../tasks/steps.js';
import type { SiteOps, WriteUndo } from '../ops.js';
import type { AcmeIssuer } from './acme.js';
import { inspectChain, renewAt, retryDelayMs, selfSigned, uncovered } from './certs.js';
import type { HttpsRecord, HttpsSource, HttpsStore } from './store.js';

/** Undo data of set-https: the row as it was. */
interface RowUndo {
  domain: string;
  previous: HttpsRecord | null;
}

/** Builds the steps of `site.https`, `site.https.renew` and `--https`, for SiteHttps. */
export class HttpsSteps {
  private readonly sites: SiteOps;
  private readonly store: HttpsStore;
  private readonly acme: AcmeIssuer | null;
  private readonly clock: Clock;

  /**
   * @param deps.sites the site tasks' shared operations (ops.ts)
   * @param deps.acme null: no ACME directory configured
   * @param deps.clock the renewer's clock (dates on the row, backoff)
   */
  constructor(deps: { sites: SiteOps; store: HttpsStore; acme: AcmeIssuer | null; clock: Clock }) {
    this.sites = deps.sites;
    this.store = deps.store;
    this.acme = deps.acme;
    this.clock = deps.clock;
  }

  /** Records a failed renewal on the row (failures, last error, next attempt with backoff); the certificate in use stays. */
  recordFailure(ctx: TaskContext, domain: string, e: unknown): void {
    const r = this.store.get(domain);
    if (!r) return;
    const next = this.clock() + retryDelayMs(r.failures + 1);
    const message = isSpokeError(e) ? `${e.code}: ${e.message}` : String(e);
    this.store.recordFailure(domain, message, next);
    ctx.log(
      `renewal failed (${r.failures + 1} in a row); the certificate in use is kept (valid until ${new Date(r.notAfterMs).toISOString()}); next attempt ${new Date(next).toISOString()}`,
      'error',
    );
  }

  /** The steps of a `site.https` or `site.https.renew` task, from its kind and params (run and resumed alike). */
  stepsFor(ctx: TaskContext): Step[] {
    const p = ctx.task.params;
    const domain = String(p.domain);
    if (ctx.task.kind === 'site.https.renew') return this.renewSteps(domain);
    if (p.on !== true) return this.offSteps(domain);
    return this.onSteps(domain, { source: p.source as HttpsSource, redirect: p.redirect === true, hsts: p.hsts === true, certId: String(p.certId ?? '') });
  }

  private names(domain: string): string[] {
    const s = this.sites.ns.getSite(domain);
    return [s.domain, ...s.aliases];
  }

  /** Stores a pair as the site's served certificate on `r` (not yet written to the store). */
  private async withPair(r: HttpsRecord, kind: HttpsSource, pair: { certPem: string; keyPem: string }): Promise<HttpsRecord> {
    const info = await inspectChain(pair.certPem);
    const id = this.store.savePair(r.domain, pair);
    return this.store.withCert(r, id, kind, info, kind === 'operator' ? 0 : renewAt(info.notBeforeMs, info.notAfterMs));
  }

  private setRowStep(domain: string, make: (prev: HttpsRecord | null) => Promise<HttpsRecord>, say: (r: HttpsRecord) => string): Step {
    return {
      name: 'set-https',
      do: async (ctx) => {
        const previous = this.store.get(domain);
        const next = await make(previous);
        this.store.put(next);
        ctx.log(say(next));
        return { domain, previous } satisfies RowUndo;
      },
      undo: async (ctx, data) => {
        const d = data as RowUndo;
        if (!this.sites.siteExists(d.domain)) return;
        this.store.restore(d.domain, d.previous);
        ctx.log(`HTTPS settings of ${d.domain} put back`);
      },
    };
  }

  /** write-files + converge (settings that know the scheme), each undone. */
  private settingsSteps(domain: string): Step[] {
    return [
      {
        name: 'https-write-files',
        do: async (ctx) => this.sites.writeFiles(ctx, this.sites.ns.getSite(domain).platform, { site: domain }),
        undo: async (ctx, data) => this.sites.restoreFiles(ctx, data as WriteUndo),
      },
      { name: 'https-converge', do: async (ctx) => void (await this.sites.converge(ctx, this.sites.ns.getSite(domain).platform)) },
    ];
  }

  /** configure-site on every web server; the undo puts the row back first, then the vhost. */
  private configureStep(domain: string): Step {
    return {
      name: 'https-configure',
      do: async (ctx) => {
        const previous = this.store.get(domain);
        await this.sites.configure(ctx, domain, this.sites.ns.getSite(domain).status !== 'disabled');
        return { domain, previous } satisfies RowUndo;
      },
      undo: async (ctx, data) => {
        const d = data as RowUndo;
        if (!this.sites.siteExists(d.domain)) return;
        this.store.restore(d.domain, d.previous);
        await this.sites.configure(ctx, d.domain, this.sites.ns.getSite(d.domain).status !== 'disabled');
      },
    };
  }

  /**
   * The steps of turning HTTPS on. `soft` (the end of install/clone/migrate `--https`): an ACME
   * order that fails does not undo the task that made the site — it keeps its self-signed
   * stand-in, the failure is recorded as a failed renewal and the renewer tries again.
   */
  onSteps(domain: string, want: { source: HttpsSource; redirect: boolean; hsts: boolean; certId: string }, soft = false): Step[] {
    const steps: Step[] = [
      this.setRowStep(
        domain,
        async (prev) => {
          const base: HttpsRecord = {
            ...(prev ?? {
              domain,
              certId: '',
              certKind: '',
              issuer: '',
              names: [],
              notBeforeMs: 0,
              notAfterMs: 0,
              renewAtMs: 0,
              failures: 0,
              lastError: '',
              nextAttemptMs: 0,
            }),
            domain,
            enabled: true,
            source: want.source,
            redirect: want.redirect,
            hsts: want.hsts,
          };
          if (want.source === 'operator') {
            return this.withPair(base, 'operator', this.store.pair(domain, want.certId));
          }
          // Keep a certificate that still serves every name and is not expired (for self-signed:
          // only a self-signed one, so an operator's or ACME certificate is not kept when the
          // operator asked for a self-signed one); else a self-signed stand-in, so the vhost never
          // names a missing file.
          const usable =
            base.certId &&
            (want.source !== 'self-signed' || base.certKind === 'self-signed') &&
            this.store.hasPair(domain, base.certId) &&
            uncovered(base.names, this.names(domain)).length === 0 &&
            base.notAfterMs > this.clock();
          if (usable) return base;
          return this.withPair(base, 'self-signed', await selfSigned(this.names(domain), this.clock()));
        },
        (r) =>
          `HTTPS on for ${domain} (${r.source}${r.redirect ? ', http redirects to https' : ''}${r.hsts ? ', HSTS' : ''}); serving the ${r.certKind} certificate for ${r.names.join(', ')} until ${new Date(r.notAfterMs).toISOString()}`,
      ),
      ...this.settingsSteps(domain),
      this.configureStep(domain),
    ];
    if (want.source === 'acme') steps.push(...this.issueSteps(domain, false, soft));
    return steps;
  }

  private offSteps(domain: string): Step[] {
    return [
      this.setRowStep(
        domain,
        async (prev) => {
          if (!prev) throw fail('INVALID_ARGUMENT', `HTTPS was never turned on for ${domain}`);
          return { ...prev, enabled: false };
        },
        () => `HTTPS off for ${domain}: plain HTTP only (the certificate is kept for the next "on")`,
      ),
      ...this.settingsSteps(domain),
      this.configureStep(domain),
    ];
  }

  private renewSteps(domain: string): Step[] {
    return this.issueSteps(domain, true);
  }

  /**
   * issue (ACME, or a new self-signed one for a self-signed site) → configure. The row changes
   * only in the configure step, after the new pair is stored; its undo puts the old row back.
   */
  private issueSteps(domain: string, renewal: boolean, soft = false): Step[] {
    let pending: HttpsRecord | null = null;
    return [
      {
        name: 'issue',
        do: async (ctx) => {
          if (!soft) return this.issue(ctx, domain, renewal, (p) => (pending = p));
          try {
            await this.issue(ctx, domain, renewal, (p) => (pending = p));
          } catch (e) {
            pending = null;
            this.recordFailure(ctx, domain, e);
            ctx.log(`the site is served with a self-signed certificate until an ACME one is issued (spoke site show ${domain})`, 'warn');
          }
        },
      },
      {
        name: 'configure-issued',
        do: async (ctx) => {
          const previous = this.store.get(domain);
          if (!pending) return { domain, previous } satisfies RowUndo; // nothing new to serve
          this.store.put(pending);
          await this.sites.configure(ctx, domain, this.sites.ns.getSite(domain).status !== 'disabled');
          const keep = previous?.certId ? [previous.certId] : [];
          this.store.prune(domain, keep);
          return { domain, previous } satisfies RowUndo;
        },
        undo: async (ctx, data) => {
          const d = data as RowUndo;
          if (!this.sites.siteExists(d.domain)) return;
          this.store.restore(d.domain, d.previous);
          await this.sites.configure(ctx, d.domain, this.sites.ns.getSite(d.domain).status !== 'disabled');
        },
      },
    ];
  }

  /** Orders (ACME) or makes (self-signed) the next certificate; `set` gets it (nothing when the one in use is fine). */
  private async issue(ctx: TaskContext, domain: string, renewal: boolean, set: (r: HttpsRecord) => void): Promise<void> {
    const r = this.store.get(domain);
    if (!r || !r.enabled) throw fail('INVALID_ARGUMENT', `HTTPS is off for ${domain}; nothing to ${renewal ? 'renew' : 'issue'}`);
    const names = this.names(domain);
    if (r.source === 'operator')
      throw fail('INVALID_ARGUMENT', `${domain} serves an operator certificate; give a new one with spoke site https ${domain} on --cert FILE --key FILE`);
    if (r.source === 'self-signed') {
      set(await this.withPair(r, 'self-signed', await selfSigned(names, this.clock())));
      ctx.log(`new self-signed certificate for ${names.join(', ')}`);
      return;
    }
    if (!renewal && r.certKind === 'acme' && uncovered(r.names, names).length === 0 && r.renewAtMs > this.clock()) {
      ctx.log(`the ACME certificate in use covers ${names.join(', ')} until ${new Date(r.notAfterMs).toISOString()}; not ordering another`);
      return;
    }
    if (!this.acme) throw fail('ACME_NOT_CONFIGURED', 'this master has no ACME directory (spoke-master --acme-directory URL); the certificate in use is kept');
    const servers = this.sites.webServers(this.sites.ns.getSite(domain).platform);
    ctx.log(`ordering a certificate for ${names.join(', ')} from ${this.acme.directoryUrl} (HTTP-01 on ${servers.join(', ')})`);
    const pair = await this.acme.issue(names, this.challengeTarget(ctx, servers), (m) => ctx.log(m));
    const issued = await this.withPair(r, 'acme', pair);
    set(issued);
    ctx.log(
      `issued by ${issued.issuer} for ${issued.names.join(', ')}, valid until ${new Date(issued.notAfterMs).toISOString()}; renews after ${new Date(issued.renewAtMs).toISOString()}`,
    );
  }

  /** HTTP-01 answers on every web server of the site (a cluster: every member). */
  private challengeTarget(ctx: TaskContext, servers: readonly string[]) {
    const all = async (token: string, keyAuthorization: string, remove: boolean) => {
      const results = await Promise.allSettled(
        servers.map((server) => this.sites.call(ctx, server, { type: 'acmeChallenge', token, keyAuthorization, remove })),
      );
      const bad = results.flatMap((r, i) =>
        r.status === 'rejected' ? [`${servers[i]}: ${isSpokeError(r.reason) ? r.reason.message : String(r.reason)}`] : [],
      );
      if (bad.length && !remove) throw fail('ACME_FAILED', `could not put the challenge on ${bad.join('; ')}`);
      for (const b of bad) ctx.log(`could not remove the challenge on ${b}`, 'warn');
    };
    return {
      put: (token: string, keyAuthorization: string) => all(token, keyAuthorization, false),
      remove: (token: string) => all(token, '', true),
    };
  }
}
