/**
 * Namespace rules that do not need the store: names, publish paths, domains. Each check throws a
 * SpokeError with a stable code and a one-line message, or returns the normalised value.
 */
import { fail } from './errors.js';

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/**
 * Checks a server, cluster or platform name: `[a-z0-9][a-z0-9._-]{0,62}`.
 * @throws SpokeError INVALID_NAME
 */
export function checkName(name: string, what = 'name'): string {
  if (!NAME_RE.test(name)) {
    throw fail('INVALID_NAME', `${what} ${JSON.stringify(name)} is not valid: use 1-63 characters a-z 0-9 . _ - starting with a letter or digit`);
  }
  return name;
}

/**
 * Checks a publish path: absolute, already normalised (no `.` or `..` segments, no trailing
 * slash, no `//`), no control characters, and not `/` itself. Returns it unchanged.
 * @throws SpokeError INVALID_PATH
 */
/**
 * What an operator typed as a publish path, with trailing slashes removed (`/var/www/wp/` →
 * `/var/www/wp`), as shells complete directory names; `/` stays `/` (refused by checkPublishPath).
 */
export function trimPathSlashes(path: string): string {
  let p = path;
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

export function checkPublishPath(path: string): string {
  const bad = (why: string) => fail('INVALID_PATH', `path ${JSON.stringify(path)} is not valid: ${why}`);
  if (path.length === 0) throw bad('it is empty');
  if (!path.startsWith('/')) throw bad('it must be absolute');
  if (path === '/') throw bad('it cannot be the root directory');
  if (path.length > 4096) throw bad('it is longer than 4096 characters');
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(path)) throw bad('it contains control characters');
  if (path.endsWith('/')) throw bad('remove the trailing slash');
  if (path.includes('//')) throw bad('it contains an empty segment (//)');
  for (const seg of path.slice(1).split('/')) {
    if (seg === '.' || seg === '..') throw bad(`it contains a "${seg}" segment`);
  }
  return path;
}

/** True when `inner` is `outer` or lies below it (both normalised absolute paths). */
export function pathContains(outer: string, inner: string): boolean {
  return inner === outer || inner.startsWith(outer.endsWith('/') ? outer : `${outer}/`);
}

const LABEL_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Checks a site domain or alias: lowercase, RFC 1123 labels (1-63 chars, letters, digits and
 * inner hyphens), at least two labels, at most 253 characters, no trailing dot. The one rule for
 * every verb (site install, import, rename, clone/migrate targets, alias add): Spoke serves public
 * names, so a single-label name such as `localhost` is refused everywhere, before anything is
 * created.
 * @throws SpokeError INVALID_DOMAIN
 */
export function checkDomain(domain: string): string {
  const bad = (why: string) => fail('INVALID_DOMAIN', `domain ${JSON.stringify(domain)} is not valid: ${why}`);
  if (domain.length === 0) throw bad('it is empty');
  if (domain.length > 253) throw bad('it is longer than 253 characters');
  if (domain !== domain.toLowerCase()) throw bad('use lowercase');
  if (domain.endsWith('.')) throw bad('remove the trailing dot');
  const labels = domain.split('.');
  if (labels.length < 2) throw bad('it needs at least two labels (example.com); single-label names such as localhost are not served');
  for (const label of labels) {
    if (!LABEL_RE.test(label)) {
      throw bad(`label ${JSON.stringify(label)} must be 1-63 characters of a-z 0-9 and inner hyphens`);
    }
  }
  if (/^\d+$/.test(labels[labels.length - 1] ?? '')) throw bad('the last label cannot be all digits');
  return domain;
}
