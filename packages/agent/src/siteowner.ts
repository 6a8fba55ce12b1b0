/**
 * Who owns a site's user files: everything under `sites/<domain>/files` and `private` belongs to
 * the web server — owner `php.user` (agent.json, default www-data; only when the agent is root,
 * otherwise owners are left as they are), group the web group, group-writable (dirs also setgid,
 * so new uploads keep the group). Restores, clones and migrates unpack the archive as the agent
 * (root: uid/gid 0 from the tar are not kept) and then call this; `site verify` (ConfigureSite)
 * calls it to repair drift. Only owner, group and *added* mode bits change; content never does.
 *
 * The web server can write everything walked here, so nothing is followed: entries are lstat'ed,
 * symlinks, sockets, FIFOs and devices are left alone, and an entry that needs a change is opened
 * with O_NOFOLLOW and changed through the handle only after checking that the handle is the entry
 * at that place with no symlink on the way (the same rule as sitesperms.ts; the kernel's path of
 * the open fd is compared with the expected one). A regular file with
 * more than one link is not changed by a repair (a hard link could reach a file outside the
 * site); an unpack may (`trustHardlinks`: its links came from the archive, made by the agent).
 * Entries that already match cost one lstat: a clean tree of 20,000 files is a readdir and an
 * lstat each.
 */
import { constants as FS } from 'node:fs';
import { lstat, open, readdir, readlink, realpath, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { lookupUser } from './php/sitephp.js';
import { lookupGroup } from './sitesperms.js';

/** Who user files belong to, from agent.json. */
export interface UserFilesOwner {
  /** `php.user`: the owner when the agent is root. */
  user: string;
  /** `http.webGroup`. */
  webGroup: string;
  /** @default /etc/passwd */
  passwdFile?: string;
  /** @default /etc/group */
  groupFile?: string;
  /** Whether the agent may give files away. @default process.getuid() === 0 */
  isRoot?: () => boolean;
}

/** What a walk did: counts, not every file; at most a few problem lines. */
export interface UserFilesReport {
  /** Entries looked at (the parts themselves included). */
  checked: number;
  /** Entries whose owner, group or mode changed. */
  changed: number;
  /** Who they belong to now, e.g. `www-data:www-data` (`:www-data` when owners are left). */
  owner: string;
  problems: string[];
}

const MAX_PROBLEMS = 5;
/** g+rw for files; dirs also get x and setgid. */
const FILE_BITS = 0o060;
const DIR_BITS = 0o2070;

/** Entries of one dir looked at together. */
const BATCH = 16;

/**
 * Where an open handle really is: the kernel's own path of the fd (/proc/self/fd, one readlink,
 * exact even if a dir on the way was swapped since), else realpath of `path` (then a symlink on
 * the way shows as a different path).
 */
async function openedPath(fh: FileHandle, path: string): Promise<string> {
  try {
    return await readlink(`/proc/self/fd/${fh.fd}`);
  } catch {
    return realpath(path).catch(() => '');
  }
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/**
 * Gives `sites/<domain>/files` and `private` under `root` (the platform's real root) and
 * everything in them to the web server (see the module comment). Missing parts are fine. Never
 * throws for a file: what it cannot do is counted into `problems` (the first few, then a count).
 */
export async function giveUserFilesToWebServer(
  root: string,
  domain: string,
  owner: UserFilesOwner,
  opts: { trustHardlinks?: boolean } = {},
): Promise<UserFilesReport> {
  const isRoot = (owner.isRoot ?? (() => process.getuid?.() === 0))();
  const out: UserFilesReport = { checked: 0, changed: 0, owner: `:${owner.webGroup}`, problems: [] };
  let dropped = 0;
  const problem = (p: string) => (out.problems.length < MAX_PROBLEMS ? out.problems.push(p) : dropped++);
  const gid = await lookupGroup(owner.webGroup, owner.groupFile);
  if (gid === undefined) {
    out.problems.push(
      `web group ${owner.webGroup} does not exist on this host; sites/${domain}/files left as they are (create it, or set http.webGroup in agent.json)`,
    );
    return out;
  }
  let uid = -1;
  if (isRoot) {
    const u = await lookupUser(owner.user, owner.passwdFile);
    if (u === undefined) {
      out.problems.push(
        `php.user ${owner.user} does not exist on this host; owners under sites/${domain}/files left as they are (set php.user in agent.json to php-fpm's pool user)`,
      );
    } else {
      uid = u.uid;
      out.owner = `${u.name}:${owner.webGroup}`;
    }
  }

  const fix = async (rel: string, st: Stats): Promise<void> => {
    const dir = st.isDirectory();
    const wantMode = (m: number) => (m & 0o7777) | (dir ? DIR_BITS : FILE_BITS);
    const ownerOk = uid === -1 || st.uid === uid;
    if (ownerOk && st.gid === gid && wantMode(st.mode) === (st.mode & 0o7777)) return;
    if (!dir && st.nlink > 1 && !opts.trustHardlinks) {
      problem(`${rel}: has ${st.nlink} hard links; left as it is (a link could reach a file outside the site)`);
      return;
    }
    const path = join(root, rel);
    let fh: FileHandle;
    try {
      fh = await open(path, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK | (dir ? FS.O_DIRECTORY : 0));
    } catch (e) {
      if (errCode(e) !== 'ENOENT') problem(`${rel}: cannot open (${errCode(e)}); left as it is`);
      return;
    }
    try {
      const now = await fh.stat();
      const here = await openedPath(fh, path);
      if (here !== path || now.ino !== st.ino || now.dev !== st.dev) {
        problem(`${rel}: changed while being checked (a symlink on its path?); left as it is`);
        return;
      }
      if (!ownerOk || now.gid !== gid) await fh.chown(ownerOk ? -1 : uid, gid);
      // chown clears setgid on files and may on dirs for a non-root owner: read the mode again.
      const mode = (await fh.stat()).mode & 0o7777;
      if (wantMode(mode) !== mode) await fh.chmod(wantMode(mode));
      out.changed++;
    } catch (e) {
      problem(
        `${rel}: cannot give it to ${out.owner.replace(/^:/, 'group ')} (${errCode(e)}); run: chown ${uid === -1 ? '' : owner.user}:${owner.webGroup} ${path}`,
      );
    } finally {
      await fh.close();
    }
  };

  const siteRel = `sites/${domain}`;
  const site = await lstat(join(root, siteRel)).catch(() => null);
  if (site === null) return out;
  if (!site.isDirectory() || (await realpath(join(root, siteRel)).catch(() => '')) !== join(root, siteRel)) {
    out.problems.push(`${siteRel}: is not a directory inside the platform (a symlink?); its files were left as they are`);
    return out;
  }
  const stack: string[] = [];
  for (const part of ['files', 'private']) {
    const rel = `${siteRel}/${part}`;
    const st = await lstat(join(root, rel)).catch(() => null);
    if (st === null) continue;
    out.checked++;
    if (!st.isDirectory()) {
      problem(`${rel}: is not a directory (${st.isSymbolicLink() ? 'a symlink' : 'a file'}); left as it is`);
      continue;
    }
    await fix(rel, st);
    stack.push(rel);
  }
  while (stack.length) {
    const rel = stack.pop() as string;
    // A dir swapped for a symlink since its lstat is not listed (no walk out of the site).
    if ((await realpath(join(root, rel)).catch(() => '')) !== join(root, rel)) {
      problem(`${rel}: changed while being checked (a symlink on its path?); not walked`);
      continue;
    }
    let names: string[];
    try {
      names = await readdir(join(root, rel));
    } catch (e) {
      problem(`${rel}: cannot list (${errCode(e)})`);
      continue;
    }
    // A few entries at a time: lstat and the handle work wait on the thread pool.
    for (let i = 0; i < names.length; i += BATCH) {
      await Promise.all(
        names.slice(i, i + BATCH).map(async (name) => {
          const child = `${rel}/${name}`;
          const st = await lstat(join(root, child)).catch(() => null);
          if (st === null) return;
          out.checked++;
          if (st.isDirectory()) {
            await fix(child, st);
            stack.push(child);
          } else if (st.isFile()) {
            await fix(child, st);
          }
          // symlinks, sockets, FIFOs, devices: never followed, never changed
        }),
      );
    }
  }
  if (dropped) out.problems.push(`… and ${dropped} more under ${siteRel} like these`);
  return out;
}

/** One line for a task log: `sites/x: 3 of 120 entries in files/ and private/ given to www-data:www-data`. */
export function describeUserFiles(domain: string, r: UserFilesReport): string {
  return `sites/${domain}/files, private: ${r.changed} of ${r.checked} entries given to ${r.owner.replace(/^:/, 'group ')} (group-writable)`;
}
