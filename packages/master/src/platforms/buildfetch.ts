/**
 * What a platform build fetches (build.ts drives the build and places the items): a makefile
 * item's git clone, local file or archive (unzip here, tarballs through buildtools.ts), its
 * patches and PATCHES.txt, and a git platform's checkout. Every program runs without a prompt
 * under the builder's environment and per-command timeout; every local path is checked against
 * the source policy first.
 */
import * as fsp from 'node:fs/promises';
import { basename, join } from 'node:path';
import { checkEntryPath, fail } from '@spoke/shared';
import { checkBuiltTree, resolveDirInside, type SourcePolicy } from './buildfs.js';
import { gitUrl, localGitPath, localPath, safeRel, type Item } from './buildplan.js';
import { runStep, stepError, type BuildState } from './buildstate.js';
import { CommandError, checkExtracted, exists, extractTar, gist, isDir, oneLine, run, sniff, verifyChecksums, type Ran } from './buildtools.js';
import type { FileDownload, GitDownload, MakePatch } from './registry/index.js';

/** Fetches and patches what a build places, for PlatformBuilder. */
export class BuildFetcher {
  private readonly env: Record<string, string | undefined>;
  private readonly timeoutMs: number;
  private readonly policy: SourcePolicy;

  /**
   * @param deps.env environment for git, patch and unzip (the builder's: prompts turned off)
   * @param deps.timeoutMs per external command
   * @param deps.policy where local sources may come from
   */
  constructor(deps: { env: Record<string, string | undefined>; timeoutMs: number; policy: SourcePolicy }) {
    this.env = deps.env;
    this.timeoutMs = deps.timeoutMs;
    this.policy = deps.policy;
  }

  /** A local path an item reads, checked against the source policy. @throws SpokeError BUILD_SOURCE_NOT_ALLOWED */
  source(b: BuildState, item: Item, path: string, what: string): Promise<string> {
    return runStep(b.platform, b.ctx, `${item.label}: ${what}`, () => this.policy.check(path, b.sources, 'source'));
  }

  async gitDownload(b: BuildState, item: Item, d: GitDownload, abs: string, dir: string | null): Promise<void> {
    const url = gitUrl(d.url ?? '', dir, item.label);
    const local = localGitPath(url);
    if (local !== null) await this.source(b, item, local, 'git repository');
    await runStep(b.platform, b.ctx, `${item.label}: git clone ${url}`, () => this.git(b, null, ['clone', '--quiet', '--', url, abs]));
    let what = 'default branch';
    if (d.refspec) {
      what = `refspec ${d.refspec}`;
      await runStep(b.platform, b.ctx, `${item.label}: git fetch ${d.refspec}`, () => this.git(b, abs, ['fetch', '--quiet', '--', url, d.refspec as string]));
      await runStep(b.platform, b.ctx, `${item.label}: git checkout FETCH_HEAD`, () => this.git(b, abs, ['checkout', '--quiet', 'FETCH_HEAD']));
    } else if (d.tag) {
      what = `tag ${d.tag}`;
      await runStep(b.platform, b.ctx, `${item.label}: git checkout tag ${d.tag}`, () => this.git(b, abs, ['checkout', '--quiet', `refs/tags/${d.tag}`]));
    } else if (d.revision) {
      what = `revision ${d.revision}`;
      await runStep(b.platform, b.ctx, `${item.label}: git checkout revision ${d.revision}`, () =>
        this.git(b, abs, ['checkout', '--quiet', d.revision as string]),
      );
    } else if (d.branch) {
      what = `branch ${d.branch}`;
      await runStep(b.platform, b.ctx, `${item.label}: git checkout branch ${d.branch}`, () => this.git(b, abs, ['checkout', '--quiet', d.branch as string]));
    }
    const head = (await runStep(b.platform, b.ctx, `${item.label}: git rev-parse HEAD`, () => this.git(b, abs, ['rev-parse', 'HEAD']))).stdout.trim();
    if (!d.working_copy) {
      await runStep(b.platform, b.ctx, `${item.label}: remove .git`, () => fsp.rm(join(abs, '.git'), { recursive: true, force: true }));
    }
    b.ctx.log(`${b.platform}: ${item.label}: cloned ${url} at ${what} (${head.slice(0, 12)}) into ${item.rel || '.'}${d.working_copy ? ', keeping .git' : ''}`);
  }

  async fileDownload(b: BuildState, item: Item, d: FileDownload, abs: string, dir: string | null): Promise<void> {
    const asked = localPath(d.url, dir, item.label);
    const src = await this.source(b, item, asked, 'read'); // its real path, read from now on
    const name = basename(asked);
    const st = await runStep(b.platform, b.ctx, `${item.label}: read ${src}`, async () => {
      const st = await fsp.stat(src).catch(() => null);
      if (!st?.isFile()) throw fail('PLATFORM_BUILD_FAILED', `${src} is not a file`);
      return st;
    });
    const checked = await runStep(b.platform, b.ctx, `${item.label}: verify checksum of ${name}`, () => verifyChecksums(src, d));
    const kind = await runStep(b.platform, b.ctx, `${item.label}: read ${name}`, () => sniff(src));
    if (kind === 'plain') {
      await runStep(b.platform, b.ctx, `${item.label}: place ${name}`, async () => {
        b.budget.fits({ entries: 2, bytes: st.size }, `${item.label}: ${name}`);
        await fsp.mkdir(abs, { mode: 0o755 });
        await fsp.copyFile(src, join(abs, d.filename ?? name), fsp.constants.COPYFILE_EXCL);
      });
    } else {
      const x = join(b.work, `x${++b.seq}`);
      const limit = b.budget.archive(st.size, `${item.label}: ${name}`);
      await runStep(b.platform, b.ctx, `${item.label}: extract ${name}`, async () => {
        await fsp.mkdir(x, { mode: 0o700 });
        if (kind === 'zip') await this.unzip(b, src, x, limit);
        else await extractTar(src, kind, x, b.ctx.signal, limit);
      });
      await runStep(b.platform, b.ctx, `${item.label}: place ${name}`, async () => {
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

  async patch(b: BuildState, item: Item, p: MakePatch, abs: string, dir: string | null): Promise<void> {
    const asked = localPath(p.url, dir, `${item.label}: patch`);
    const name = basename(asked);
    const file = await this.source(b, item, asked, `patch ${name}`);
    const step = `${item.label}: patch ${name}`;
    await runStep(b.platform, b.ctx, step, async () => {
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
    await runStep(b.platform, b.ctx, step, () =>
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
  async patchesTxt(item: Item, abs: string): Promise<void> {
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

  async gitPlatform(b: BuildState, url: string, ref: string): Promise<void> {
    await runStep(b.platform, b.ctx, `git clone ${url}`, () => this.git(b, null, ['clone', '--quiet', '--', url, b.root]));
    if (ref) await runStep(b.platform, b.ctx, `git checkout ${ref}`, () => this.git(b, b.root, ['checkout', '--quiet', ref]));
    const head = (await runStep(b.platform, b.ctx, 'git rev-parse HEAD', () => this.git(b, b.root, ['rev-parse', 'HEAD']))).stdout.trim();
    b.ctx.log(`${b.platform}: cloned ${url} at ${ref || 'its default branch'} (${head.slice(0, 12)}); .git is kept on the master and never synced`);
    if (await exists(join(b.root, '.gitmodules'))) b.ctx.log(`${b.platform}: the repository has submodules; they are not checked out`, 'warn');
    await runStep(b.platform, b.ctx, 'check the checkout', async () => b.budget.add(await checkBuiltTree(b.root, b.root, 'git checkout'), 'git checkout'));
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
}
