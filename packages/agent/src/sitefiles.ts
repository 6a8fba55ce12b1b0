/**
 * A site's user data on a web server: `sites/<domain>/files` and `sites/<domain>/private` in the
 * platform's tree (never in a manifest, see docs/sites.md), the settings files the web server
 * must read (group = web group, mode 0640), and their removal when a site is deleted.
 *
 * The web group can write into `sites/`, so it could swap a dir for a symlink: nothing here
 * follows a link. Paths are walked one component at a time with lstat, files are opened with
 * O_NOFOLLOW and changed through the handle, and the handle is checked to be the entry at the
 * expected place (realpath equal to the path: no symlink on the way). A link where a dir or file
 * should be is reported and left alone; nothing outside the platform tree is created, changed or
 * removed.
 */
import { constants as FS } from 'node:fs';
import { lstat, mkdir, open, readdir, realpath, rm, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { checkDomain, fail } from '@spoke/shared';
import { fixSitesPermissions, giveToGroupByHandle, lookupGroup, type SitesPermDeps } from './sitesperms.js';

/** What was done and what looks wrong (warnings for the master's log). */
export interface SiteFilesReport {
  fixed: string[];
  problems: string[];
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/** The platform root with symlinks resolved, or null when it does not exist. */
async function realRoot(platformRoot: string): Promise<string | null> {
  try {
    return await realpath(platformRoot);
  } catch {
    return null;
  }
}

/**
 * Makes `<root>/<rel>` a directory, creating the missing components (mode `leafMode` for the
 * last, 0755 for the others), never through a symlink. Returns the problem, or null when the dir
 * is there.
 */
async function ensureDir(root: string, rel: string, leafMode: number, created: string[]): Promise<string | null> {
  const parts = rel.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const sub = parts.slice(0, i).join('/');
    const path = join(root, sub);
    let st = await lstat(path).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? null : e));
    if (st instanceof Error) return `${sub}: cannot check (${errCode(st)}); ${rel} not created`;
    if (st === null) {
      try {
        await mkdir(path, i === parts.length ? leafMode : 0o755);
        created.push(`${sub}: created`);
      } catch (e) {
        if (errCode(e) !== 'EEXIST') return `${sub}: cannot create (${errCode(e)}); ${rel} not created`;
      }
      st = await lstat(path).catch(() => null);
    }
    if (st === null || !st.isDirectory()) {
      const what = st === null ? 'gone' : st.isSymbolicLink() ? 'a symlink' : 'not a directory';
      return `${sub}: is ${what}; ${rel} not created (Spoke does not follow links in a platform's sites/)`;
    }
  }
  const path = join(root, rel);
  const real = await realpath(path).catch(() => '');
  if (real !== path) return `${rel}: changed while being created (a symlink on its path?); left as it is`;
  return null;
}

/**
 * Creates `sites/<domain>/files` (0775) and `sites/<domain>/private` (0770) when missing, then
 * gives `sites/` and every site's files dirs the web group, group-writable and setgid
 * (fixSitesPermissions). Never fails: what it cannot do is in `problems`.
 * @throws SpokeError INVALID_DOMAIN
 */
export async function ensureSiteDirs(platformRoot: string, domain: string, webGroup: string, deps: SitesPermDeps = {}): Promise<SiteFilesReport> {
  checkDomain(domain);
  const out: SiteFilesReport = { fixed: [], problems: [] };
  const root = await realRoot(platformRoot);
  if (root === null) {
    out.problems.push(`platform tree ${platformRoot} does not exist on this host; sites/${domain}/files not created (verify the platform)`);
    return out;
  }
  for (const [sub, mode] of [
    ['files', 0o775],
    ['private', 0o770],
  ] as const) {
    const problem = await ensureDir(root, `sites/${domain}/${sub}`, mode, out.fixed);
    if (problem) out.problems.push(problem);
  }
  const perms = await fixSitesPermissions(root, webGroup, deps);
  out.fixed.push(...perms.fixed);
  out.problems.push(...perms.problems);
  return out;
}

/**
 * Checks a path relative to a platform root: no leading slash, no empty, `.` or `..` component.
 * @throws SpokeError INVALID_PATH
 */
export function checkRelativePath(rel: string): string {
  // eslint-disable-next-line no-control-regex
  if (!rel || rel.startsWith('/') || /[\x00]/.test(rel) || rel.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw fail('INVALID_PATH', `${JSON.stringify(rel)} is not a normalised path relative to the platform root`);
  }
  return rel;
}

/**
 * Gives files the web server must read (settings files with the database password) to the web
 * group with mode 0640. A missing file, a symlink or a non-file is a problem, not an error.
 * @throws SpokeError INVALID_PATH for a path that is not relative and normalised
 */
export async function giveToWebGroup(platformRoot: string, rels: readonly string[], webGroup: string, deps: SitesPermDeps = {}): Promise<SiteFilesReport> {
  rels.forEach(checkRelativePath);
  const out: SiteFilesReport = { fixed: [], problems: [] };
  if (rels.length === 0) return out;
  const root = await realRoot(platformRoot);
  if (root === null) {
    out.problems.push(`platform tree ${platformRoot} does not exist on this host; ${rels.join(', ')} not given to ${webGroup}`);
    return out;
  }
  const gid = await lookupGroup(webGroup, deps.groupFile);
  if (gid === undefined) {
    out.problems.push(`web group ${webGroup} does not exist on this host; ${rels.join(', ')} left as they are (create it, or set http.webGroup in agent.json)`);
    return out;
  }
  const chgrp = deps.chgrp ?? ((fd, g) => fd.chown(-1, g));
  const chmod = deps.chmod ?? ((fd, m) => fd.chmod(m));
  for (const rel of rels) {
    const path = join(root, rel);
    let fh;
    try {
      fh = await open(path, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
    } catch (e) {
      const code = errCode(e);
      out.problems.push(
        code === 'ENOENT'
          ? `${rel}: missing; the web server cannot read it (converge the platform, then verify the site)`
          : code === 'ELOOP'
            ? `${rel}: is a symlink; left as it is`
            : `${rel}: cannot open (${code})`,
      );
      continue;
    }
    try {
      if (!(await fh.stat()).isFile()) {
        out.problems.push(`${rel}: is not a regular file; left as it is`);
        continue;
      }
      await giveToGroupByHandle(fh, path, rel, { gid, name: webGroup, chgrp, chmod }, () => 0o640, out);
    } finally {
      await fh.close();
    }
  }
  return out;
}

/** What deleting a site's files did. */
export interface SiteFilesDeletion {
  /** Removed, relative to the platform root. */
  deleted: string[];
  problems: string[];
}

/**
 * Removes `sites/<domain>/files` and `sites/<domain>/private` (user data). A symlink in their
 * place is removed as a link (its target is never touched); a symlink on the way (`sites` or
 * `sites/<domain>`) stops the removal with a problem. Missing dirs are fine (a retry works).
 * @throws SpokeError INVALID_DOMAIN
 */
export async function deleteSiteFiles(platformRoot: string, domain: string): Promise<SiteFilesDeletion> {
  checkDomain(domain);
  const out: SiteFilesDeletion = { deleted: [], problems: [] };
  const root = await realRoot(platformRoot);
  if (root === null) return out;
  const siteDir = join(root, 'sites', domain);
  const st = await lstat(siteDir).catch(() => null);
  if (st === null) return out;
  if (!st.isDirectory() || (await realpath(siteDir).catch(() => '')) !== siteDir) {
    out.problems.push(`sites/${domain}: is not a directory inside the platform (a symlink?); its files were not deleted`);
    return out;
  }
  for (const sub of ['files', 'private']) {
    const rel = `sites/${domain}/${sub}`;
    const path = join(siteDir, sub);
    const s = await lstat(path).catch(() => null);
    if (s === null) continue;
    try {
      if (s.isDirectory()) {
        // rm does not follow symlinks inside the tree (it lstat's every entry).
        await rm(path, { recursive: true, force: true });
        out.deleted.push(rel);
      } else {
        await unlink(path);
        out.deleted.push(`${rel} (${s.isSymbolicLink() ? 'a symlink: only the link' : 'a file'})`);
      }
    } catch (e) {
      out.problems.push(`${rel}: cannot remove (${errCode(e)}); remove it by hand: rm -r ${path}`);
    }
  }
  // The site dir itself goes when nothing else is left in it (its settings left with the
  // platform's converge; a converge keeps a dir that still holds user files).
  if ((await readdir(siteDir).catch(() => ['?'])).length === 0) {
    await rmdir(siteDir).then(
      () => out.deleted.push(`sites/${domain}`),
      (e: unknown) => out.problems.push(`sites/${domain}: cannot remove the empty dir (${errCode(e)})`),
    );
  }
  return out;
}
