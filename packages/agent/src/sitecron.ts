/**
 * One cron run of a site on this web server, run the way the web server runs the site's code —
 * never as root:
 *   Drupal 7   GET /cron.php?cron_key=KEY   (200; 403 = wrong key or maintenance mode)
 *   Drupal 8+  GET /cron/KEY                (204)
 *   WordPress  GET /wp-cron.php?doing_wp_cron (200)
 * each sent to this agent's own web server (the first `http.listen` address) with the site's name
 * in the Host header; the Drupal cron key is read with Spoke's site tool (php/sitephp.ts, as
 * php.user). MediaWiki: `php maintenance/runJobs.php --server http://DOMAIN --maxtime N --result
 * json` in the platform tree as php.user (its jobs are its cron).
 */
import { checkDomain, fail, type Logger, type SiteCronReport, type SiteCronRequest } from '@spoke/shared';
import type { HttpSettings } from './config.js';
import { htmlText, localAddress, requestSite } from './siteinstall.js';
import { tail, type PhpRun, type SitePhp } from './php/sitephp.js';

/** What SiteCron needs. */
export interface SiteCronDeps {
  http: HttpSettings;
  php: Pick<SitePhp, 'run' | 'runScript'>;
  /** Checks that this agent manages a web server (WebConfig.service). @throws SpokeError NO_HTTP_SERVICE */
  service: (pinnedImpl: string) => Promise<unknown>;
  log: Logger;
  /** Per HTTP request / runJobs.php run. @default 600000 */
  timeoutMs?: number;
  /** runJobs.php --maxtime (seconds). @default 300 */
  maxJobSeconds?: number;
}

/** The runJobs.php arguments for a MediaWiki site. */
export function runJobsArgs(domain: string, maxSeconds: number): string[] {
  checkDomain(domain);
  return ['--server', `http://${domain}`, '--maxtime', String(maxSeconds), '--result', 'json'];
}

/** What runJobs.php --result json printed, as one line; throws when it failed. @throws SpokeError SITE_CRON_FAILED */
export function runJobsOutcome(domain: string, r: PhpRun): string {
  if (r.signal) throw fail('SITE_CRON_FAILED', `${domain}: maintenance/runJobs.php was killed (${r.signal})${tail(r.stderr)}`);
  const at = r.stdout.lastIndexOf('{');
  let parsed: { jobs?: unknown[]; reached?: string } | undefined;
  // --result json prints one JSON object last (its own lines are pretty-printed).
  for (let i = at; i >= 0 && !parsed; i = r.stdout.lastIndexOf('{', i - 1)) {
    try {
      parsed = JSON.parse(r.stdout.slice(i)) as typeof parsed;
    } catch {
      if (i === 0) break;
    }
  }
  if (r.code !== 0) throw fail('SITE_CRON_FAILED', `${domain}: maintenance/runJobs.php exited with ${r.code}${tail(r.stderr || r.stdout)}`);
  if (!parsed) return `runJobs.php finished${tail(r.stdout)}`;
  const jobs = Array.isArray(parsed.jobs) ? parsed.jobs.length : 0;
  return `runJobs.php ran ${jobs} job${jobs === 1 ? '' : 's'}${parsed.reached ? ` (${parsed.reached})` : ''}`;
}

/** Runs sites' cron. */
export class SiteCron {
  private readonly deps: SiteCronDeps;

  constructor(deps: SiteCronDeps) {
    this.deps = deps;
  }

  /**
   * Runs the site's cron once.
   * @throws SpokeError INVALID_DOMAIN, SITE_TOOL_UNSUPPORTED (a kind without cron), NO_HTTP_SERVICE,
   *   SITE_NOT_INSTALLED, SITE_TOOL_FAILED (reading the cron key), SITE_CRON_FAILED
   */
  async run(req: SiteCronRequest): Promise<SiteCronReport> {
    checkDomain(req.domain);
    const t0 = Date.now();
    const log = this.deps.log.child({ site: req.domain, kind: req.kind });
    const site = { tree: req.tree, domain: req.domain, kind: req.kind };
    let r: Omit<SiteCronReport, 'ms'>;
    if (req.kind === 'mediawiki') {
      const out = await this.deps.php.runScript(site, 'maintenance/runJobs.php', runJobsArgs(req.domain, this.deps.maxJobSeconds ?? 300), {
        timeoutMs: this.deps.timeoutMs ?? 600_000,
      });
      r = { method: 'php maintenance/runJobs.php', status: 0, message: runJobsOutcome(req.domain, out) };
    } else if (req.kind === 'drupal7' || req.kind === 'drupal8') {
      const a = await this.deps.php.run('cronKey', site, {}, { timeoutMs: 120_000 });
      const key = String(a.key ?? '');
      if (!/^[A-Za-z0-9_-]{1,128}$/.test(key))
        throw fail('SITE_CRON_FAILED', `${req.domain}: the site has no usable cron key (${key ? 'unexpected characters' : 'empty'})`);
      const path = req.kind === 'drupal7' ? `/cron.php?cron_key=${key}` : `/cron/${key}`;
      const shown = req.kind === 'drupal7' ? '/cron.php?cron_key=…' : '/cron/…';
      r = req.kind === 'drupal7' ? await this.http(req.domain, path, shown, [200], DRUPAL7_SIGN) : await this.http(req.domain, path, shown, [204]);
    } else if (req.kind === 'wordpress') {
      r = await this.http(req.domain, '/wp-cron.php?doing_wp_cron', '/wp-cron.php?doing_wp_cron', [200], WORDPRESS_SIGN);
    } else {
      throw fail('SITE_TOOL_UNSUPPORTED', `${req.domain}: Spoke runs no cron for a ${req.kind || 'generic'} site`);
    }
    const ms = Date.now() - t0;
    log.info({ ms, status: r.status }, 'cron ran');
    return { ...r, ms };
  }

  /** GETs `path` from the local web server; `ok` lists the statuses that mean success, `sign` the header only the application sends. */
  private async http(domain: string, path: string, shown: string, ok: number[], sign?: AppSign): Promise<Omit<SiteCronReport, 'ms'>> {
    await this.deps.service('');
    const listen = this.deps.http.listen[0];
    if (!listen) throw fail('NO_HTTP_SERVICE', 'http.listen in agent.json is empty: the agent cannot reach its web server to run cron');
    const at = localAddress(listen);
    const method = `GET ${shown} via ${at.host}:${at.port}`;
    const where = `http://${domain}${shown} (via ${at.host}:${at.port})`;
    const a = await requestSite(at, domain, 'GET', path, null, { timeoutMs: this.deps.timeoutMs ?? 600_000, where, code: 'SITE_CRON_FAILED' });
    const text = htmlText(a.body);
    if (!ok.includes(a.status)) {
      const why =
        a.status === 403
          ? ' (the cron key was refused, or the site is in maintenance mode)'
          : a.status === 503
            ? ' (the site is disabled or in maintenance)'
            : '';
      throw fail('SITE_CRON_FAILED', `GET ${where} answered ${a.status}${why}${text ? `: ${text}` : ''}`);
    }
    if (sign && !sign.expires.test(String(a.headers.expires ?? ''))) {
      throw fail(
        'SITE_CRON_FAILED',
        `GET ${where} answered ${a.status} without ${sign.app}'s headers: not the site's answer (is its vhost in place?)${text ? `: ${text}` : ''}`,
      );
    }
    return { method, status: a.status, message: `${a.status}${text ? ` ${text}` : ''}` };
  }
}

/** A header only the application's cron script sends. */
interface AppSign {
  app: string;
  expires: RegExp;
}

/** drupal_page_header(), sent by every fully bootstrapped Drupal 7 request. */
const DRUPAL7_SIGN: AppSign = { app: 'Drupal', expires: /19 Nov 1978/ };
/** wp-cron.php's own header. */
const WORDPRESS_SIGN: AppSign = { app: "WordPress's wp-cron.php", expires: /11 Jan 1984/ };
