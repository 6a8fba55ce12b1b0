/**
 * `site login-url`: a one-time login link, made on a web server of the site's platform by the
 * site's own code (the agent's site tool), never stored by the master.
 * - Drupal 7 and 8+: `user_pass_reset_url()` for user 1 plus `/login`, the link `drush uli`
 *   prints; Drupal accepts it once, within its password-reset timeout (24 hours by default).
 * - WordPress: Spoke's must-use plugin (`wp-content/mu-plugins/spoke-login.php`, rendered into
 *   the platform by settings.ts) logs in the first administrator when the link's secret matches a
 *   transient holding only the secret's SHA-256, deleted on first use; the master makes the
 *   secret, sends only its hash, and the link expires after `WP_LOGIN_TTL_S`.
 * - Drupal 6 has no API for it: the login page, with why.
 */
import { createHash, randomBytes } from 'node:crypto';
import { fail, isSpokeError } from '@spoke/shared';
import type { SiteOps } from './ops.js';

/** What `site login-url` answers. */
export interface LoginUrl {
  url: string;
  /** A one-time login link (false: the plain login page). */
  oneTime: boolean;
  note: string;
}

/** How long a WordPress one-time link is valid. */
export const WP_LOGIN_TTL_S = 15 * 60;

/** One-time login links. */
export class SiteLogin {
  constructor(private readonly t: SiteOps) {}

  /**
   * A one-time login link for the site, made on its first online web server.
   * @throws SpokeError SITE_NOT_FOUND, SITE_NOT_INSTALLED, PLATFORM_NOT_VERIFIED, AGENT_OFFLINE,
   *   SITE_TOOL_FAILED and the other agent codes
   */
  async url(domain: string): Promise<LoginUrl> {
    const s = this.t.ns.getSite(domain);
    if (s.status !== 'installed' && s.status !== 'disabled') {
      throw fail('SITE_NOT_INSTALLED', `site ${s.domain} is ${s.status}; a login link needs an installed site`);
    }
    const p = this.t.ns.getPlatform(s.platform);
    const { kind } = this.t.platformKind(p);
    const base = `http://${s.domain}`;
    if (kind === 'drupal6') {
      return { url: `${base}/?q=user/login`, oneTime: false, note: 'Drupal 6 has no one-time login API; this is its login page' };
    }
    const servers = this.t.webServers(p.name);
    const online = servers.find((x) => this.t.isOnline(x)) ?? (servers[0] as string);
    const disabled = s.status === 'disabled' ? ` (the site is disabled and answers 503 until: spoke site enable ${s.domain})` : '';
    if (kind === 'wordpress') {
      const secret = randomBytes(32).toString('base64url');
      const tokenHash = createHash('sha256').update(secret).digest('hex');
      const r = await this.t.callNow(online, { type: 'siteTool', tree: p.path, domain: s.domain, kind, op: 'loginUrl', tokenHash, ttlSeconds: WP_LOGIN_TTL_S });
      return {
        url: `${base}/?spoke-login=${secret}`,
        oneTime: true,
        note: `logs in as ${r.user || 'the first administrator'}; valid once, for ${WP_LOGIN_TTL_S / 60} minutes${disabled}`,
      };
    }
    try {
      const r = await this.t.callNow(online, { type: 'siteTool', tree: p.path, domain: s.domain, kind, op: 'loginUrl' });
      return {
        url: r.url,
        oneTime: true,
        note: `logs in as ${r.user}; valid once, within Drupal's password reset timeout (24 hours unless changed)${disabled}`,
      };
    } catch (e) {
      if (isSpokeError(e) && e.code === 'SITE_NOT_INSTALLED')
        throw fail('SITE_NOT_INSTALLED', `${e.message}; finish the install first (http://${s.domain}/install.php)`);
      throw e;
    }
  }
}
