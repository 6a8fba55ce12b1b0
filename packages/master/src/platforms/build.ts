/**
 * Building platforms on the master: from a drush makefile or from a git repository, into a
 * staging directory beside the publish path (same filesystem), renamed into place only when the
 * whole build succeeded and was checked. A failed build removes its staging directory, and the
 * error names the project and the step.
 *
 * Drush semantics followed (drush 8, commands/make/make.drush.inc, make.project.inc,
 * make.download.inc):
 * - exactly one core project at the top level (type `core`, or the project named `drupal`),
 *   built first at the build root; a core project in a nested makefile is ignored;
 * - the contrib destination is `sites/all` for core 6.x/7.x and the Drupal root for 8.x and later
 *   (drush_drupal_sitewide_directory); modules go to `<dest>/modules/<subdir>/<dir>`, themes to
 *   `<dest>/themes/...`, profiles to `profiles/<subdir>/<dir>` (never under the contrib
 *   destination), libraries to `<dest>/<destination, default libraries>/<subdir>/<dir>`, where
 *   `<dir>` is `directory_name` or the name; a project's own `contrib_destination` replaces the
 *   default for it (and for its nested makefile); the type defaults to `module`;
 * - order: core, then the other projects in makefile order (each downloaded, patched, then its own
 *   makefile followed), then the libraries;
 * - a project's directory must not exist yet (drush "Directory not empty") unless `overwrite`;
 * - git: clone, then check out the refspec (fetch + FETCH_HEAD), else the tag (`refs/tags/T`), else
 *   the revision, else the branch; the `.git` directory is removed unless `working-copy` is set;
 * - file: checksums (md5, sha1, sha256, sha512) verified before unpacking; an archive is unpacked
 *   and its single top-level directory (or `subtree`) becomes the project; any other file is
 *   placed in the project directory as `filename` or its own name;
 * - copy: the directory is copied;
 * - patches: applied in the project directory, `-p1` first then `-p0` (drush tries `git apply`
 *   before `patch`; Spoke uses GNU patch only, checked with --dry-run first so a failing patch
 *   never half-applies); a PATCHES.txt listing them is written unless the project has one;
 * - nested makefiles (`<name>.make.yml`, `<name>.make`, `drupal-org.make.yml`, `drupal-org.make`)
 *   are followed unless `do_recursion` is off; their projects go under the same contrib destination,
 *   except inside a profile (`profiles/<dir>/…`). Projects and libraries named by the top-level
 *   makefile, or already built, are not built again from a nested one.
 * Where Spoke differs: nothing is fetched from drupal.org (a project without a download fails
 * with MAKEFILE_NEEDS_DRUPAL_ORG), file downloads and patches must be local (a path or file://,
 * relative ones resolve against the makefile's directory — for a nested makefile, its own), and
 * translations are not downloaded.
 * The plan (where each item goes, checked before anything is fetched) is buildplan.ts; the
 * programs it runs and the archives it unpacks are buildtools.ts; containment is buildfs.ts.
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { checkEntryPath, fail, isSpokeError, type SpokeError, type Logger } from '@spoke/shared';
import {
  BuildBudget,
  checkBuiltTree,
  countTree,
  DEFAULT_BUILD_LIMITS,
  placeInside,
  resolveDirInside,
  SourcePolicy,
  type BuildLimits,
  type TreeCount,
} from './buildfs.js';
import { checkGitSource, checkMakefileSource, contribDestination, gitUrl, localGitPath, localPath, plan, safeRel, type Item } from './buildplan.js';
import {
  CommandError,
  checkExtracted,
  exists,
  extractTar,
  gist,
  isDir,
  isEnoent,
  oneLine,
  removeEmptyUpTo,
  run,
  sniff,
  verifyChecksums,
  type Ran,
} from './buildtools.js';
import { loadMakefile, nestedMakefileNames, type FileDownload, type GitDownload, type Makefile, type MakePatch } from './registry/index.js';
import type { PlatformSource } from '../types.js';

/** What a build writes to (the task log) and listens to (cancellation). */
export interface BuildContext {
  log(message: string, level?: 'info' | 'warn' | 'error'): void;
  signal: AbortSignal;
}

/** A source that is built (not an existing tree). */
export type BuiltSource = Exclude<PlatformSource, { kind: 'existing' }>;

/** One platform to build. */
export interface BuildRequest {
  platform: string;
  source: BuiltSource;
  /** Absolute path on the master's disk where the tree must end up. */
  target: string;
}

/** What ensure() did. */
export interface BuildOutcome {
  built: boolean;
  ms: number;
  projects: number;
  libraries: number;
  patches: number;
}

/** Prefix of staging directories: `<parent>/.spoke-build-<platform>-<8 hex>`. */
export const BUILD_STAGING_PREFIX = '.spoke-build-';

const COMMAND_TIMEOUT_MS = 30 * 60_000;

interface BuildState {
  platform: string;
  /** The tree being built (becomes the platform). */
  root: string;
  /** Scratch space beside it, removed with the staging dir. */
  work: string;
  ctx: BuildContext;
  budget: BuildBudget;
  seq: number;
  /** Directories local sources may come from in this build (the policy's, and the tree being built). */
  sources: string[];
  /** Top-level project and library names (`project:x`, `library:x`): nested makefiles never redefine them. */
  claimed: Set<string>;
  made: Set<string>;
  placed: { label: string; rel: string }[];
  projects: number;
  libraries: number;
  patches: number;
}

/** A failure of one build step: keeps a specific code, names the platform and the step. */
function stepError(platform: string, step: string, e: unknown): SpokeError {
  const code = isSpokeError(e) ? e.code : 'PLATFORM_BUILD_FAILED';
  const why = isSpokeError(e) ? e.message : e instanceof Error ? e.message : String(e);
  return fail(code, oneLine(`platform ${platform}: ${step}: ${why}`), { platform, step });
}

/** Builds platforms from makefiles and git repositories. */
export class PlatformBuilder {
  private readonly env: Record<string, string | undefined>;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly limits: BuildLimits;
  /** Where local sources may come from (`--build-source-dir`, never the state dir). */
  readonly policy: SourcePolicy;

  /**
   * @param deps.env environment for git and patch (the master's own; prompts are turned off here)
   * @param deps.commandTimeoutMs per external command (git clone of a big repository). @default 30 min
   * @param deps.sourceDirs directories local sources may come from. @default [] (each makefile's own directory)
   * @param deps.stateDir the master's state dir: never read by a build. @default none
   * @param deps.limits bytes, entries and archive expansion ratio per build. @default DEFAULT_BUILD_LIMITS
   */
  constructor(deps: {
    env: Record<string, string | undefined>;
    log: Logger;
    commandTimeoutMs?: number;
    sourceDirs?: readonly string[];
    stateDir?: string;
    limits?: Partial<BuildLimits>;
  }) {
    // No prompt may ever wait for a terminal: a build runs unattended.
    this.env = {
      ...deps.env,
      GIT_TERMINAL_PROMPT: '0',
      GIT_ASKPASS: '',
      SSH_ASKPASS: '',
      GIT_SSH_COMMAND: deps.env.GIT_SSH_COMMAND ?? 'ssh -o BatchMode=yes',
      LC_ALL: 'C',
    };
    this.log = deps.log;
    this.timeoutMs = deps.commandTimeoutMs ?? COMMAND_TIMEOUT_MS;
    this.limits = { ...DEFAULT_BUILD_LIMITS, ...deps.limits };
    this.policy = new SourcePolicy(deps.sourceDirs ?? [], deps.stateDir ? [deps.stateDir] : []);
  }

  /**
   * Builds the platform unless its tree already exists at `target` (an existing tree is never
   * rebuilt). On failure nothing is left behind (staging dir and any parent it created) and the
   * error names the step.
   * @throws SpokeError PLATFORM_BUILD_FAILED, MAKEFILE_NEEDS_DRUPAL_ORG, CONFIG_INVALID, CHECKSUM_MISMATCH, ARCHIVE_UNSAFE, TASK_CANCELLED
   */
  async ensure(ctx: BuildContext, req: BuildRequest): Promise<BuildOutcome> {
    const t0 = Date.now();
    if (await exists(req.target)) {
      ctx.log(`${req.platform}: tree ${req.target} exists; not rebuilding it (remove it, or add a new platform, to build again)`);
      return { built: false, ms: 0, projects: 0, libraries: 0, patches: 0 };
    }
    let mf: Makefile | null = null;
    const dir = req.source.kind === 'makefile' ? (req.source.makefileDir ?? null) : null;
    if (req.source.kind === 'makefile') {
      const src = req.source;
      // Everything that can be refused without fetching is refused before anything is created.
      mf = await this.step(req.platform, ctx, 'read and check the makefile', () => checkMakefileSource(src, this.policy));
    } else {
      const g = req.source;
      await this.step(req.platform, ctx, 'check the git source', async () => checkGitSource(g.url, g.ref));
    }

    const parent = dirname(req.target);
    const staging = join(parent, `${BUILD_STAGING_PREFIX}${req.platform}-${randomBytes(4).toString('hex')}`);
    let createdParent: string | undefined;
    const b: BuildState = {
      platform: req.platform,
      root: join(staging, 'tree'),
      work: join(staging, 'work'),
      ctx,
      budget: new BuildBudget(this.limits),
      sources: [],
      seq: 0,
      claimed: new Set(),
      made: new Set(),
      placed: [],
      projects: 0,
      libraries: 0,
      patches: 0,
    };
    try {
      await this.step(req.platform, ctx, `create the staging dir ${staging}`, async () => {
        createdParent = await fsp.mkdir(parent, { recursive: true });
        await this.sweep(ctx, parent, req.platform);
        await fsp.mkdir(staging, { mode: 0o700 });
        await fsp.mkdir(b.work, { mode: 0o700 });
      });
      b.sources = this.policy.roots(dir, [b.root]);
      ctx.log(
        `${req.platform}: building from ${req.source.kind === 'makefile' ? `makefile ${req.source.makefileName}` : `git ${req.source.url}${req.source.ref ? ` @ ${req.source.ref}` : ''}`} in ${staging}`,
      );
      if (req.source.kind === 'makefile' && mf) {
        for (const p of mf.projects) if (p.type !== 'core') b.claimed.add(`project:${p.name}`);
        for (const l of mf.libraries) b.claimed.add(`library:${l.name}`);
        await this.makeMakefile(b, mf, { top: true, dest: contribDestination(mf.core), dir });
      } else if (req.source.kind === 'git') {
        await this.gitPlatform(b, req.source.url, req.source.ref);
      }
      await this.step(b.platform, ctx, 'check the build', () => this.checkBuild(b));
      await this.step(b.platform, ctx, `move the build to ${req.target}`, async () => {
        if (await exists(req.target)) throw fail('PLATFORM_BUILD_FAILED', `${req.target} appeared during the build; left it untouched`);
        await fsp.chmod(b.root, 0o755);
        await fsp.rename(b.root, req.target);
      });
    } catch (e) {
      await fsp.rm(staging, { recursive: true, force: true }).catch((err: unknown) => this.log.warn({ err, staging }, 'cannot remove build staging dir'));
      await removeEmptyUpTo(parent, createdParent);
      ctx.log(`${req.platform}: build failed; removed ${staging}`, 'error');
      throw e;
    }
    await fsp.rm(staging, { recursive: true, force: true }).catch((err: unknown) => this.log.warn({ err, staging }, 'cannot remove build scratch dir'));
    const ms = Date.now() - t0;
    ctx.log(
      `${req.platform}: built in ${(ms / 1000).toFixed(1)} s: ${b.projects} project(s), ${b.libraries} librar${b.libraries === 1 ? 'y' : 'ies'}, ${b.patches} patch(es); now at ${req.target}`,
    );
    return { built: true, ms, projects: b.projects, libraries: b.libraries, patches: b.patches };
  }

  /**
   * Removes every staging dir (`.spoke-build-<platform>-<8 hex>`, a real directory) found
   * directly in `parents`, left by a master that stopped mid-build. Called once at master start,
   * before any task runs; returns what it removed. A parent that does not exist is skipped.
   */
  async sweepInterrupted(parents: Iterable<string>): Promise<string[]> {
    const re = new RegExp(`^${BUILD_STAGING_PREFIX.replace(/\./g, '\\.')}.+-[0-9a-f]{8}$`);
    const removed: string[] = [];
    for (const parent of new Set(parents)) {
      const names = await fsp.readdir(parent).catch((e: unknown) => (isEnoent(e) ? [] : Promise.reject(e)));
      for (const name of names) {
        const p = join(parent, name);
        if (!re.test(name) || !(await isDir(p))) continue;
        await fsp.rm(p, { recursive: true, force: true });
        removed.push(p);
        this.log.warn({ path: p }, 'removed a build staging dir left by an interrupted build');
      }
    }
    return removed;
  }

  /** Removes staging dirs of this platform left by a master that died mid-build. */
  private async sweep(ctx: BuildContext, parent: string, platform: string): Promise<void> {
    const re = new RegExp(`^${BUILD_STAGING_PREFIX.replace(/\./g, '\\.')}${platform.replace(/[.]/g, '\\.')}-[0-9a-f]{8}$`);
    for (const name of await fsp.readdir(parent)) {
      if (!re.test(name)) continue;
      await fsp.rm(join(parent, name), { recursive: true, force: true });
      ctx.log(`${platform}: removed ${join(parent, name)}, left by an interrupted build`, 'warn');
    }
  }

  /** Runs one named step; a failure becomes a one-line error naming it (cancellation passes through). */
  private async step<T>(platform: string, ctx: BuildContext, step: string, fn: () => Promise<T>): Promise<T> {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    try {
      return await fn();
    } catch (e) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const err = stepError(platform, step, e);
      ctx.log(`${platform}: step failed: ${step}`, 'error');
      throw err;
    }
  }

  private async makeMakefile(b: BuildState, mf: Makefile, opts: { top: boolean; dest: string; dir: string | null }): Promise<void> {
    const p = await this.step(b.platform, b.ctx, opts.top ? 'check the makefile' : `check ${basename(mf.source)}`, async () =>
      plan(mf, {
        top: opts.top,
        dest: opts.dest,
        dir: opts.dir,
        skip: (kind, name) => !opts.top && (b.claimed.has(`${kind}:${name}`) || b.made.has(`${kind}:${name}`)),
      }),
    );
    for (const s of p.skipped) b.ctx.log(`${b.platform}: ${basename(mf.source)}: skipped ${s}`);
    if (mf.translations.length) b.ctx.log(`${b.platform}: ${basename(mf.source)}: translations (${mf.translations.join(', ')}) are not downloaded`, 'warn');
    for (const item of p.items) {
      if (b.made.has(`${item.kind}:${item.name}`)) {
        b.ctx.log(`${b.platform}: ${item.label} already built; skipped`);
        continue;
      }
      b.made.add(`${item.kind}:${item.name}`);
      await this.makeItem(b, item, opts.dir);
    }
  }

  private async makeItem(b: BuildState, item: Item, dir: string | null): Promise<void> {
    const where = item.rel || '.';
    // Each component of the item's path is resolved inside the tree, never through a link that
    // leaves it (one an earlier item or patch left there); the item itself goes in at `abs`.
    const abs = await this.step(b.platform, b.ctx, `${item.label}: prepare ${where}`, async () => {
      const at = item.rel ? await placeInside(b.root, item.rel) : b.root;
      if (await exists(at)) {
        if (!item.overwrite) throw fail('PLATFORM_BUILD_FAILED', `${where} already exists (another project put it there); set overwrite to replace it`);
        await fsp.rm(at, { recursive: true, force: true });
        b.ctx.log(`${b.platform}: ${item.label}: replacing ${where} (overwrite)`, 'warn');
      }
      return at;
    });
    const d = item.download;
    if (d.type === 'git') await this.gitDownload(b, item, d, abs, dir);
    else if (d.type === 'file') await this.fileDownload(b, item, d, abs, dir);
    else if (d.type === 'copy') {
      const src = await this.source(b, item, localPath(d.url, dir, item.label), 'copy');
      await this.step(b.platform, b.ctx, `${item.label}: copy ${src}`, async () => {
        if (!(await isDir(src))) throw fail('PLATFORM_BUILD_FAILED', `${src} is not a directory`);
        // Counted (and its types checked) before a byte is copied: the source may be huge.
        b.budget.fits(await countTree(src), `${item.label}: copy ${src}`);
        await fsp.cp(src, abs, { recursive: true, errorOnExist: true, force: false, verbatimSymlinks: true });
      });
      b.ctx.log(`${b.platform}: ${item.label}: copied ${src} to ${where}`);
    }
    const placed = await this.step(b.platform, b.ctx, `${item.label}: check ${where}`, () => this.checkPlaced(b, item, abs));
    for (const patch of item.patches) await this.patch(b, item, patch, abs, dir);
    if (item.patches.length) {
      await this.patchesTxt(item, abs);
      await this.step(b.platform, b.ctx, `${item.label}: check ${where} after its patches`, async () => {
        b.budget.replace(placed, await checkBuiltTree(b.root, abs, item.label), item.label);
      });
    }
    b.placed.push({ label: item.label, rel: item.rel });
    if (item.kind === 'project') b.projects++;
    else b.libraries++;
    if (item.recurse !== null) await this.recurse(b, item, abs, item.recurse);
  }

  /** Checks what an item placed (links inside the platform, types, limits) and counts it. */
  private async checkPlaced(b: BuildState, item: Item, abs: string): Promise<TreeCount> {
    const c = await checkBuiltTree(b.root, abs, item.label);
    b.budget.add(c, item.label);
    return c;
  }

  /** A local path an item reads, checked against the source policy. @throws SpokeError BUILD_SOURCE_NOT_ALLOWED */
  private source(b: BuildState, item: Item, path: string, what: string): Promise<string> {
    return this.step(b.platform, b.ctx, `${item.label}: ${what}`, () => this.policy.check(path, b.sources, 'source'));
  }

  private async recurse(b: BuildState, item: Item, abs: string, dest: string): Promise<void> {
    let found: string | null = null;
    for (const n of nestedMakefileNames({ name: item.name })) {
      if ((await fsp.lstat(join(abs, n)).catch(() => null))?.isFile()) {
        found = join(abs, n);
        break;
      }
    }
    if (!found) return;
    const file = found;
    b.ctx.log(`${b.platform}: ${item.label}: found ${basename(file)}; building what it lists`);
    const nested = await this.step(b.platform, b.ctx, `${item.label}: read ${basename(file)}`, () =>
      loadMakefile(file, { checkInclude: (p) => this.policy.check(p, b.sources, 'include') }),
    );
    await this.makeMakefile(b, nested, { top: false, dest, dir: dirname(file) });
  }

  // --- downloads -------------------------------------------------------------------------

  private async gitDownload(b: BuildState, item: Item, d: GitDownload, abs: string, dir: string | null): Promise<void> {
    const url = gitUrl(d.url ?? '', dir, item.label);
    const local = localGitPath(url);
    if (local !== null) await this.source(b, item, local, 'git repository');
    await this.step(b.platform, b.ctx, `${item.label}: git clone ${url}`, () => this.git(b, null, ['clone', '--quiet', '--', url, abs]));
    let what = 'default branch';
    if (d.refspec) {
      what = `refspec ${d.refspec}`;
      await this.step(b.platform, b.ctx, `${item.label}: git fetch ${d.refspec}`, () => this.git(b, abs, ['fetch', '--quiet', '--', url, d.refspec as string]));
      await this.step(b.platform, b.ctx, `${item.label}: git checkout FETCH_HEAD`, () => this.git(b, abs, ['checkout', '--quiet', 'FETCH_HEAD']));
    } else if (d.tag) {
      what = `tag ${d.tag}`;
      await this.step(b.platform, b.ctx, `${item.label}: git checkout tag ${d.tag}`, () => this.git(b, abs, ['checkout', '--quiet', `refs/tags/${d.tag}`]));
    } else if (d.revision) {
      what = `revision ${d.revision}`;
      await this.step(b.platform, b.ctx, `${item.label}: git checkout revision ${d.revision}`, () =>
        this.git(b, abs, ['checkout', '--quiet', d.revision as string]),
      );
    } else if (d.branch) {
      what = `branch ${d.branch}`;
      await this.step(b.platform, b.ctx, `${item.label}: git checkout branch ${d.branch}`, () => this.git(b, abs, ['checkout', '--quiet', d.branch as string]));
    }
    const head = (await this.step(b.platform, b.ctx, `${item.label}: git rev-parse HEAD`, () => this.git(b, abs, ['rev-parse', 'HEAD']))).stdout.trim();
    if (!d.working_copy) {
      await this.step(b.platform, b.ctx, `${item.label}: remove .git`, () => fsp.rm(join(abs, '.git'), { recursive: true, force: true }));
    }
    b.ctx.log(`${b.platform}: ${item.label}: cloned ${url} at ${what} (${head.slice(0, 12)}) into ${item.rel || '.'}${d.working_copy ? ', keeping .git' : ''}`);
  }

  private async fileDownload(b: BuildState, item: Item, d: FileDownload, abs: string, dir: string | null): Promise<void> {
    const asked = localPath(d.url, dir, item.label);
    const src = await this.source(b, item, asked, 'read'); // its real path, read from now on
    const name = basename(asked);
    const st = await this.step(b.platform, b.ctx, `${item.label}: read ${src}`, async () => {
      const st = await fsp.stat(src).catch(() => null);
      if (!st?.isFile()) throw fail('PLATFORM_BUILD_FAILED', `${src} is not a file`);
      return st;
    });
    const checked = await this.step(b.platform, b.ctx, `${item.label}: verify checksum of ${name}`, () => verifyChecksums(src, d));
    const kind = await this.step(b.platform, b.ctx, `${item.label}: read ${name}`, () => sniff(src));
    if (kind === 'plain') {
      await this.step(b.platform, b.ctx, `${item.label}: place ${name}`, async () => {
        b.budget.fits({ entries: 2, bytes: st.size }, `${item.label}: ${name}`);
        await fsp.mkdir(abs, { mode: 0o755 });
        await fsp.copyFile(src, join(abs, d.filename ?? name), fsp.constants.COPYFILE_EXCL);
      });
    } else {
      const x = join(b.work, `x${++b.seq}`);
      const limit = b.budget.archive(st.size, `${item.label}: ${name}`);
      await this.step(b.platform, b.ctx, `${item.label}: extract ${name}`, async () => {
        await fsp.mkdir(x, { mode: 0o700 });
        if (kind === 'zip') await this.unzip(b, src, x, limit);
        else await extractTar(src, kind, x, b.ctx.signal, limit);
      });
      await this.step(b.platform, b.ctx, `${item.label}: place ${name}`, async () => {
        let top = x;
        if (d.subtree) {
          // Resolved inside the extracted tree: a link in the archive never leads the subtree out.
          const sub = safeRel(d.subtree);
          const i = sub.lastIndexOf('/');
          top = join(await resolveDirInside(x, i < 0 ? '' : sub.slice(0, i), { create: false }), i < 0 ? sub : sub.slice(i + 1));
          if (!(await isDir(top))) throw fail('PLATFORM_BUILD_FAILED', `subtree ${d.subtree} is not a directory in ${name}`);
        } else {
          const names = await fsp.readdir(x);
          if (names.length === 1 && (await isDir(join(x, names[0] as string)))) top = join(x, names[0] as string);
        }
        await fsp.rename(top, abs);
      });
    }
    b.ctx.log(
      `${b.platform}: ${item.label}: ${kind === 'plain' ? 'placed' : 'extracted'} ${name}${checked.length ? ` (${checked.join(', ')} ok)` : ''} into ${item.rel || '.'}`,
    );
  }

  /**
   * Unzips with Info-ZIP after checking every name (and refusing a name listed twice, which would
   * make unzip ask "replace?") and the declared sizes against the limits; symlinks, modes, types
   * and the real sizes are checked after.
   */
  private async unzip(b: BuildState, file: string, dest: string, limit: (bytes: number, entries: number) => void): Promise<void> {
    const opts = { env: this.env, signal: b.ctx.signal, timeoutMs: this.timeoutMs };
    const unreadable = (e: unknown) => {
      throw e instanceof CommandError ? fail('ARCHIVE_UNSAFE', `not a readable zip archive: ${gist(e.output)}`) : e;
    };
    const list = await run('unzip', ['-Z1', file], opts).catch(unreadable);
    const names = new Set<string>();
    for (const n of list.stdout.split('\n')) {
      if (n === '') continue;
      const p = checkEntryPath(n);
      if (names.has(p)) throw fail('ARCHIVE_UNSAFE', `${JSON.stringify(p)} appears twice in the archive`);
      names.add(p);
    }
    // "N files, B bytes uncompressed, C bytes compressed: R%": the declared total, checked before
    // anything is written (a lying header is caught by the walk after).
    const totals = await run('unzip', ['-Zt', file], opts).catch(unreadable);
    const m = /([0-9]+) bytes uncompressed/.exec(totals.stdout);
    limit(m ? Number(m[1]) : 0, names.size);
    // UnZip 6 creates symlinks only after every file is written, and strips setuid/setgid
    // unless -K; -qq quiet, -n never overwrite (and stdin is closed: it can never ask).
    await run('unzip', ['-qq', '-n', file, '-d', dest], opts);
    const c = await checkExtracted(dest);
    limit(c.bytes, c.entries);
  }

  // --- patches -----------------------------------------------------------------------------

  private async patch(b: BuildState, item: Item, p: MakePatch, abs: string, dir: string | null): Promise<void> {
    const asked = localPath(p.url, dir, `${item.label}: patch`);
    const name = basename(asked);
    const file = await this.source(b, item, asked, `patch ${name}`);
    const step = `${item.label}: patch ${name}`;
    await this.step(b.platform, b.ctx, step, async () => {
      const st = await fsp.stat(file).catch(() => null);
      if (!st?.isFile()) throw fail('PLATFORM_BUILD_FAILED', `${file} is not a file`);
      if (p.md5) await verifyChecksums(file, { md5: p.md5, sha1: null, sha256: null, sha512: null });
    });
    let level: string | null = null;
    let why = '';
    for (const l of ['-p1', '-p0']) {
      try {
        await run('patch', [l, '--dry-run', '--batch', '--forward', '-d', abs, '-i', file], { env: this.env, signal: b.ctx.signal, timeoutMs: this.timeoutMs });
        level = l;
        break;
      } catch (e) {
        if (b.ctx.signal.aborted) throw b.ctx.signal.reason;
        if (!why && e instanceof CommandError) why = gist(e.output);
        else if (!(e instanceof CommandError)) throw stepError(b.platform, step, e);
      }
    }
    if (!level) {
      b.ctx.log(`${b.platform}: step failed: ${step}`, 'error');
      throw fail('PLATFORM_BUILD_FAILED', oneLine(`platform ${b.platform}: ${step}: does not apply (tried -p1 and -p0): ${why}`), {
        platform: b.platform,
        step,
      });
    }
    const lvl = level;
    await this.step(b.platform, b.ctx, step, () =>
      run('patch', [lvl, '--batch', '--forward', '--no-backup-if-mismatch', '-r', '-', '-d', abs, '-i', file], {
        env: this.env,
        signal: b.ctx.signal,
        timeoutMs: this.timeoutMs,
      }),
    );
    b.patches++;
    b.ctx.log(`${b.platform}: ${item.label}: patched with ${name} (${lvl})`);
  }

  /** Drush writes PATCHES.txt into each patched project (unless the project ships one). */
  private async patchesTxt(item: Item, abs: string): Promise<void> {
    const f = join(abs, 'PATCHES.txt');
    if (await exists(f)) return;
    const lines = item.patches.map((p) => `- ${p.url}`).join('\n');
    await fsp.writeFile(
      f,
      `The following patches have been applied to this project:\n${lines}\n\nThis file was automatically generated by Spoke (drush make).\n`,
      { flag: 'wx' },
    );
  }

  // --- git platforms -------------------------------------------------------------------------

  private async gitPlatform(b: BuildState, url: string, ref: string): Promise<void> {
    await this.step(b.platform, b.ctx, `git clone ${url}`, () => this.git(b, null, ['clone', '--quiet', '--', url, b.root]));
    if (ref) await this.step(b.platform, b.ctx, `git checkout ${ref}`, () => this.git(b, b.root, ['checkout', '--quiet', ref]));
    const head = (await this.step(b.platform, b.ctx, 'git rev-parse HEAD', () => this.git(b, b.root, ['rev-parse', 'HEAD']))).stdout.trim();
    b.ctx.log(`${b.platform}: cloned ${url} at ${ref || 'its default branch'} (${head.slice(0, 12)}); .git is kept on the master and never synced`);
    if (await exists(join(b.root, '.gitmodules'))) b.ctx.log(`${b.platform}: the repository has submodules; they are not checked out`, 'warn');
    await this.step(b.platform, b.ctx, 'check the checkout', async () => b.budget.add(await checkBuiltTree(b.root, b.root, 'git checkout'), 'git checkout'));
    b.placed.push({ label: 'git checkout', rel: '' });
  }

  private git(b: BuildState, cwd: string | null, args: string[]): Promise<Ran> {
    return run('git', ['-c', 'advice.detachedHead=false', '-c', 'core.hooksPath=/dev/null', '-c', 'protocol.ext.allow=never', ...args], {
      env: this.env,
      signal: b.ctx.signal,
      timeoutMs: this.timeoutMs,
      ...(cwd ? { cwd } : {}),
    });
  }

  /** Every project and library put something where it belongs; the root is a non-empty directory. */
  private async checkBuild(b: BuildState): Promise<void> {
    if (!(await isDir(b.root))) throw fail('PLATFORM_BUILD_FAILED', 'the build produced no tree');
    for (const p of b.placed) {
      const abs = p.rel ? join(b.root, p.rel) : b.root;
      if (!(await isDir(abs))) throw fail('PLATFORM_BUILD_FAILED', `${p.label}: ${p.rel || '.'} is missing`);
      const names = (await fsp.readdir(abs)).filter((n) => n !== '.git');
      if (names.length === 0) throw fail('PLATFORM_BUILD_FAILED', `${p.label}: ${p.rel || '.'} is empty`);
    }
  }
}
