/**
 * Runs a platform's installer for a new site, without a person: WordPress over HTTP against this
 * agent's own web server (the first `http.listen` address, with the site's name in the Host
 * header), exactly as a browser would fill in wp-admin/install.php; Drupal 7 and 8+ through
 * Drupal's own installer API from the PHP command line (php/sitephp.ts: `install_drupal()`
 * non-interactive, the database from the settings file Spoke wrote), as drush site-install does.
 * A Drupal 8+ platform that ships its own drush (composer's `vendor/bin/drush`) is installed
 * with it (`site:install`, the password set afterwards through the site tool, never on argv).
 * Drupal 6 is attempted the same way and refused with the PHP versions when its core cannot run
 * here. Other kinds are left for their web installer, with the reason.
 */
import { request } from 'node:http';
import { checkDomain, fail, type ErrorCode, type InstallSiteRequest, type Logger, type SiteInstallReport } from '@spoke/shared';
import type { HttpSettings } from './config.js';
import { PLATFORM_DRUSH, type SitePhp } from './php/sitephp.js';

/** What SiteInstaller needs. */
export interface SiteInstallerDeps {
  http: HttpSettings;
  /** Runs Drupal's installer. */
  php: SitePhp;
  /** Checks that this agent manages a web server (WebConfig.service). @throws SpokeError NO_HTTP_SERVICE */
  service: (pinnedImpl: string) => Promise<unknown>;
  log: Logger;
  /** Per request. @default 120000 */
  timeoutMs?: number;
}

/** One HTTP answer (the body cut at 4 MiB). */
export interface Answer {
  status: number;
  location: string;
  body: string;
  /** Response headers, names in lower case. */
  headers: Record<string, string | string[] | undefined>;
}

/**
 * One request to this host's web server at `at` with the site's name in the Host header, as a
 * browser would send it; redirects are not followed.
 * @throws SpokeError `opts.code` when the server cannot be reached or does not answer in time
 */
export function requestSite(
  at: { host: string; port: number },
  domain: string,
  method: 'GET' | 'POST',
  path: string,
  body: string | null,
  opts: { timeoutMs: number; where: string; code: ErrorCode },
): Promise<Answer> {
  const { timeoutMs, where, code } = opts;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Host: domain, 'User-Agent': 'spoke-agent' };
    if (body !== null) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    const req = request({ host: at.host, port: at.port, method, path, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 4 * 1024 * 1024) chunks.push(c);
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          location: String(res.headers.location ?? ''),
          body: Buffer.concat(chunks).toString('utf8'),
          headers: res.headers,
        }),
      );
      res.on('error', (e) => reject(fail(code, `${method} ${where}: ${e.message}`)));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${Math.round(timeoutMs / 1000)}s`)));
    req.on('error', (e: NodeJS.ErrnoException) =>
      reject(fail(code, `${method} ${where} failed: ${e.code === 'ECONNREFUSED' ? 'connection refused (is the web server running?)' : (e.code ?? e.message)}`)),
    );
    req.end(body ?? undefined);
  });
}

/** The address to reach this host's web server from the agent, from an `http.listen` value. */
export function localAddress(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const port = Number(i < 0 ? listen : listen.slice(i + 1));
  let host = i < 0 ? '' : listen.slice(0, i);
  if (host === '' || host === '*' || host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '[::]') host = '::1';
  else if (host.startsWith('[')) host = host.slice(1, -1);
  return { host, port };
}

/** Text of an HTML page as one line (scripts and styles dropped, tags removed, entities decoded), at most 300 characters. */
export function htmlText(html: string): string {
  const text = html
    .replace(/<(script|style|head)\b[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&nbsp;/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#0?39;|&#8217;|&rsquo;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim();
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

/** WordPress's own rule for user names (sanitize_user, strict). */
const WP_USER = /^[A-Za-z0-9 _.@-]{1,60}$/;

/** Runs site installers. */
export class SiteInstaller {
  private readonly deps: SiteInstallerDeps;

  constructor(deps: SiteInstallerDeps) {
    this.deps = deps;
  }

  /**
   * Installs the site when its kind has an installer that runs without a person.
   * @throws SpokeError INVALID_DOMAIN, INVALID_ARGUMENT, NO_HTTP_SERVICE, SITE_INSTALL_FAILED
   */
  async install(req: InstallSiteRequest): Promise<SiteInstallReport> {
    checkDomain(req.domain);
    const url = `http://${req.domain}/`;
    if (req.kind === 'wordpress') return this.wordpress(req, url);
    if (req.kind === 'drupal6' || req.kind === 'drupal7' || req.kind === 'drupal8') return this.drupal(req, url);
    return { ran: false, reason: `Spoke has no non-interactive installer for kind ${req.kind || 'generic'}; finish the install at ${url}`, url, profile: '' };
  }

  private async drupal(req: InstallSiteRequest, url: string): Promise<SiteInstallReport> {
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(req.profile))
      throw fail('INVALID_ARGUMENT', `install profile ${JSON.stringify(req.profile)} is not a Drupal machine name`);
    if (!/^[a-z]{2,3}(-[a-z0-9]{2,8})?$/i.test(req.locale || 'en'))
      throw fail('INVALID_ARGUMENT', `locale ${JSON.stringify(req.locale)} is not a language code such as en or pt-br`);
    if (!req.adminPassword) throw fail('INVALID_ARGUMENT', 'the admin password is empty');
    const log = this.deps.log.child({ site: req.domain, profile: req.profile });
    const site = { tree: req.tree, domain: req.domain, kind: req.kind };
    const locale = req.locale || 'en';
    const timeoutMs = this.deps.timeoutMs ?? 10 * 60_000;
    const failed = (m: string) => fail('SITE_INSTALL_FAILED', m.split(req.adminPassword).join('***'));
    try {
      if (req.kind === 'drupal8' && (await this.deps.php.hasDrush(site))) {
        // The platform's own drush, as the issue of a composer-built platform expects; the
        // password is set afterwards through the site tool, never on a command line.
        await this.deps.php.run('prepareInstall', site, {});
        const args = [
          'site:install',
          req.profile,
          '--yes',
          `--uri=http://${req.domain}`,
          `--sites-subdir=${req.domain}`,
          `--site-name=${req.title}`,
          `--site-mail=${req.adminEmail}`,
          `--account-name=${req.adminUser}`,
          `--account-mail=${req.adminEmail}`,
          `--locale=${locale}`,
        ];
        const r = await this.deps.php.runScript(site, PLATFORM_DRUSH, args, { timeoutMs });
        if (r.code !== 0) {
          const text = `${r.stderr}\n${r.stdout}`.replace(/\s+/g, ' ').trim();
          if (/already installed|existing installation/i.test(text)) {
            return { ran: false, reason: `Drupal is already installed in the site's database (${url})`, url, profile: req.profile };
          }
          throw failed(
            `${PLATFORM_DRUSH} site:install (profile ${req.profile}) exited with ${r.code ?? r.signal}: ${text.length > 400 ? `...${text.slice(-400)}` : text || 'no output'}`,
          );
        }
        await this.deps.php.run('setPassword', site, { adminUser: req.adminUser, adminPassword: req.adminPassword });
        log.info({ via: 'drush' }, 'Drupal installed');
        return { ran: true, reason: '', url, profile: req.profile };
      }
      await this.deps.php.run(
        'install',
        site,
        { profile: req.profile, locale, title: req.title, adminUser: req.adminUser, adminEmail: req.adminEmail, adminPassword: req.adminPassword },
        { timeoutMs },
      );
    } catch (e) {
      const err = e as { code?: string; message?: string };
      if (err.code === 'SITE_ALREADY_INSTALLED') {
        log.info('Drupal is already installed');
        return { ran: false, reason: `Drupal is already installed in the site's database (${url})`, url, profile: req.profile };
      }
      if (err.code === 'SITE_TOOL_UNSUPPORTED' || err.code === 'SITE_TOOL_FAILED' || err.code === 'SITE_NOT_INSTALLED') {
        throw failed(`Drupal installer (profile ${req.profile}): ${err.message ?? ''}`);
      }
      throw e;
    }
    log.info('Drupal installed');
    return { ran: true, reason: '', url, profile: req.profile };
  }

  private async wordpress(req: InstallSiteRequest, url: string): Promise<SiteInstallReport> {
    if (!WP_USER.test(req.adminUser)) {
      throw fail('INVALID_ARGUMENT', `admin user ${JSON.stringify(req.adminUser)} is not a WordPress user name (1-60 of A-Z a-z 0-9 space _ . @ -)`);
    }
    if (!/^[^\s@]+@[^\s@]+$/.test(req.adminEmail)) throw fail('INVALID_ARGUMENT', `admin email ${JSON.stringify(req.adminEmail)} is not an email address`);
    if (!req.adminPassword) throw fail('INVALID_ARGUMENT', 'the admin password is empty');
    await this.deps.service('');
    const listen = this.deps.http.listen[0];
    if (!listen) throw fail('NO_HTTP_SERVICE', 'http.listen in agent.json is empty: the agent cannot reach its web server to run the installer');
    const at = localAddress(listen);
    const where = `http://${req.domain}/wp-admin/install.php (via ${at.host}:${at.port})`;
    const log = this.deps.log.child({ site: req.domain, via: `${at.host}:${at.port}` });

    // A reload the web server was just sent applies asynchronously: until the site's vhost is
    // live the name may land on another server block. Ask again for a few seconds.
    let first = await this.send(at, req.domain, 'GET', '/wp-admin/install.php', null, where);
    for (let i = 0; i < 20 && first.status < 500 && !/wp-admin|wordpress|setup-config/i.test(`${first.location} ${first.body}`); i++) {
      await new Promise((r) => setTimeout(r, 250));
      first = await this.send(at, req.domain, 'GET', '/wp-admin/install.php', null, where);
    }
    if (first.status === 302 && /setup-config\.php/.test(first.location)) {
      throw fail('SITE_INSTALL_FAILED', `${where} redirects to setup-config.php: the site has no wp-config.php (write the site's settings first)`);
    }
    if (first.status !== 200) throw fail('SITE_INSTALL_FAILED', `${where} answered ${first.status}: ${htmlText(first.body) || 'no text'}`);
    if (/<h1[^>]*>\s*Already Installed\s*<\/h1>/i.test(first.body)) {
      log.info('WordPress is already installed');
      return { ran: false, reason: `WordPress is already installed at ${url}`, url, profile: '' };
    }
    if (!/name="weblog_title"/.test(first.body)) {
      throw fail('SITE_INSTALL_FAILED', `${where} does not show the WordPress install form: ${htmlText(first.body) || 'empty page'}`);
    }
    const form = new URLSearchParams({
      weblog_title: req.title,
      user_name: req.adminUser,
      admin_password: req.adminPassword,
      admin_password2: req.adminPassword,
      pw_weak: '1',
      admin_email: req.adminEmail,
      blog_public: '1',
      language: '',
    }).toString();
    const done = await this.send(at, req.domain, 'POST', '/wp-admin/install.php?step=2', form, where);
    if (done.status === 200 && /<h1[^>]*>\s*Success!\s*<\/h1>/i.test(done.body)) {
      log.info('WordPress installed');
      return { ran: true, reason: '', url, profile: '' };
    }
    const message =
      /<p class="message">([\s\S]*?)<\/p>/.exec(done.body)?.[1] ?? /<div class="wp-die-message">([\s\S]*?)<\/div>/.exec(done.body)?.[1] ?? done.body;
    // The form WordPress shows again carries the password in an attribute (dropped with the tags);
    // make sure no copy of it reaches a log.
    const text = (htmlText(message) || 'empty page').split(req.adminPassword).join('***');
    throw fail('SITE_INSTALL_FAILED', `WordPress installer at ${where} answered ${done.status} without success: ${text}`);
  }

  /** One request to the local web server with the site's Host header; redirects are not followed. */
  private send(at: { host: string; port: number }, domain: string, method: 'GET' | 'POST', path: string, body: string | null, where: string): Promise<Answer> {
    return requestSite(at, domain, method, path, body, { timeoutMs: this.deps.timeoutMs ?? 120_000, where, code: 'SITE_INSTALL_FAILED' });
  }
}
