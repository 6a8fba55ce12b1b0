/**
 * A tiny path matcher for excludes. Patterns are '/'-separated and anchored at the tree root:
 * - `*` matches any run of characters inside one segment (never '/'), dotfiles included;
 * - `**` as a whole segment matches zero or more segments (`**\/.git` = `.git` at any depth,
 *   `cache/**` = everything below `cache`);
 * - everything else is literal (no `?`, no `[...]`, no negation — kept small on purpose so that an
 *   operator can predict what a pattern does).
 * An excluded directory excludes everything below it.
 */
import { fail } from '../errors.js';
import { STAGING_PREFIX } from './paths.js';

/** Version-control metadata: never part of a deployed tree. */
export const VCS_EXCLUDES: readonly string[] = ['**/.git', '**/.svn', '**/.hg', '**/.bzr', '**/CVS'];

/**
 * User data is owned by the web server that writes it (see DESIGN "The spoke model"): code pushes
 * must never overwrite or delete it.
 */
export const USER_DATA_EXCLUDES: readonly string[] = ['sites/*/files', 'sites/*/private'];

/** Spoke's own in-flight extraction directories (see extractArchive). */
export const STAGING_EXCLUDES: readonly string[] = [`**/${STAGING_PREFIX}*`];

/** What walkTree leaves out unless told otherwise. */
export const DEFAULT_EXCLUDES: readonly string[] = [...VCS_EXCLUDES, ...USER_DATA_EXCLUDES, ...STAGING_EXCLUDES];

/** A compiled exclude list. */
export interface ExcludeMatcher {
  /** True when `rel` itself matches a pattern (the walker already skipped excluded parents). */
  matchesSelf(rel: string): boolean;
  /** True when `rel` or any of its parents matches (for watcher events, which arrive unfiltered). */
  excludes(rel: string): boolean;
}

/**
 * Compiles patterns into one matcher.
 * @throws SpokeError INVALID_ARGUMENT for an empty pattern or one with '.', '..' or empty segments
 */
export function compileExcludes(patterns: readonly string[]): ExcludeMatcher {
  const sources = patterns.map(patternToRegExpSource);
  const re = sources.length === 0 ? undefined : new RegExp(`^(?:${sources.join('|')})$`, 'u');
  const matchesSelf = (rel: string): boolean => re !== undefined && re.test(rel);
  return {
    matchesSelf,
    excludes(rel: string): boolean {
      if (re === undefined) return false;
      for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) {
        if (re.test(rel.slice(0, i))) return true;
      }
      return re.test(rel);
    },
  };
}

function patternToRegExpSource(pattern: string): string {
  const p = pattern.startsWith('/') ? pattern.slice(1) : pattern; // all patterns are anchored anyway
  const segs = p.split('/');
  for (const seg of segs) {
    if (seg === '' || seg === '.' || seg === '..') {
      throw fail('INVALID_ARGUMENT', `exclude pattern ${JSON.stringify(pattern)} has an empty, "." or ".." segment`);
    }
  }
  let out = '';
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === '**') {
      // Zero or more whole segments; at the end, at least one character (a path never ends in '/').
      out += last ? '.+' : '(?:[^/]+/)*';
      return;
    }
    out += seg.split('*').map(escapeRegExp).join('[^/]*') + (last ? '' : '/');
  });
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
