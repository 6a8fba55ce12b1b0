/**
 * A site's user files moved between this web server and the master (backups, restore, clone):
 * `sites/<domain>/files` and `sites/<domain>/private` as one tar with top-level `files/…` and
 * `private/…`.
 *
 * Pack: the site dir is walked without following links (symlinks stay links; a link that leaves
 * the site dir, a socket or a FIFO is left out and reported), and the tar is made by the shared
 * codec (`packTree`: files opened with O_NOFOLLOW).
 *
 * Unpack: every entry goes through the shared hostile-archive checks (`extractArchive`: no
 * absolute paths, no `..`, no links out, no devices, no writing through a link), only `files`
 * and `private` may be at the top, and everything lands in a staging dir inside the site dir
 * first. Only when the whole tar was accepted are the parts swapped in, one rename each; the old
 * content stays in the staging dir until every part is in place, and is put back if a swap
 * fails. A refused tar leaves the site's files as they were. What was unpacked then belongs to the
 * web server (siteowner.ts: owner `php.user` when the agent is root, the web group, group-write),
 * not to the tar's uid/gid.
 */
import { lstat, mkdir, mkdtemp, readdir, realpath, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  STAGING_EXCLUDES,
  STAGING_PREFIX,
  buildManifest,
  checkDomain,
  checkSymlinkTarget,
  extractArchive,
  fail,
  packTree,
  walkTree,
  type ByteSource,
  type Logger,
  type RootMap,
} from '@spoke/shared';
import { ensureSiteDirs } from './sitefiles.js';
import { describeUserFiles, giveUserFilesToWebServer, type UserFilesOwner } from './siteowner.js';
import type { SitesPermDeps } from './sitesperms.js';

/** The parts of a site dir that hold user data, in archive order. */
export const USER_PARTS = ['files', 'private'] as const;

/** A packed site: the tar stream and what it holds. */
export interface PackedSiteFiles {
  stream: Readable;
  entries: number;
  /** `path: reason` of what was left out. */
  skipped: string[];
}

/** What an unpack did. */
export interface UnpackedSiteFiles {
  bytes: number;
  entries: number;
  /** The parts swapped in. */
  replaced: string[];
  /** Permission warnings (the web group). */
  problems: string[];
}

/** Packs and unpacks sites' user files under the agent's roots. */
export class SiteFileTransfer {
  constructor(
    private readonly deps: {
      roots: string[];
      rootMap: RootMap;
      webGroup: string;
      perms?: SitesPermDeps;
      /** Who unpacked user files belong to (agent.json `php.user`). @default { user: 'www-data' } */
      userFiles?: Omit<UserFilesOwner, 'webGroup'>;
      log: Logger;
    },
  ) {}

  /** The real site dir, or null when the platform or the site dir is missing. @throws SpokeError TREE_UNREADABLE */
  private async siteDir(tree: string, domain: string): Promise<{ root: string; dir: string } | null> {
    checkDomain(domain);
    const host = this.deps.rootMap.confine(tree, this.deps.roots);
    const root = await realpath(host).catch(() => null);
    if (root === null) return null;
    const dir = join(root, 'sites', domain);
    const st = await lstat(dir).catch(() => null);
    if (st === null) return { root, dir: '' };
    if (!st.isDirectory() || (await realpath(dir).catch(() => '')) !== dir) {
      throw fail('TREE_UNREADABLE', `sites/${domain} in ${tree} is not a directory inside the platform (a symlink?); its files are not moved`);
    }
    return { root, dir };
  }

  /**
   * Tars `sites/<domain>/files` and `private`. A missing site dir or part gives an empty tar
   * (a site without user files).
   * @throws SpokeError INVALID_DOMAIN, PATH_OUTSIDE_ROOTS, TREE_UNREADABLE
   */
  async pack(tree: string, domain: string): Promise<PackedSiteFiles> {
    const at = await this.siteDir(tree, domain);
    if (at === null) throw fail('TREE_UNREADABLE', `platform tree ${tree} does not exist on this host`);
    if (!at.dir) return { stream: packTree(at.root, buildManifest([])), entries: 0, skipped: [] };
    // The whole site dir is walked, so a link from files/ to ../private/x is judged against the
    // site dir (and kept), as the unpack will judge it.
    const walk = await walkTree(at.dir, { defaultExcludes: false, exclude: [...STAGING_EXCLUDES] });
    const mine = (p: string) => USER_PARTS.some((part) => p === part || p.startsWith(`${part}/`));
    const skipped = walk.skipped.filter((s) => mine(s.path)).map((s) => `${s.path}: ${s.reason}`);
    // A link the unpack would refuse (absolute, or leaving files/ and private/) is left out here,
    // so that one odd link does not make the whole archive unrestorable.
    const entries = walk.manifest.entries.filter((e) => {
      if (!mine(e.path)) return false;
      if (e.type !== 'symlink') return true;
      try {
        checkSymlinkTarget(e.path, e.target ?? '');
        return true;
      } catch {
        skipped.push(`${e.path}: symlink to ${e.target ?? ''} (absolute or outside the site's files; not kept)`);
        return false;
      }
    });
    return { stream: packTree(at.dir, buildManifest(entries)), entries: entries.length, skipped };
  }

  /**
   * Extracts a tar of `files/` and `private/` into `sites/<domain>` (see the module comment).
   * `replace` false: refused when the target parts hold anything.
   * @throws SpokeError INVALID_DOMAIN, PATH_OUTSIDE_ROOTS, TREE_UNREADABLE, ARCHIVE_UNSAFE, SITE_FILES_EXIST
   */
  async unpack(tree: string, domain: string, replace: boolean, source: ByteSource): Promise<UnpackedSiteFiles> {
    const first = await this.siteDir(tree, domain);
    if (first === null) throw fail('TREE_UNREADABLE', `platform tree ${tree} does not exist on this host (converge the platform first)`);
    if (!first.dir) await ensureSiteDirs(first.root, domain, this.deps.webGroup, this.deps.perms);
    const at = await this.siteDir(tree, domain);
    if (at === null || !at.dir) throw fail('TREE_UNREADABLE', `cannot create sites/${domain} in ${tree}`);
    if (!replace) await this.refuseNonEmpty(at.dir, domain);
    let bytes = 0;
    const counted = (async function* () {
      for await (const chunk of source) {
        bytes += chunk.byteLength;
        yield chunk;
      }
    })();
    const staging = await mkdtemp(join(at.dir, STAGING_PREFIX));
    try {
      const res = await extractArchive(counted, join(staging, 'new'), {
        onEntry: (e) => {
          const top = e.path.split('/')[0] ?? '';
          if (!(USER_PARTS as readonly string[]).includes(top)) {
            throw fail('ARCHIVE_UNSAFE', `${JSON.stringify(e.path)} is outside files/ and private/; a site files archive holds nothing else`);
          }
        },
      });
      for (const top of res.topLevel) {
        const st = await lstat(join(staging, 'new', top));
        if (!st.isDirectory()) throw fail('ARCHIVE_UNSAFE', `${top} in the archive is not a directory`);
      }
      if (!replace) await this.refuseNonEmpty(at.dir, domain);
      const parts = USER_PARTS.filter((p) => res.topLevel.includes(p));
      await swapIn(at.dir, staging, parts);
      const perms = await ensureSiteDirs(at.root, domain, this.deps.webGroup, this.deps.perms);
      // The tar's owners are not kept (uid/gid 0 from another host mean nothing here): what was
      // unpacked is the web server's, so uploads into it work.
      const owned = await giveUserFilesToWebServer(
        at.root,
        domain,
        { user: 'www-data', ...this.deps.userFiles, webGroup: this.deps.webGroup },
        { trustHardlinks: true },
      );
      const problems = [...perms.problems, ...owned.problems];
      this.deps.log.info({ domain, tree, entries: res.entries, replaced: parts, owner: describeUserFiles(domain, owned) }, 'site files unpacked');
      if (problems.length) this.deps.log.warn({ domain, tree, problems }, 'site files unpacked with permission problems');
      return { bytes, entries: res.entries, replaced: [...parts], problems };
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  private async refuseNonEmpty(dir: string, domain: string): Promise<void> {
    for (const part of USER_PARTS) {
      const names = await readdir(join(dir, part)).catch(() => []);
      if (names.length) {
        throw fail('SITE_FILES_EXIST', `sites/${domain}/${part} is not empty on this server; refusing to mix files (restore with replace)`);
      }
    }
  }
}

/**
 * Moves each staged part (`staging/new/<part>`) into `dir/<part>`, the old one to
 * `staging/old-<part>`. If a rename fails, the parts already swapped are put back.
 */
async function swapIn(dir: string, staging: string, parts: readonly string[]): Promise<void> {
  const done: { part: string; hadOld: boolean }[] = [];
  try {
    for (const part of parts) {
      const live = join(dir, part);
      const old = join(staging, `old-${part}`);
      const hadOld = (await lstat(live).catch(() => null)) !== null;
      if (hadOld) await rename(live, old);
      try {
        await rename(join(staging, 'new', part), live);
      } catch (e) {
        if (hadOld) await rename(old, live);
        throw e;
      }
      done.push({ part, hadOld });
    }
  } catch (e) {
    for (const d of done.reverse()) {
      const live = join(dir, d.part);
      await mkdir(join(staging, 'failed'), { recursive: true }).catch(() => undefined);
      await rename(live, join(staging, 'failed', d.part)).catch(() => undefined);
      if (d.hadOld) await rename(join(staging, `old-${d.part}`), live).catch(() => undefined);
    }
    throw fail('INTERNAL', `cannot put the restored files in place in ${dir}: ${(e as Error).message}; the old files were put back`);
  }
}
