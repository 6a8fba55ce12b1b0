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
 * clones, downloads and patches are buildfetch.ts; the build's state and its named steps are
 * buildstate.ts; the programs it runs and the archives it unpacks are buildtools.ts; containment
 * is buildfs.ts.
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fail, type Logger } from '@spoke/shared';
import { BuildFetcher } from './buildfetch.js';
import { BuildBudget, checkBuiltTree, countTree, DEFAULT_BUILD_LIMITS, placeInside, SourcePolicy, type BuildLimits, type TreeCount } from './buildfs.js';
import { checkGitSource, checkMakefileSource, contribDestination, localPath, plan, type Item } from './buildplan.js';
import { runStep, type BuildContext, type BuildState } from './buildstate.js';
import { exists, isDir, isEnoent, removeEmptyUpTo } from './buildtools.js';
import { loadMakefile, nestedMakefileNames, type Makefile } from './registry/index.js';
import type { PlatformSource } from '../types.js';

export type { BuildContext } from './buildstate.js';

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

/** Builds platforms from makefiles and git repositories. */
export class PlatformBuilder {
  private readonly log: Logger;
  private readonly limits: BuildLimits;
  /** Clones, downloads and patches (the environment and per-command timeout are its). */
  private readonly fetch: BuildFetcher;
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
    const env = {
      ...deps.env,
      GIT_TERMINAL_PROMPT: '0',
      GIT_ASKPASS: '',
      SSH_ASKPASS: '',
      GIT_SSH_COMMAND: deps.env.GIT_SSH_COMMAND ?? 'ssh -o BatchMode=yes',
      LC_ALL: 'C',
    };
    this.log = deps.log;
    this.limits = { ...DEFAULT_BUILD_LIMITS, ...deps.limits };
    this.policy = new SourcePolicy(deps.sourceDirs ?? [], deps.stateDir ? [deps.stateDir] : []);
    this.fetch = new BuildFetcher({ env, timeoutMs: deps.commandTimeoutMs ?? COMMAND_TIMEOUT_MS, policy: this.policy });
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
      mf = await runStep(req.platform, ctx, 'read and check the makefile', () => checkMakefileSource(src, this.policy));
    } else {
      const g = req.source;
      await runStep(req.platform, ctx, 'check the git source', async () => checkGitSource(g.url, g.ref));
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
      await runStep(req.platform, ctx, `create the staging dir ${staging}`, async () => {
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
        await this.fetch.gitPlatform(b, req.source.url, req.source.ref);
      }
      await runStep(b.platform, ctx, 'check the build', () => this.checkBuild(b));
      await runStep(b.platform, ctx, `move the build to ${req.target}`, async () => {
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

  private async makeMakefile(b: BuildState, mf: Makefile, opts: { top: boolean; dest: string; dir: string | null }): Promise<void> {
    const p = await runStep(b.platform, b.ctx, opts.top ? 'check the makefile' : `check ${basename(mf.source)}`, async () =>
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
    const abs = await runStep(b.platform, b.ctx, `${item.label}: prepare ${where}`, async () => {
      const at = item.rel ? await placeInside(b.root, item.rel) : b.root;
      if (await exists(at)) {
        if (!item.overwrite) throw fail('PLATFORM_BUILD_FAILED', `${where} already exists (another project put it there); set overwrite to replace it`);
        await fsp.rm(at, { recursive: true, force: true });
        b.ctx.log(`${b.platform}: ${item.label}: replacing ${where} (overwrite)`, 'warn');
      }
      return at;
    });
    const d = item.download;
    if (d.type === 'git') await this.fetch.gitDownload(b, item, d, abs, dir);
    else if (d.type === 'file') await this.fetch.fileDownload(b, item, d, abs, dir);
    else if (d.type === 'copy') {
      const src = await this.fetch.source(b, item, localPath(d.url, dir, item.label), 'copy');
      await runStep(b.platform, b.ctx, `${item.label}: copy ${src}`, async () => {
        if (!(await isDir(src))) throw fail('PLATFORM_BUILD_FAILED', `${src} is not a directory`);
        // Counted (and its types checked) before a byte is copied: the source may be huge.
        b.budget.fits(await countTree(src), `${item.label}: copy ${src}`);
        await fsp.cp(src, abs, { recursive: true, errorOnExist: true, force: false, verbatimSymlinks: true });
      });
      b.ctx.log(`${b.platform}: ${item.label}: copied ${src} to ${where}`);
    }
    const placed = await runStep(b.platform, b.ctx, `${item.label}: check ${where}`, () => this.checkPlaced(b, item, abs));
    for (const patch of item.patches) await this.fetch.patch(b, item, patch, abs, dir);
    if (item.patches.length) {
      await this.fetch.patchesTxt(item, abs);
      await runStep(b.platform, b.ctx, `${item.label}: check ${where} after its patches`, async () => {
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
    const nested = await runStep(b.platform, b.ctx, `${item.label}: read ${basename(file)}`, () =>
      loadMakefile(file, { checkInclude: (p) => this.policy.check(p, b.sources, 'include') }),
    );
    await this.makeMakefile(b, nested, { top: false, dest, dir: dirname(file) });
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
