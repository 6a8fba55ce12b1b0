/**
 * HTTPS for sites (issue 21): `site https DOMAIN on|off`, `--https` on install/clone/migrate, the
 * certificate every vhost carries, and renewals.
 *
 * Tasks (entity `site:<domain>`, holding `platform:<name>` like every site task):
 * - `site.https`: set-https (the row: settings and, when no usable certificate exists yet, a
 *   self-signed one or the operator's, so a vhost never names a missing file) →
 *   https-write-files and https-converge (settings that know they are behind HTTPS) →
 *   https-configure (every web server) → issue + configure-issued (ACME only: HTTP-01 on every
 *   web server of the platform, then the vhosts again). Any failure undoes the finished steps:
 *   the site is served as it was before. The same steps end install/clone/migrate `--https`.
 * - `site.https.renew` (the renewer, or a site whose names the certificate no longer covers):
 *   issue → configure-issued. A failure is recorded on the row (failures, last error, next attempt with
 *   backoff) and the working certificate stays: the row is changed only after the new
 *   certificate is in place on every web server.
 *
 * The renewer is one `setTimeout` chain with a clock passed in: a site is due at its renew time
 * (2/3 of the lifetime or 30 days before not-after, see certs.ts), when its certificate does not
 * cover all its names (an alias was added), or when it serves a self-signed stand-in for an
 * ACME certificate — never before its next attempt after a failure, and never while a task of the
 * site is queued or running.
 */
import { fail, isSpokeError, type Logger, type SiteTlsConfig } from '@spoke/shared';
import type { Db } from '../../namespace/store.js';
import type { TaskContext, TaskEngine } from '../../tasks/engine.js';
import type { Clock, TaskInfo } from '../../types.js';
import { StepLog, resumeRollback, runSteps, type Step } from '../../tasks/steps.js';
import type { SiteHttpsHook, SiteOps, WriteUndo } from '../ops.js';
import type { AcmeIssuer } from './acme.js';
import { checkCertificate, inspectChain, renewAt, retryDelayMs, selfSigned, uncovered } from './certs.js';
import type { HttpsRecord, HttpsSource, HttpsStore } from './store.js';

/** The HTTPS task kinds. */
export const HTTPS_TASKS = ['site.https', 'site.https.renew'] as const;

/** Failed renewals in a row from which `site ls` and `spoke status` say so. */
export const HTTPS_FAILING_AFTER = 1;

/** What `site https` takes. */
export interface SetHttpsInput {
  domain: string;
  on: boolean;
  /** "" / absent: acme when the master has an ACME directory, else self-signed. */
  source?: HttpsSource | '';
  /** operator: the chain (leaf first) and its key. */
  certPem?: string;
  keyPem?: string;
  redirect?: boolean;
  hsts?: boolean;
}

/** A site's HTTPS as `site show` reads it. */
export interface HttpsView extends HttpsRecord {
  /** Names of the site the served certificate does not cover. */
  uncovered: string[];
}

/** Undo data of set-https: the row as it was. */
interface RowUndo {
  domain: string;
  previous: HttpsRecord | null;
}

/** HTTPS of sites: tasks, the vhost hook, the renewer. */
export class SiteHttps implements SiteHttpsHook {
  private readonly sites: SiteOps;
  private readonly tasks: TaskEngine;
  private readonly store: HttpsStore;
  private readonly acme: AcmeIssuer | null;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly steps: StepLog;
  private readonly tickMs: number;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;

  constructor(deps: {
    /** The site tasks' shared operations (ops.ts): configure, files, converge, agent calls. */
    sites: SiteOps;
    tasks: TaskEngine;
    db: Db;
    store: HttpsStore;
    /** null: no ACME directory configured (acme is refused; --https makes self-signed). */
    acme: AcmeIssuer | null;
    /** The renewer's clock (tests move it forward). */
    clock: Clock;
    log: Logger;
    /** Time between renewer ticks. @default 60000 */
    tickMs?: number;
  }) {
    this.sites = deps.sites;
    this.tasks = deps.tasks;
    this.store = deps.store;
    this.acme = deps.acme;
    this.clock = deps.clock;
    this.log = deps.log;
    this.steps = new StepLog(deps.db);
    this.tickMs = deps.tickMs ?? 60_000;
    for (const kind of HTTPS_TASKS) {
      this.tasks.register(kind, (ctx) => this.run(ctx), {
        resume: async (ctx) => {
          throw await resumeRollback(ctx, this.stepsFor(ctx), this.steps);
        },
      });
    }
    this.sites.setHttps(this);
  }

  /** The ACME directory URL ("" = none configured). */
  get acmeDirectory(): string {
    return this.acme?.directoryUrl ?? '';
  }

  // ---------------------------------------------------------------- submitting

  /**
   * Queues `site.https` after checking everything that can be checked now; an operator
   * certificate is checked (key, names, dates, chain) and stored 0600 before the task is queued,
   * so the task row carries only its id.
   * @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED, INVALID_ARGUMENT, ACME_NOT_CONFIGURED,
   *   CERT_INVALID, CERT_KEY_MISMATCH, CERT_NAMES_MISMATCH, CERT_EXPIRED, CERT_CHAIN_INCOMPLETE
   */
  async set(input: SetHttpsInput): Promise<TaskInfo> {
    const s = this.sites.activeSite(input.domain, 'change HTTPS of');
    if (s.domain !== input.domain.toLowerCase()) throw fail('SITE_NOT_FOUND', `${input.domain} is an alias of ${s.domain}; name the site by its domain`);
    const hasCert = Boolean(input.certPem || input.keyPem);
    if (!input.on) {
      if (hasCert || input.source || input.redirect || input.hsts)
        throw fail('INVALID_ARGUMENT', 'site https DOMAIN off takes no certificate, --acme, --redirect or --hsts');
      return this.submit(s.domain, s.platform, { on: false });
    }
    const source: HttpsSource = input.source || (hasCert ? 'operator' : this.acme ? 'acme' : 'self-signed');
    if (source === 'acme') this.checkCanEnable(true);
    let certId = '';
    if (source === 'operator') {
      if (!input.certPem || !input.keyPem) throw fail('INVALID_ARGUMENT', 'an operator certificate needs both --cert FILE and --key FILE');
      await checkCertificate({ certPem: input.certPem, keyPem: input.keyPem, hosts: [s.domain, ...s.aliases], nowMs: this.clock() });
      certId = this.store.savePair(s.domain, { certPem: input.certPem, keyPem: input.keyPem });
    } else if (hasCert) {
      throw fail('INVALID_ARGUMENT', `--cert and --key go with an operator certificate, not ${source}`);
    }
    return this.submit(s.domain, s.platform, { on: true, source, redirect: input.redirect === true, hsts: input.hsts === true, certId });
  }

  /** Refuses `--https` when ACME is asked for and not configured. @throws SpokeError ACME_NOT_CONFIGURED */
  checkCanEnable(acme = false): void {
    if (acme && !this.acme) {
      throw fail(
        'ACME_NOT_CONFIGURED',
        'this master has no ACME directory: start spoke-master with --acme-directory URL --acme-email E (or use --cert/--key, or --self-signed)',
      );
    }
  }

  private submit(domain: string, platform: string, params: Record<string, unknown>): TaskInfo {
    return this.tasks.submit({ kind: 'site.https', entity: `site:${domain}`, locks: [`platform:${platform}`], params: { domain, platform, ...params } });
  }

  // ---------------------------------------------------------------- the vhost hook

  /** The certificate a site's vhost carries now (null: plain HTTP). */
  tlsFor(domain: string): SiteTlsConfig | null {
    const r = this.store.get(domain);
    if (!r || !r.enabled || !r.certId) return null;
    const pair = this.store.pair(domain, r.certId);
    return { certPem: pair.certPem, keyPem: pair.keyPem, redirect: r.redirect, hsts: r.hsts };
  }

  /** The site is served over HTTPS. */
  servedOverHttps(domain: string): boolean {
    const r = this.store.get(domain);
    return Boolean(r?.enabled && r.certId);
  }

  /**
   * Whether the served certificate covers `name` (an alias just added): an ACME or self-signed one
   * is replaced by the renewer; an operator's is the operator's to replace.
   */
  coverageNote(domain: string, name: string): string | null {
    const r = this.store.get(domain);
    if (!r?.enabled || !r.certId || uncovered(r.names, [name]).length === 0) return null;
    if (r.source === 'operator') {
      return `the operator certificate of ${domain} (names ${r.names.join(' ')}) does not cover ${name}: browsers warn for https://${name}/ until one that does is installed: spoke site https ${domain} on --cert FILE --key FILE`;
    }
    return `the certificate of ${domain} does not cover ${name} yet: the renewer orders one that does at its next tick (see: spoke site show ${domain})`;
  }

  /** A renamed site's certificate files follow it; the next renewer pass covers the new name. */
  renamed(from: string, to: string): void {
    this.store.moveSite(from, to);
  }

  /** A deleted site's certificate files go with it. */
  forget(domain: string): void {
    this.store.forgetSite(domain);
  }

  /** The steps of `--https` on install, clone, migrate: ACME when configured, else self-signed. */
  enableSteps(domain: string): Step[] {
    return this.onSteps(domain, { source: this.acme ? 'acme' : 'self-signed', redirect: false, hsts: false, certId: '' }, true);
  }

  // ---------------------------------------------------------------- reading

  /** A site's HTTPS (null: never turned on). */
  view(domain: string, names: readonly string[]): HttpsView | null {
    const r = this.store.get(domain);
    if (!r) return null;
    return { ...r, uncovered: r.certId ? uncovered(r.names, names) : [...names] };
  }

  /** The certificates served now (HTTPS on, a certificate in place), for the metrics. */
  servedCertificates(): { domain: string; notAfterMs: number; failures: number }[] {
    return this.store
      .list()
      .filter((r) => r.enabled && r.certId)
      .map((r) => ({ domain: r.domain, notAfterMs: r.notAfterMs, failures: r.failures }));
  }

  /** `view` for many sites from one read of every HTTPS row (a list of 100,000 sites made 100,000 queries). */
  viewer(): (domain: string, names: readonly string[]) => HttpsView | null {
    const rows = new Map(this.store.list().map((r) => [r.domain, r]));
    return (domain, names) => {
      const r = rows.get(domain);
      if (!r) return null;
      return { ...r, uncovered: r.certId ? uncovered(r.names, names) : [...names] };
    };
  }

  /** Sites whose renewal keeps failing, one line each. */
  failing(): string[] {
    return this.store
      .list()
      .filter((r) => r.enabled && r.failures >= HTTPS_FAILING_AFTER)
      .map((r) => `${r.domain}: ${r.failures} failed renewal${r.failures === 1 ? '' : 's'}: ${r.lastError}`);
  }

  // ---------------------------------------------------------------- running

  private async run(ctx: TaskContext): Promise<unknown> {
    const domain = String(ctx.task.params.domain);
    try {
      await runSteps(ctx, this.stepsFor(ctx), this.steps);
    } catch (e) {
      if (ctx.task.kind === 'site.https.renew') this.recordFailure(ctx, domain, e);
      throw e;
    }
    const r = this.store.get(domain);
    return r
      ? { domain, enabled: r.enabled, source: r.source, certificate: r.certKind, names: r.names, notAfter: new Date(r.notAfterMs).toISOString() }
      : { domain };
  }

  private recordFailure(ctx: TaskContext, domain: string, e: unknown): void {
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

  private stepsFor(ctx: TaskContext): Step[] {
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
  private onSteps(domain: string, want: { source: HttpsSource; redirect: boolean; hsts: boolean; certId: string }, soft = false): Step[] {
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

  // ---------------------------------------------------------------- renewer

  /** The sites due for a renewal at `now` (pure over the rows; see the module doc). */
  due(now: number, busy: ReadonlySet<string>): string[] {
    const out: string[] = [];
    for (const r of this.store.list()) {
      if (!r.enabled || r.source === 'operator' || busy.has(r.domain)) continue;
      if (r.nextAttemptMs > now) continue;
      let site;
      try {
        site = this.sites.ns.getSite(r.domain);
      } catch {
        continue;
      }
      if (site.status !== 'installed' && site.status !== 'disabled') continue;
      const names = [site.domain, ...site.aliases];
      const stale = !r.certId || r.certKind !== r.source || uncovered(r.names, names).length > 0 || (r.renewAtMs > 0 && r.renewAtMs <= now);
      if (stale) out.push(r.domain);
    }
    return out;
  }

  /** One renewer pass: queues `site.https.renew` for each due site. */
  tick(): TaskInfo[] {
    const now = this.clock();
    // The task queue is read only when a site is due (1,000 queued verifies read every minute
    // for nothing; issue 20).
    if (this.due(now, new Set()).length === 0) return [];
    const busy = new Set(
      // Every queued and running task (the default page is the newest 100).
      [...this.tasks.list({ state: 'queued', limit: 1_000_000 }), ...this.tasks.list({ state: 'running', limit: 1_000_000 })]
        .filter((t) => t.entity.startsWith('site:'))
        .map((t) => t.entity.slice('site:'.length)),
    );
    const queued: TaskInfo[] = [];
    for (const domain of this.due(now, busy)) {
      const s = this.sites.ns.getSite(domain);
      if (this.store.get(domain)?.source === 'acme' && !this.acme) continue;
      queued.push(
        this.tasks.submit({ kind: 'site.https.renew', entity: `site:${domain}`, locks: [`platform:${s.platform}`], params: { domain, platform: s.platform } }),
      );
      this.log.info({ site: domain }, 'certificate renewal queued');
    }
    return queued;
  }

  /** Starts the renewer. */
  start(): void {
    if (this.timer) return;
    const loop = () => {
      this.ticking = Promise.resolve()
        .then(() => void this.tick())
        .catch((e: unknown) => this.log.error({ err: (e as Error).message }, 'renewer tick failed'))
        .finally(() => {
          if (this.timer) this.timer = setTimeout(loop, this.tickMs).unref();
        });
    };
    this.timer = setTimeout(loop, Math.min(this.tickMs, 1000)).unref();
  }

  /** Stops the renewer. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.ticking;
  }
}
