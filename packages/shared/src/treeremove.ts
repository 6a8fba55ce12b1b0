/**
 * Deleting a platform tree without deleting user data: `sites/<site>/files` and
 * `sites/<site>/private` (the default user-data excludes, never part of a manifest) that hold
 * anything stay, with the directories above them; everything else goes. Nothing is followed: a
 * symlink is removed as a link (a symlinked files/ or private/ counts as holding something).
 */
import type { Stats } from 'node:fs';
import { lstat, readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';

/** What `removeTreeKeepingUserData` did. */
export interface TreeRemoval {
  /** Something was at the root. */
  existed: boolean;
  /** The root is gone. */
  removed: boolean;
  /** User-data dirs kept, relative to the root (e.g. `sites/a.test/files`). */
  kept: string[];
  /** Why something stayed (one line each). */
  problems: string[];
}

const USER_DATA = new Set(['files', 'private']);

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** True unless `p` is missing or an empty real directory. */
async function holdsSomething(p: string): Promise<boolean> {
  const st = await lstatOrNull(p);
  if (!st) return false;
  if (!st.isDirectory()) return true;
  return (await readdir(p)).length > 0;
}

/** Removes a directory when it is empty; true when it is gone. */
async function rmdirIfEmpty(p: string): Promise<boolean> {
  try {
    await rmdir(p);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return true;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw e;
  }
}

/**
 * Deletes the tree at `root` except non-empty `sites/<site>/files` and `sites/<site>/private`,
 * which stay with their parents and are listed in `kept`. A root that is not a real directory
 * (a symlink, a file) is left alone and reported. Missing: nothing to do.
 */
export async function removeTreeKeepingUserData(root: string): Promise<TreeRemoval> {
  const out: TreeRemoval = { existed: false, removed: false, kept: [], problems: [] };
  const st = await lstatOrNull(root);
  if (!st) return out;
  out.existed = true;
  if (!st.isDirectory()) {
    out.problems.push(`${root} is not a directory (${st.isSymbolicLink() ? 'a symlink' : 'a file'}); left alone`);
    return out;
  }
  for (const name of await readdir(root)) {
    const abs = join(root, name);
    const est = await lstatOrNull(abs);
    if (name !== 'sites' || !est?.isDirectory()) {
      await rm(abs, { recursive: true, force: true });
      continue;
    }
    for (const site of await readdir(abs)) {
      const siteAbs = join(abs, site);
      const sst = await lstatOrNull(siteAbs);
      if (!sst?.isDirectory()) {
        await rm(siteAbs, { recursive: true, force: true });
        continue;
      }
      for (const part of await readdir(siteAbs)) {
        const partAbs = join(siteAbs, part);
        if (USER_DATA.has(part) && (await holdsSomething(partAbs))) {
          out.kept.push(`sites/${site}/${part}`);
          continue;
        }
        await rm(partAbs, { recursive: true, force: true });
      }
      await rmdirIfEmpty(siteAbs);
    }
    await rmdirIfEmpty(abs);
  }
  out.removed = await rmdirIfEmpty(root);
  if (out.kept.length) {
    out.problems.push(`kept user data in ${root}: ${out.kept.join(', ')} (not empty; move or delete it by hand)`);
  }
  return out;
}
