/**
 * Web server config templates: `{{var}}` substitution with every value checked, so nothing that
 * comes from the master (platform name, tree path) or from agent.json can change the structure
 * of an nginx or apache file. The default templates live in deploy/templates and are built into
 * the bundle; `http.templatesDir` in agent.json overrides them per agent.
 *
 * Rules: `{{name}}` (lowercase letters and `_`) is replaced by its value; a line that uses a list
 * variable (`listen`) is written once per value; an unknown variable is an error. A line that is
 * only `{{#name}}` opens a section and `{{/name}}` closes it: the lines between are written only
 * when `name` has a value (a non-empty string or list).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkDomain, fail } from '@spoke/shared';
import NGINX_PLATFORM from '../../../deploy/templates/nginx/platform.conf?raw';
import NGINX_SITE from '../../../deploy/templates/nginx/site.conf?raw';
import NGINX_SITE_DISABLED from '../../../deploy/templates/nginx/site-disabled.conf?raw';
import APACHE_PLATFORM from '../../../deploy/templates/apache/platform.conf?raw';
import APACHE_SITE from '../../../deploy/templates/apache/site.conf?raw';
import APACHE_SITE_DISABLED from '../../../deploy/templates/apache/site-disabled.conf?raw';

/** The web servers the agent can configure. */
export type HttpImpl = 'nginx' | 'apache';

/** Built-in templates, per impl and template name. */
export const BUILTIN_TEMPLATES: Readonly<Record<HttpImpl, Readonly<Record<string, string>>>> = {
  nginx: { 'platform.conf': NGINX_PLATFORM, 'site.conf': NGINX_SITE, 'site-disabled.conf': NGINX_SITE_DISABLED },
  apache: { 'platform.conf': APACHE_PLATFORM, 'site.conf': APACHE_SITE, 'site-disabled.conf': APACHE_SITE_DISABLED },
};

/** Variables a template sees. */
export type TemplateVars = Record<string, string | readonly string[]>;

/**
 * Characters no template value may contain: whitespace and control characters (a newline would
 * start a new directive), `;` `{` `}` (nginx structure), quotes and backslash (quoting), `#`
 * (comments), `$` (nginx variables), `<` `>` (apache sections), `*` `?` `[` `]` (apache path
 * wildcards), `|` `&` `(` `)`.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x20\x7f;{}"'`\\#$<>|&*?()[\]]/u;

/**
 * Checks one value for a config file.
 * @throws SpokeError UNSAFE_CONFIG_VALUE
 */
export function checkConfigValue(what: string, value: string): string {
  if (value === '') throw fail('UNSAFE_CONFIG_VALUE', `${what} is empty`);
  const m = UNSAFE.exec(value);
  if (m) {
    throw fail(
      'UNSAFE_CONFIG_VALUE',
      `${what} ${JSON.stringify(value)} contains ${JSON.stringify(m[0])}, which cannot go into a web server config; rename or move it`,
    );
  }
  return value;
}

/** A checked absolute path for a config file. @throws SpokeError UNSAFE_CONFIG_VALUE */
export function checkConfigPath(what: string, value: string): string {
  checkConfigValue(what, value);
  if (!value.startsWith('/') || value.split('/').some((s, i) => i > 0 && (s === '' || s === '.' || s === '..'))) {
    throw fail('UNSAFE_CONFIG_VALUE', `${what} ${JSON.stringify(value)} must be an absolute, normalised path`);
  }
  return value;
}

const HOST = /^(\*|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/;

/**
 * Checks a listen address: `PORT`, `HOST:PORT`, `*:PORT` or `[IPv6]:PORT`.
 * @throws SpokeError UNSAFE_CONFIG_VALUE
 */
export function checkListen(value: string): string {
  const bad = () => fail('UNSAFE_CONFIG_VALUE', `listen address ${JSON.stringify(value)} is not PORT, HOST:PORT, *:PORT or [IPv6]:PORT`);
  const i = value.lastIndexOf(':');
  const host = i < 0 ? '' : value.slice(0, i);
  const port = i < 0 ? value : value.slice(i + 1);
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw bad();
  if (i >= 0 && !HOST.test(host)) throw bad();
  return value;
}

/**
 * Checks a php-fpm address: a socket path or HOST:PORT.
 * @throws SpokeError UNSAFE_CONFIG_VALUE
 */
export function checkFpmAddress(value: string): string {
  if (value.startsWith('/')) return checkConfigPath('php-fpm socket', value);
  try {
    return checkListen(value);
  } catch {
    throw fail('UNSAFE_CONFIG_VALUE', `php-fpm address ${JSON.stringify(value)} is neither a socket path nor HOST:PORT`);
  }
}

const VAR = /\{\{([a-z_]+)\}\}/g;
const SECTION = /^\s*\{\{([#/])([a-z_]+)\}\}\s*$/;

/**
 * Renders a template. Every value must be free of newlines (callers check the rest with
 * checkConfigValue before building the vars).
 * @throws SpokeError TEMPLATE_INVALID for an unknown variable, a line with two list variables,
 *   or a malformed `{{`; UNSAFE_CONFIG_VALUE for a value with a line break
 */
export function renderTemplate(name: string, text: string, vars: TemplateVars): string {
  for (const [k, v] of Object.entries(vars)) {
    for (const x of typeof v === 'string' ? [v] : v) {
      if (/[\r\n\0]/.test(x)) throw fail('UNSAFE_CONFIG_VALUE', `template value ${k} contains a line break`);
    }
  }
  const out: string[] = [];
  /** Open sections: name, whether their lines are written, where they opened. */
  const open: { name: string; keep: boolean; where: string }[] = [];
  text.split('\n').forEach((line, i) => {
    const where = `${name}:${i + 1}`;
    const section = SECTION.exec(line);
    if (section) {
      const [, mark, sec] = section as unknown as [string, string, string];
      if (!Object.prototype.hasOwnProperty.call(vars, sec)) {
        throw fail('TEMPLATE_INVALID', `${where}: unknown section variable {{${mark}${sec}}} (known: ${Object.keys(vars).sort().join(', ')})`);
      }
      if (mark === '#') {
        const v = vars[sec] as string | readonly string[];
        open.push({ name: sec, keep: v.length > 0, where });
      } else {
        const top = open.pop();
        if (top?.name !== sec) {
          throw fail('TEMPLATE_INVALID', `${where}: {{/${sec}}} closes ${top ? `{{#${top.name}}} from ${top.where}` : 'no open section'}`);
        }
      }
      return;
    }
    const used = [...line.matchAll(VAR)].map((m) => m[1] as string);
    const stray = line.replace(VAR, '');
    if (stray.includes('{{') || stray.includes('}}')) {
      throw fail('TEMPLATE_INVALID', `${where}: malformed variable (use {{name}} with lowercase letters and _)`);
    }
    for (const u of used) {
      if (!Object.prototype.hasOwnProperty.call(vars, u)) {
        throw fail('TEMPLATE_INVALID', `${where}: unknown variable {{${u}}} (known: ${Object.keys(vars).sort().join(', ')})`);
      }
    }
    const lists = [...new Set(used.filter((u) => typeof vars[u] !== 'string'))];
    if (lists.length > 1) throw fail('TEMPLATE_INVALID', `${where}: one line can use only one list variable (${lists.join(', ')})`);
    if (open.some((o) => !o.keep)) return;
    const list = lists[0];
    const values = list === undefined ? [undefined] : (vars[list] as readonly string[]);
    for (const item of values) {
      out.push(line.replace(VAR, (_m, k: string) => (k === list ? (item as string) : (vars[k] as string))));
    }
  });
  const unclosed = open.pop();
  if (unclosed) throw fail('TEMPLATE_INVALID', `${unclosed.where}: section {{#${unclosed.name}}} is never closed ({{/${unclosed.name}}})`);
  return out.join('\n');
}

/** What a platform config is rendered from. */
export interface PlatformConfigInput {
  impl: HttpImpl;
  platform: string;
  kind: string;
  /** Namespace path of the platform. */
  tree: string;
  /** Where the platform lives on this host (--root applied). */
  root: string;
  listen: readonly string[];
  /** php-fpm socket path or HOST:PORT. */
  fpm: string;
}

/** Front controllers: Drupal 6/7 take the path in ?q=, everything else reads REQUEST_URI. */
function frontController(kind: string): string {
  return /^drupal[67]$/.test(kind) ? '/index.php?q=$uri&$args' : '/index.php?$query_string';
}

/** Apache VirtualHost addresses from listen values (`80` → `*:80`). */
function apacheAddress(listen: string): string {
  return /^\d+$/.test(listen) ? `*:${listen}` : listen;
}

/**
 * The variables of a platform template, every value checked.
 * @throws SpokeError UNSAFE_CONFIG_VALUE
 */
export function platformVars(input: PlatformConfigInput): TemplateVars {
  const platform = checkConfigValue('platform name', input.platform);
  const kind = checkConfigValue('platform kind', input.kind);
  const tree = checkConfigPath('platform path', input.tree);
  const root = checkConfigPath('platform host path', input.root);
  if (input.listen.length === 0) throw fail('UNSAFE_CONFIG_VALUE', 'no listen address: set http.listen in agent.json');
  const listen = input.listen.map(checkListen);
  const fpm = checkFpmAddress(input.fpm);
  const unix = fpm.startsWith('/');
  return {
    platform,
    kind,
    tree,
    root,
    listen,
    apache_addresses: listen.map(apacheAddress).join(' '),
    fpm_socket: fpm,
    fastcgi_pass: unix ? `unix:${fpm}` : fpm,
    php_handler: unix ? `proxy:unix:${fpm}|fcgi://localhost` : `proxy:fcgi://${fpm}`,
    // From code, never from input: may use nginx variables.
    front_controller: frontController(kind),
  };
}

/**
 * The template text to use: `<templatesDir>/<impl>/<name>` when that file exists, else the
 * built-in one. Read at every use, so an edited override applies at the next verify.
 * @throws SpokeError TEMPLATE_INVALID when the override exists but cannot be read
 */
export async function loadTemplate(impl: HttpImpl, name: string, templatesDir: string): Promise<{ text: string; source: string }> {
  if (templatesDir) {
    const p = join(templatesDir, impl, name);
    try {
      return { text: await readFile(p, 'utf8'), source: p };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw fail('TEMPLATE_INVALID', `cannot read template ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
  }
  const text = BUILTIN_TEMPLATES[impl][name];
  if (text === undefined) throw fail('TEMPLATE_INVALID', `no built-in ${impl} template ${name}`);
  return { text, source: `built-in ${impl}/${name}` };
}

/**
 * Renders the platform config of one platform.
 * @throws SpokeError UNSAFE_CONFIG_VALUE, TEMPLATE_INVALID
 */
export async function renderPlatformConfig(input: PlatformConfigInput, templatesDir: string): Promise<{ text: string; source: string }> {
  const vars = platformVars(input);
  const t = await loadTemplate(input.impl, 'platform.conf', templatesDir);
  return { text: renderTemplate(t.source, t.text, vars), source: t.source };
}

/** What a site's vhost is rendered from: its platform's input plus the site's names and state. */
export interface SiteConfigInput extends PlatformConfigInput {
  domain: string;
  /** Other names of the site. */
  aliases: readonly string[];
  /** The aliases answer 301 to the domain instead of serving the site. */
  redirectAliases: boolean;
  /** Names that only answer 301 to the domain whatever `redirectAliases` says (a renamed site's old name). */
  redirectNames?: readonly string[];
  /** false: every name answers 503 with a maintenance page. */
  enabled: boolean;
  /** Host path of the ACME challenge dir every vhost serves on its plain listen addresses. */
  acmeDir: string;
  /** The site's 443 block; null: plain HTTP only. */
  https?: SiteHttpsInput | null;
}

/** A site's HTTPS: where the 443 block listens, its certificate files, redirect and HSTS. */
export interface SiteHttpsInput {
  listen: readonly string[];
  /** Host paths of the certificate chain and key (written by the agent's tls store). */
  cert: string;
  key: string;
  /** Port 80 answers 301 to https (ACME challenges excepted). */
  redirect: boolean;
  /** Strict-Transport-Security on the 443 block. */
  hsts: boolean;
}

/**
 * The variables of a site template: the platform's, plus `domain`, `server_names` (the names the
 * site block answers, space-separated), `aliases` (list: the aliases it serves), `redirect_names`
 * / `redirect_aliases` / `redirect_name` (the names that redirect, as text, list and the first
 * one: the aliases with redirectAliases, then the redirect-only names), `all_names` and `all_aliases` (every name, for the
 * disabled page). Every name is checked as a domain. HTTPS: `https` (non-empty with a
 * certificate), `https_listen` (list), `apache_https_addresses`, `ssl_certificate`,
 * `ssl_certificate_key`, `redirect_https` / `hsts` (non-empty when asked), `plain_listen` (the
 * plain addresses the site answers on: `listen`, or none when port 80 only redirects) and
 * `acme_dir` (served at /.well-known/acme-challenge/ on port 80).
 * @throws SpokeError INVALID_DOMAIN, UNSAFE_CONFIG_VALUE
 */
export function siteVars(input: SiteConfigInput): TemplateVars {
  const domain = checkConfigValue('site domain', checkDomain(input.domain));
  const aliases: string[] = [];
  for (const a of input.aliases) {
    checkConfigValue('site alias', checkDomain(a));
    if (a === domain) throw fail('INVALID_DOMAIN', `alias ${a} is the site's own domain; remove it from the aliases`);
    if (!aliases.includes(a)) aliases.push(a);
  }
  const only: string[] = [];
  for (const a of input.redirectNames ?? []) {
    checkConfigValue('site redirect name', checkDomain(a));
    if (a === domain) throw fail('INVALID_DOMAIN', `redirect name ${a} is the site's own domain`);
    if (aliases.includes(a)) throw fail('INVALID_DOMAIN', `${a} is both an alias and a redirect-only name of ${domain}`);
    if (!only.includes(a)) only.push(a);
  }
  const served = input.redirectAliases ? [] : aliases;
  const redirected = [...(input.redirectAliases ? aliases : []), ...only];
  const platform = platformVars(input);
  const https = input.https ?? null;
  const httpsListen = https ? https.listen.map(checkListen) : [];
  if (https && httpsListen.length === 0) throw fail('UNSAFE_CONFIG_VALUE', 'no https listen address: set http.httpsListen in agent.json');
  const redirectHttps = https?.redirect === true;
  return {
    ...platform,
    acme_dir: checkConfigPath('acme challenge dir', input.acmeDir),
    https: https ? 'on' : '',
    https_listen: httpsListen,
    apache_https_addresses: httpsListen.map(apacheAddress).join(' '),
    ssl_certificate: https ? checkConfigPath('certificate file', https.cert) : '',
    ssl_certificate_key: https ? checkConfigPath('certificate key file', https.key) : '',
    redirect_https: redirectHttps ? 'on' : '',
    // The plain addresses the site itself answers on: none when port 80 only redirects.
    plain_listen: redirectHttps ? [] : (platform.listen as string[]),
    hsts: https?.hsts ? 'on' : '',
    domain,
    server_names: [domain, ...served].join(' '),
    aliases: served,
    redirect_names: redirected.join(' '),
    redirect_aliases: redirected,
    redirect_name: redirected[0] ?? '',
    all_names: [domain, ...aliases, ...only].join(' '),
    all_aliases: [...aliases, ...only],
  };
}

/** The template a site uses: its vhost, or the maintenance page when disabled. */
export function siteTemplateName(enabled: boolean): string {
  return enabled ? 'site.conf' : 'site-disabled.conf';
}

/**
 * Renders the vhost of one site.
 * @throws SpokeError INVALID_DOMAIN, UNSAFE_CONFIG_VALUE, TEMPLATE_INVALID
 */
export async function renderSiteConfig(input: SiteConfigInput, templatesDir: string): Promise<{ text: string; source: string }> {
  const vars = siteVars(input);
  const t = await loadTemplate(input.impl, siteTemplateName(input.enabled), templatesDir);
  return { text: renderTemplate(t.source, t.text, vars), source: t.source };
}
