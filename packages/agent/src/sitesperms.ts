/**
 * The web server writes into a platform's `sites/`: the dir itself and every `sites/<site>/files`
 * and `sites/<site>/private` must belong to the web group and be group-writable, files/private
 * also setgid (new uploads keep the group), as Aegir does. This fixes what the agent may (as root,
 * or as the owner) and reports what it may not; it never fails a task.
 *
 * Only group and added mode bits are touched, and only on those dirs: converge owns the rest of
 * the tree. `sites/*\/files` and `private` are user data (excluded from manifests); the group bits
 * added to `sites` are tolerated by the converge engine's drift check (see WEB_WRITABLE_DIRS).
 *
 * The web group can rename entries in `sites/`, so a dir is changed only through a handle opened
 * without following links, and only after checking that the handle is the dir at the expected
 * place (no symlink anywhere on the path): a swapped-in link cannot make a root agent chgrp
 * something outside the platform.
 */
import { constants as FS } from 'node:fs';
import { lstat, open, readFile, readdir, realpath, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/** What the fix did. */
export interface SitesPermissions {
  fixed: string[];
  problems: string[];
}

/** Dependencies (tests pass their own group file and handle operations). */
export interface SitesPermDeps {
  /** The group database. @default /etc/group */
  groupFile?: string;
  /** Changes the group of an open dir (fchown). */
  chgrp?: (fd: { chown(uid: number, gid: number): Promise<void> }, gid: number) => Promise<void>;
  /** Changes the mode of an open dir (fchmod). */
  chmod?: (fd: { chmod(mode: number): Promise<void> }, mode: number) => Promise<void>;
}

/** g+rwx: what the web group needs on every dir it writes. */
const GROUP_RWX = 0o070;
/** setgid: files created inside keep the web group. */
const SETGID = 0o2000;

/** Finds a group id by name (or a numeric id) in an /etc/group-style file. */
export async function lookupGroup(group: string, groupFile = '/etc/group'): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(groupFile, 'utf8');
  } catch {
    return /^\d+$/.test(group) ? Number(group) : undefined;
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (gid === undefined || !/^\d+$/.test(gid)) continue;
    if (name === group || gid === group) return Number(gid);
  }
  return /^\d+$/.test(group) ? Number(group) : undefined;
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/**
 * On an open handle of `path` (opened without following a final symlink): checks it is still
 * the object at that place with no symlink on the way, then gives it the web group and the mode
 * `want(current)`, through the handle. Every outcome is added to `out` (fixes, or problems with
 * the command to run); nothing throws.
 */
export async function giveToGroupByHandle(
  fh: FileHandle,
  path: string,
  rel: string,
  group: { gid: number; name: string; chgrp: Required<SitesPermDeps>['chgrp']; chmod: Required<SitesPermDeps>['chmod'] },
  want: (mode: number) => number,
  out: SitesPermissions,
): Promise<void> {
  const st = await fh.stat();
  const [real, here] = await Promise.all([realpath(path).catch(() => ''), lstat(path).catch(() => undefined)]);
  if (real !== path || here === undefined || here.ino !== st.ino || here.dev !== st.dev) {
    out.problems.push(`${rel}: changed while being checked (a symlink on its path?); left as it is`);
    return;
  }
  if (st.gid !== group.gid) {
    try {
      await group.chgrp(fh, group.gid);
      out.fixed.push(`${rel}: group ${group.name}`);
    } catch (e) {
      out.problems.push(`${rel}: cannot change its group to ${group.name} (${errCode(e)}); run: chgrp ${group.name} ${path}`);
    }
  }
  // Group changes by a non-root owner may clear setgid: read the mode again.
  const mode = (await fh.stat()).mode & 0o7777;
  const to = want(mode);
  if (to !== mode) {
    try {
      await group.chmod(fh, to);
      out.fixed.push(`${rel}: mode ${octal(mode)} → ${octal(to)}`);
    } catch (e) {
      out.problems.push(`${rel}: cannot set mode ${octal(to)} (${errCode(e)}); run: chmod ${octal(to)} ${path}`);
    }
  }
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/**
 * Makes `<platformRoot>/sites`, `sites/*\/files` and `sites/*\/private` group-owned by
 * `webGroup` and group-writable (files/private also setgid). A missing `sites/` is not a problem
 * (WordPress, MediaWiki and generic trees have none).
 */
export async function fixSitesPermissions(platformRoot: string, webGroup: string, deps: SitesPermDeps = {}): Promise<SitesPermissions> {
  const out: SitesPermissions = { fixed: [], problems: [] };
  const chgrp = deps.chgrp ?? ((fd, gid) => fd.chown(-1, gid));
  const chmod = deps.chmod ?? ((fd, mode) => fd.chmod(mode));
  let root: string;
  try {
    root = await realpath(platformRoot);
  } catch {
    return out; // no tree yet: nothing to fix
  }
  const sitesSt = await lstat(join(root, 'sites')).catch(() => undefined);
  if (sitesSt === undefined) return out;
  if (!sitesSt.isDirectory()) {
    out.problems.push(`sites: is not a directory (${sitesSt.isSymbolicLink() ? 'a symlink' : 'a file'}); the web server cannot write site files there`);
    return out;
  }
  const gid = await lookupGroup(webGroup, deps.groupFile);
  if (gid === undefined) {
    out.problems.push(`web group ${webGroup} does not exist on this host; sites/ permissions left as they are (create it, or set http.webGroup in agent.json)`);
    return out;
  }

  const ensure = async (rel: string, bits: number): Promise<void> => {
    const path = join(root, rel);
    let fh;
    try {
      fh = await open(path, FS.O_RDONLY | FS.O_DIRECTORY | FS.O_NOFOLLOW);
    } catch (e) {
      const code = errCode(e);
      if (code === 'ENOENT') return;
      out.problems.push(
        code === 'ELOOP' || code === 'ENOTDIR' ? `${rel}: is not a directory (a symlink or file); left as it is` : `${rel}: cannot open (${code})`,
      );
      return;
    }
    try {
      await giveToGroupByHandle(fh, path, rel, { gid, name: webGroup, chgrp, chmod }, (mode) => mode | bits, out);
    } finally {
      await fh.close();
    }
  };

  await ensure('sites', GROUP_RWX);
  let names: string[] = [];
  try {
    names = (await readdir(join(root, 'sites'), { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch (e) {
    out.problems.push(`sites: cannot list (${errCode(e)})`);
  }
  for (const name of names.sort()) {
    for (const sub of ['files', 'private']) await ensure(`sites/${name}/${sub}`, GROUP_RWX | SETGID);
  }
  return out;
}
