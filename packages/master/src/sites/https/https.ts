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
 *
 * The steps of the tasks are steps.ts; certificates (checks, self-signed, renew times) are
 * certs.ts; the ACME client is acme.ts; rows and certificate files are store.ts.
 */
import { fail, type Logger, type SiteTlsConfig } from '@spoke/shared';
import type { Db } from '../../namespace/store.js';
import type { TaskContext, TaskEngine } from '../../tasks/engine.js';
import type { Clock, TaskInfo } from '../../types.js';
import { StepLog, resumeRollback, runSteps, type Step } from '../../tasks/steps.js';
import type { SiteHttpsHook, SiteOps } from '../ops.js';
import type { AcmeIssuer } from './acme.js';
import { checkCertificate, uncovered } from './certs.js';
import { HttpsSteps } from './steps.js';
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

/** HTTPS of sites: tasks, the vhost hook, the renewer. */
export class SiteHttps implements SiteHttpsHook {
  private readonly sites: SiteOps;
  private readonly tasks: TaskEngine;
  private readonly store: HttpsStore;
  private readonly acme: AcmeIssuer | null;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly steps: StepLog;
  /** The tasks' steps (steps.ts). */
  private readonly taskSteps: HttpsSteps;
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
    this.taskSteps = new HttpsSteps({ sites: deps.sites, store: deps.store, acme: deps.acme, clock: deps.clock });
    this.tickMs = deps.tickMs ?? 60_000;
    for (const kind of HTTPS_TASKS) {
      this.tasks.register(kind, (ctx) => this.run(ctx), {
        resume: async (ctx) => {
          throw await resumeRollback(ctx, this.taskSteps.stepsFor(ctx), this.steps);
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
    return this.taskSteps.onSteps(domain, { source: this.acme ? 'acme' : 'self-signed', redirect: false, hsts: false, certId: '' }, true);
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
      await runSteps(ctx, this.taskSteps.stepsFor(ctx), this.steps);
    } catch (e) {
      if (ctx.task.kind === 'site.https.renew') this.taskSteps.recordFailure(ctx, domain, e);
      throw e;
    }
    const r = this.store.get(domain);
    return r
      ? { domain, enabled: r.enabled, source: r.source, certificate: r.certKind, names: r.names, notAfter: new Date(r.notAfterMs).toISOString() }
      : { domain };
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
