/**
 * The initial build: a converge into a missing or empty root builds the whole tree in
 * `<staging>/tree`, in its final layout and modes, and its journal is one rename that publishes
 * it (step 4 of converge.ts).
 */
import * as fs from 'node:fs';
import { constants as FS } from 'node:fs';
import { join } from 'node:path';
import { fail, type Manifest, type ManifestEntry, MODE_MASK } from '@spoke/shared';
import { creationMode, errText, isDiskFull } from './fsutil.js';
import type { Stepper } from './journal.js';
import { stagingTree } from './ops.js';
import type { Needs } from './plan.js';

/** The directories of a new tree, in `<staging>/tree` (0700 until buildInitialTree sets their modes). */
export function makeInitialDirs(staging: string, desired: Manifest): void {
  const tree = stagingTree(staging);
  try {
    fs.mkdirSync(tree, 0o700);
    for (const e of desired.entries) if (e.type === 'dir') fs.mkdirSync(`${tree}/${e.path}`, 0o700);
  } catch (err) {
    if (isDiskFull(err)) throw err; // converge() says DISK_LOW
    throw fail('INTERNAL', `cannot build the new tree in ${tree}: ${errText(err)}`);
  }
}

/**
 * Completes the whole desired tree in `<staging>/tree` (its directories made by makeInitialDirs),
 * in its final layout: the journal is then the single rename that publishes it. Content copied
 * from this host is in place already (`placed`); fetched blobs are renamed in (copied for all but
 * their last use). Fresh private directory, parents before children, and every parent is a
 * directory of the manifest: nothing here can meet a symlink.
 */
export function buildInitialTree(
  staging: string,
  desired: Manifest,
  needs: Needs,
  rootSt: fs.Stats | undefined,
  stepper: Stepper,
  placed: ReadonlyMap<string, string>,
  /** This process's umask, and the placed blobs created with creationMode of their first path's mode. */
  created: { umask: number; withMode: ReadonlySet<string> },
): void {
  const tree = stagingTree(staging);
  const blobs = join(staging, 'blobs');
  const left = new Map<string, number>();
  for (const [hash, n] of needs) left.set(hash, n.paths.length);
  const entries = desired.entries;
  try {
    for (const e of entries) {
      if (e.type === 'dir') continue;
      const abs = `${tree}/${e.path}`;
      if (e.type === 'symlink') {
        fs.symlinkSync(e.target as string, abs);
      } else {
        const at = placed.get(e.hash);
        if (at === undefined) {
          const n = (left.get(e.hash) as number) - 1;
          left.set(e.hash, n);
          const src = `${blobs}/${e.hash}`;
          if (n > 0) fs.copyFileSync(src, abs, FS.COPYFILE_FICLONE);
          else fs.renameSync(src, abs);
        } else if (at !== abs) fs.copyFileSync(at, abs, FS.COPYFILE_FICLONE);
      }
      if (stepper.active) stepper.step(`build ${e.path}`);
    }
    // File modes once every copy is made (a placed file may be the source of later copies and
    // must stay readable until then), directory modes last, deepest first: a read-only
    // directory must not block its children.
    // A file placed at its first path (fetched or copied) has its mode already when it was
    // created with it (see creationMode) and the umask kept it; copies, renamed blobs and files
    // of unknown creation mode get this chmod.
    for (const e of entries) {
      if (e.type !== 'file') continue;
      const abs = `${tree}/${e.path}`;
      const kept = placed.get(e.hash) === abs && created.withMode.has(e.hash) && (creationMode(e.mode) & ~created.umask) === (e.mode & MODE_MASK);
      if (kept) continue;
      fs.chmodSync(abs, e.mode & MODE_MASK);
    }
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i] as ManifestEntry;
      if (e.type === 'dir') fs.chmodSync(`${tree}/${e.path}`, e.mode & MODE_MASK);
    }
    fs.chmodSync(tree, rootSt === undefined ? 0o755 : rootSt.mode & MODE_MASK);
  } catch (err) {
    if (isDiskFull(err)) throw err; // converge() says DISK_LOW
    throw fail('INTERNAL', `cannot build the new tree in ${tree}: ${errText(err)}`);
  }
}
