/**
 * Path rules shared by manifests, diffs and archives. A tree-relative path is '/'-separated, has
 * no leading './' or '/', no empty, '.' or '..' segments, and only names that every tool in the
 * chain (tar, the shell an operator types into, log lines) handles without surprises.
 */
import { fail } from '../errors.js';

/** Prefix of the staging directories extractArchive creates (never part of a tree; sweepable after a crash). */
export const STAGING_PREFIX = '.spoke-staging-';

/** Linux PATH_MAX is 4096 including the terminating NUL. */
export const MAX_PATH_BYTES = 4095;
/** Linux NAME_MAX: longest single file name, in bytes. */
export const MAX_NAME_BYTES = 255;

// C0 controls and DEL. NUL cannot reach the kernel anyway; newline and friends are legal on ext4
// but turn log lines and scripts into injection vectors, so no synced name may contain them.
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\x00-\x1f\x7f]/;

/**
 * Why a single file name is not acceptable in a synced tree, or undefined when it is fine.
 * Backslash is refused because tools on other platforms (and some PHP code) treat it as a
 * separator, which would let `a\..\..\x` mean something else after the trip.
 */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return 'it has an empty segment';
  if (name === '.' || name === '..') return `it has a "${name}" segment`;
  if (CONTROL_RE.test(name)) return 'it contains a control character';
  if (name.includes('\\')) return 'it contains a backslash';
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return `a segment is longer than ${MAX_NAME_BYTES} bytes`;
  return undefined;
}

/**
 * Checks a tree-relative path from an archive header or a manifest and returns it normalised:
 * one leading './' and one trailing '/' (tar's directory marker) are removed. Returns '' for the
 * tree root itself ('.' or './'), which callers skip.
 * @throws SpokeError ARCHIVE_UNSAFE
 */
export function checkEntryPath(rel: string): string {
  const bad = (why: string) => fail('ARCHIVE_UNSAFE', `unsafe path ${JSON.stringify(rel)}: ${why}`);
  let p = rel;
  if (p.startsWith('./')) p = p.slice(2);
  if (p === '.' || p === '') return '';
  if (p.endsWith('/')) p = p.slice(0, -1);
  if (p.startsWith('/')) throw bad('it is absolute');
  if (/^[A-Za-z]:/.test(p)) throw bad('it starts with a drive letter');
  if (Buffer.byteLength(p, 'utf8') > MAX_PATH_BYTES) throw bad(`it is longer than ${MAX_PATH_BYTES} bytes`);
  for (const seg of p.split('/')) {
    const why = nameProblem(seg);
    if (why !== undefined) throw bad(why);
  }
  return p;
}

/**
 * Checks a symlink target carried by a manifest (the converge engine), and returns it. Any target
 * is kept as a link, including absolute ones and ones that climb out of the tree: packaged trees
 * have them (Debian's wordpress links `.htaccess` to `/etc/wordpress/htaccess` and
 * `wp-includes/js/underscore.js` to `../../../javascript/underscore/underscore.js`; its mediawiki
 * links `extensions` and `images` to `/var/lib/mediawiki/…`), and the tree must arrive as it is.
 * That is safe because the sync engine never follows a link: walks lstat, files are opened
 * O_NOFOLLOW, and nothing is written below a path unless every parent is a real directory
 * (agent/converge/ops.ts DirGuard; a manifest cannot list anything below a symlink). Refused only
 * what cannot be carried or logged faithfully: empty targets, control characters, backslashes and
 * targets longer than PATH_MAX. Archives keep the stricter rule (checkSymlinkTarget).
 * @throws SpokeError ARCHIVE_UNSAFE
 */
export function checkLinkTarget(linkPath: string, target: string): string {
  const bad = (why: string) => fail('ARCHIVE_UNSAFE', `unsafe symlink ${JSON.stringify(linkPath)} -> ${JSON.stringify(target)}: ${why}`);
  if (target.length === 0) throw bad('the target is empty');
  if (CONTROL_RE.test(target)) throw bad('the target contains a control character');
  if (target.includes('\\')) throw bad('the target contains a backslash');
  if (Buffer.byteLength(target, 'utf8') > MAX_PATH_BYTES) throw bad('the target is too long');
  return target;
}

/**
 * Checks a symlink target in an archive, for a link at tree-relative `linkPath`. Refused: empty
 * or absolute targets, NUL/control characters, and any target that climbs above the tree root.
 *
 * Why '..' is only allowed as leading segments: a lexical check of `x/l/..` is wrong when `x/l`
 * is itself a symlink (the kernel resolves `l` first, then climbs from wherever it points), and
 * the link `l` may arrive later in the archive than the one that uses it. With leading '..' only,
 * resolution climbs from the link's own directory, which is a real directory (nothing is ever
 * written through a symlink), and then only descends; by induction every link stays inside.
 * Real trees (vendor/bin, node_modules/.bin, `ln -s ../lib x`) fit this rule.
 * @throws SpokeError ARCHIVE_UNSAFE
 */
export function checkSymlinkTarget(linkPath: string, target: string): string {
  const bad = (why: string) => fail('ARCHIVE_UNSAFE', `unsafe symlink ${JSON.stringify(linkPath)} -> ${JSON.stringify(target)}: ${why}`);
  if (target.length === 0) throw bad('the target is empty');
  if (target.startsWith('/')) throw bad('the target is absolute');
  if (CONTROL_RE.test(target)) throw bad('the target contains a control character');
  if (target.includes('\\')) throw bad('the target contains a backslash');
  if (Buffer.byteLength(target, 'utf8') > MAX_PATH_BYTES) throw bad('the target is too long');
  const depth = linkPath.split('/').length - 1; // directories between the root and the link
  let ups = 0;
  let descended = false;
  for (const seg of target.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (descended) throw bad('".." may only appear at the start of the target');
      ups++;
      if (ups > depth) throw bad('the target leaves the tree');
      continue;
    }
    descended = true;
  }
  return target;
}

/**
 * Orders tree-relative paths by their UTF-8 bytes (which is code point order). Plain `<` on JS
 * strings compares UTF-16 code units and would put U+10000.. (surrogate pairs) before U+E000..;
 * manifests are compared across processes and languages, so the order must be the byte order.
 * A parent always sorts before its children ('a' < 'a/…') because a prefix sorts first.
 */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return fixup(x) - fixup(y);
  }
  return a.length - b.length;
}

/** Lifts UTF-16 surrogates above the rest of the BMP so code-unit order becomes code point order. */
function fixup(c: number): number {
  return c >= 0xd800 && c <= 0xdfff ? c + 0x10000 : c;
}

/** The parent of a tree-relative path ('' for top-level names). */
export function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}
