/**
 * File system guards for platform builds: every place a build writes is resolved inside the
 * tree being built without following a link that leaves it, every link a build produced is
 * checked against the platform root, local sources are read only from directories the operator
 * allows, and the build's size is counted against its limits.
 *
 * Why both a resolver and a link scan: the scan (after each project, library and patch) keeps the
 * invariant "every link in the tree stays inside it", and the resolver makes each later write
 * independent of that invariant (a link it meets is followed only while it stays inside, an
 * absolute one is refused outright). Either alone would have stopped the writes of issue 16; both
 * together also stop the links themselves from being converged to web servers.
 */
import * as fsp from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { checkSymlinkTarget, fail, isSpokeError } from '@spoke/shared';

/** Links followed while resolving one path before it is refused (the kernel's own limit). */
const MAX_LINK_HOPS = 40;

function isEnoent(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

/**
 * Resolves the tree-relative directory `rel` under `root` one component at a time with lstat,
 * creating missing components (mode 0755; with `create` false a missing one is an error) and
 * following a symlink only while it stays inside `root`: an absolute link, or a `..` that would
 * climb above `root`, is refused. Returns the absolute path of a real directory inside `root`
 * ('' resolves to `root` itself, which must exist).
 * @throws SpokeError BUILD_PATH_ESCAPE (a link leads out), PLATFORM_BUILD_FAILED (a component is a file, or missing without `create`)
 */
export async function resolveDirInside(root: string, rel: string, opts: { create?: boolean } = {}): Promise<string> {
  const real: string[] = [];
  const queue = rel.split('/');
  let hops = 0;
  while (queue.length) {
    const seg = queue.shift() as string;
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (real.length === 0) throw fail('BUILD_PATH_ESCAPE', `${rel} leads above the platform root`, { path: rel });
      real.pop();
      continue;
    }
    const abs = join(root, ...real, seg);
    const st = await fsp.lstat(abs).catch((e: unknown) => (isEnoent(e) ? null : Promise.reject(e)));
    if (st === null) {
      if (opts.create === false) throw fail('PLATFORM_BUILD_FAILED', `${rel}: ${[...real, seg].join('/')} does not exist`, { path: rel });
      await fsp.mkdir(abs, { mode: 0o755 });
      real.push(seg);
      continue;
    }
    if (st.isSymbolicLink()) {
      const target = await fsp.readlink(abs);
      const at = [...real, seg].join('/');
      if (isAbsolute(target)) throw fail('BUILD_PATH_ESCAPE', `${rel}: ${at} is a link to ${target}, outside the platform`, { path: rel, link: at });
      if (++hops > MAX_LINK_HOPS) throw fail('BUILD_PATH_ESCAPE', `${rel}: more than ${MAX_LINK_HOPS} links to follow at ${at}`, { path: rel, link: at });
      queue.unshift(...target.split('/'));
      continue;
    }
    if (!st.isDirectory()) throw fail('PLATFORM_BUILD_FAILED', `${rel}: ${[...real, seg].join('/')} is a file, not a directory`, { path: rel });
    real.push(seg);
  }
  const out = real.length ? join(root, ...real) : root;
  if (!real.length && !(await fsp.lstat(root)).isDirectory()) throw fail('PLATFORM_BUILD_FAILED', `${root} is not a directory`);
  return out;
}

/**
 * Where an entry at tree-relative `rel` goes: its parent resolved (and created) by
 * resolveDirInside, joined with its own name, which is not followed (it may not exist yet, or be
 * a link the caller replaces).
 * @throws SpokeError as resolveDirInside
 */
export async function placeInside(root: string, rel: string): Promise<string> {
  if (rel === '') return root;
  const i = rel.lastIndexOf('/');
  const parent = i < 0 ? '' : rel.slice(0, i);
  const name = i < 0 ? rel : rel.slice(i + 1);
  return join(await resolveDirInside(root, parent), name);
}

/** Counts of what a walk saw. */
export interface TreeCount {
  /** Files, directories and links. */
  entries: number;
  /** Bytes of regular files. */
  bytes: number;
}

/**
 * Walks `dir` (absolute, inside `root`) without following links and checks what a build put
 * there: every symlink must resolve inside `root` by the archive rule (relative, `..` only
 * leading, never above the root — see checkSymlinkTarget), only files, directories and links, no
 * setuid/setgid/sticky bits. Returns what it counted. `what` names the item for the message.
 * @throws SpokeError BUILD_PATH_ESCAPE (a link leaves the platform), PLATFORM_BUILD_FAILED (a device, FIFO, socket or special bit)
 */
export async function checkBuiltTree(root: string, dir: string, what: string): Promise<TreeCount> {
  const count: TreeCount = { entries: 0, bytes: 0 };
  const rootRel = (abs: string) => relative(root, abs).split(sep).join('/');
  const visit = async (abs: string): Promise<void> => {
    const st = await fsp.lstat(abs);
    const rel = rootRel(abs) || '.';
    if (abs !== root) count.entries++;
    if (st.isSymbolicLink()) {
      const target = await fsp.readlink(abs);
      try {
        checkSymlinkTarget(rel, target);
      } catch (e) {
        if (!isSpokeError(e)) throw e;
        throw fail('BUILD_PATH_ESCAPE', `${what}: link ${rel} -> ${target} points outside the platform (${e.message.replace(/^.*: /, '')})`, {
          link: rel,
          target,
        });
      }
      return;
    }
    if (st.mode & 0o7000) throw fail('PLATFORM_BUILD_FAILED', `${what}: ${rel} has setuid, setgid or sticky bits; a build never produces them`, { path: rel });
    if (st.isFile()) {
      count.bytes += st.size;
      return;
    }
    if (!st.isDirectory()) throw fail('PLATFORM_BUILD_FAILED', `${what}: ${rel} is not a file, directory or symlink (a device, FIFO or socket)`, { path: rel });
    for (const name of await fsp.readdir(abs)) await visit(join(abs, name));
  };
  await visit(dir);
  return count;
}

/** Counts the entries and file bytes under `dir` without following links (a copy's source, before copying). */
export async function countTree(dir: string): Promise<TreeCount> {
  const count: TreeCount = { entries: 0, bytes: 0 };
  const visit = async (abs: string): Promise<void> => {
    for (const ent of await fsp.readdir(abs, { withFileTypes: true })) {
      count.entries++;
      if (ent.isDirectory()) await visit(join(abs, ent.name));
      else if (ent.isFile()) count.bytes += (await fsp.lstat(join(abs, ent.name))).size;
    }
  };
  await visit(dir);
  return count;
}

/**
 * Which local paths a build may read (downloads of type file and copy, local git repositories,
 * patches, includes): only under an allowed directory and never under a denied one (the state
 * dir). Paths are compared after realpath, so a link cannot smuggle a source in.
 */
export class SourcePolicy {
  /**
   * @param allowed directories sources may come from; empty means "the makefile's own directory"
   *   (each makefile passes its own, see `forMakefile`)
   * @param denied directories that are never read, whatever `allowed` says (the master's state dir)
   */
  constructor(
    private readonly allowed: readonly string[],
    private readonly denied: readonly string[],
  ) {}

  /** The directories in force for a makefile read from `dir` (plus `extra`, e.g. the build tree). */
  roots(dir: string | null, extra: readonly string[] = []): string[] {
    const base = this.allowed.length ? [...this.allowed] : dir ? [dir] : [];
    return [...base, ...extra];
  }

  /**
   * Checks that `path` (absolute) lies under one of `roots` and under no denied directory, after
   * resolving links; a missing path passes (the caller reports it as missing). Returns the real
   * path. `what` names the path in the message (`d7.make: library x: download`).
   * @throws SpokeError BUILD_SOURCE_NOT_ALLOWED
   */
  async check(path: string, roots: readonly string[], what: string): Promise<string> {
    const real = await realOrSelf(path);
    for (const d of this.denied) {
      if (within(real, await realOrSelf(d))) {
        throw fail('BUILD_SOURCE_NOT_ALLOWED', `${what} ${path} is in the master's state directory; builds never read from it`, { path });
      }
    }
    for (const r of roots) if (within(real, await realOrSelf(r))) return real;
    const where = roots.length ? roots.join(', ') : 'nowhere (the makefile directory is not known)';
    throw fail(
      'BUILD_SOURCE_NOT_ALLOWED',
      `${what} ${path} is outside the directories builds may read (${where}); move it there or start the master with --build-source-dir ${dirname(real)}`,
      { path },
    );
  }
}

async function realOrSelf(p: string): Promise<string> {
  try {
    return await fsp.realpath(p);
  } catch (e) {
    if (!isEnoent(e)) throw e;
    // A missing leaf under an existing dir: compare by its parent's real path.
    const parent = dirname(p);
    return parent === p ? p : join(await realOrSelf(parent), basename(p));
  }
}

function within(p: string, dir: string): boolean {
  const d = resolve(dir);
  return p === d || p.startsWith(d.endsWith(sep) ? d : d + sep);
}

/** Build size limits (master options `--build-max-*`). */
export interface BuildLimits {
  /** Bytes of files in one build. */
  maxBytes: number;
  /** Files, directories and links in one build. */
  maxEntries: number;
  /** An archive may expand to this many times its own size (at least `RATIO_FLOOR_BYTES`). */
  maxRatio: number;
}

/** Below this many bytes an archive's expansion ratio is not checked (tiny archives compress oddly). */
export const RATIO_FLOOR_BYTES = 1024 * 1024;

/** Defaults of the build limits. */
export const DEFAULT_BUILD_LIMITS: BuildLimits = { maxBytes: 1024 * 1024 * 1024, maxEntries: 100_000, maxRatio: 100 };

function size(n: number): string {
  if (n >= 1024 * 1024 * 1024) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 * 1024) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

/**
 * Counts one build against its limits: `used` is what the tree holds so far; an archive is
 * checked entry by entry (before each is written) against what is left and its own ratio.
 */
export class BuildBudget {
  bytes = 0;
  entries = 0;

  constructor(readonly limits: BuildLimits) {}

  /** Adds what was placed; throws when the build is over a limit. @throws SpokeError BUILD_LIMIT_EXCEEDED */
  add(c: TreeCount, what: string): void {
    this.bytes += c.bytes;
    this.entries += c.entries;
    this.check(this.bytes, this.entries, what);
  }

  /** Checks that `c` more would still fit, without counting it. @throws SpokeError BUILD_LIMIT_EXCEEDED */
  fits(c: TreeCount, what: string): void {
    this.check(this.bytes + c.bytes, this.entries + c.entries, what);
  }

  /** Replaces an earlier count of the same item (after its patches) with a new one. */
  replace(before: TreeCount, after: TreeCount, what: string): void {
    this.bytes -= before.bytes;
    this.entries -= before.entries;
    this.add(after, what);
  }

  /**
   * A checker for one archive of `archiveBytes`: call it with each entry's running totals (the
   * archive's own). @throws SpokeError BUILD_LIMIT_EXCEEDED
   */
  archive(archiveBytes: number, what: string): (bytes: number, entries: number) => void {
    const allowance = Math.max(this.limits.maxRatio * archiveBytes, RATIO_FLOOR_BYTES);
    return (bytes, entries) => {
      if (bytes > allowance) {
        throw fail(
          'BUILD_LIMIT_EXCEEDED',
          `${what}: the archive (${size(archiveBytes)}) expands to more than ${this.limits.maxRatio} times its size (limit --build-max-ratio ${this.limits.maxRatio})`,
          { limit: 'build-max-ratio' },
        );
      }
      this.check(this.bytes + bytes, this.entries + entries, what);
    };
  }

  private check(bytes: number, entries: number, what: string): void {
    if (bytes > this.limits.maxBytes) {
      throw fail(
        'BUILD_LIMIT_EXCEEDED',
        `${what}: the build would hold more than ${size(this.limits.maxBytes)} (limit --build-max-bytes ${this.limits.maxBytes})`,
        {
          limit: 'build-max-bytes',
        },
      );
    }
    if (entries > this.limits.maxEntries) {
      throw fail(
        'BUILD_LIMIT_EXCEEDED',
        `${what}: the build would hold more than ${this.limits.maxEntries} files, directories and links (limit --build-max-entries ${this.limits.maxEntries})`,
        {
          limit: 'build-max-entries',
        },
      );
    }
  }
}
