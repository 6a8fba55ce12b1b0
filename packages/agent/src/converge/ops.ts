/**
 * Journal operations and their execution. Every op is idempotent and written so that running the
 * whole list again from the start, after a crash at any point of an earlier run, ends in the same
 * state: forward apply and journal replay are the same code.
 *
 * Why each op is safe to repeat:
 * - `rm` removes whatever is at a path that the new manifest does not have (nothing re-creates it),
 *   or — with `ifType`, for a type change — only while the path still has its old type, so a
 *   replay never removes what the type change already created.
 * - `place` renames a staged blob over its destination; once the blob is gone the destination
 *   must already hold its hash (verified by reading it) or the op fails loudly.
 * - `mkdir`, `symlink`, `chmod` compare before they write.
 * - `publish` renames the staging tree to the tree root when the root is still absent or empty.
 * Nothing is ever written through a symlink: every op checks that the parents of its path are real
 * directories (lstat), and a path whose parent is a symlink is refused (or, for `rm`, cannot
 * exist inside the tree and is done).
 */
import * as fs from 'node:fs';
import { constants as FS } from 'node:fs';
import { join } from 'node:path';
import { type EntryType, type ExcludeMatcher, fail, MODE_MASK } from '@spoke/shared';
import { errText, hashFileSync, isDiskFull, isErrno, lstatOrNull } from './fsutil.js';

/** One journal operation. Paths are tree-relative; blobs live in `<staging>/blobs/<hash>`. */
export type Op =
  | { op: 'publish' }
  | { op: 'rm'; path: string; ifType?: EntryType | 'other' }
  | { op: 'mkdir'; path: string }
  | { op: 'place'; path: string; hash: string; size: number; mode: number; copy?: true }
  | { op: 'symlink'; path: string; target: string }
  | { op: 'chmod'; path: string; mode: number; ifDir?: true };

/** Everything an op needs to run. */
export interface OpContext {
  root: string;
  staging: string;
  excludes: ExcludeMatcher;
  guard: DirGuard;
  /** Temp names in `<staging>/tmp` are `<tmpPrefix>-<tmpSeq>`, unique per run. */
  tmpPrefix: string;
  tmpSeq: number;
}

const COPY_FLAGS = FS.COPYFILE_FICLONE;

/**
 * Remembers which tree-relative directories were checked to be real directories (not symlinks),
 * so each is lstat'ed once per run. Cleared whenever a directory is removed.
 */
export class DirGuard {
  private readonly ok = new Set<string>();
  constructor(private readonly root: string) {}

  /** 'ok' when every parent of `rel` is a real directory, else what the first bad one is. */
  parents(rel: string): 'ok' | 'missing' | 'notdir' | 'symlink' {
    const i = rel.lastIndexOf('/');
    return i < 0 ? 'ok' : this.dir(rel.slice(0, i));
  }

  private dir(rel: string): 'ok' | 'missing' | 'notdir' | 'symlink' {
    if (this.ok.has(rel)) return 'ok';
    const up = this.parents(rel);
    if (up !== 'ok') return up;
    const st = lstatOrNull(join(this.root, rel));
    if (st === undefined) return 'missing';
    if (st.isSymbolicLink()) return 'symlink';
    if (!st.isDirectory()) return 'notdir';
    this.ok.add(rel);
    return 'ok';
  }

  /** Records a directory this run created. */
  add(rel: string): void {
    this.ok.add(rel);
  }

  clear(): void {
    this.ok.clear();
  }
}

function requireParents(ctx: OpContext, rel: string): void {
  const why = ctx.guard.parents(rel);
  if (why === 'ok') return;
  if (why === 'symlink') {
    throw fail('PATH_OUTSIDE_ROOTS', `refusing to write ${JSON.stringify(rel)}: a parent directory is a symlink`, { path: rel });
  }
  throw fail('INTERNAL', `cannot write ${JSON.stringify(rel)}: a parent directory is ${why === 'missing' ? 'missing' : 'not a directory'}`);
}

function tmpPath(ctx: OpContext): string {
  const dir = join(ctx.staging, 'tmp');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return join(dir, `${ctx.tmpPrefix}-${ctx.tmpSeq++}`);
}

export function blobPath(staging: string, hash: string): string {
  return join(staging, 'blobs', hash);
}

/** Runs one op (see the module comment for why repeating it is safe). */
export function runOp(ctx: OpContext, op: Op): void {
  switch (op.op) {
    case 'rm':
      return rmOp(ctx, op.path, op.ifType);
    case 'mkdir':
      return mkdirOp(ctx, op.path);
    case 'place':
      return placeOp(ctx, op);
    case 'symlink':
      return symlinkOp(ctx, op.path, op.target);
    case 'chmod':
      return chmodOp(ctx, op.path, op.mode, op.ifDir === true);
    case 'publish':
      return publishOp(ctx);
  }
}

function typeOf(st: fs.Stats): EntryType | 'other' {
  return st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
}

function rmOp(ctx: OpContext, rel: string, ifType: EntryType | 'other' | undefined): void {
  // A path whose parent is not a real directory cannot be inside the tree: nothing to remove
  // (and a symlinked parent must never be followed).
  if (ctx.guard.parents(rel) !== 'ok') return;
  const abs = join(ctx.root, rel);
  const st = lstatOrNull(abs);
  if (st === undefined) return;
  if (ifType !== undefined && typeOf(st) !== ifType) return;
  if (st.isDirectory()) {
    ctx.guard.clear();
    removeKeepingExcluded(ctx.excludes, Buffer.from(abs), rel);
  } else {
    fs.unlinkSync(abs);
  }
}

/**
 * Removes a directory's contents except excluded paths (user data), never following symlinks,
 * and the directory itself when nothing is left. Returns true when it was removed.
 */
function removeKeepingExcluded(excludes: ExcludeMatcher, abs: Buffer, rel: string): boolean {
  let kept = false;
  for (const name of fs.readdirSync(abs, { encoding: 'buffer', withFileTypes: true })) {
    const childRel = `${rel}/${name.name.toString('utf8')}`;
    if (excludes.matchesSelf(childRel)) {
      kept = true;
      continue;
    }
    const childAbs = Buffer.concat([abs, Buffer.from('/'), name.name]);
    if (name.isDirectory()) {
      if (!removeKeepingExcluded(excludes, childAbs, childRel)) kept = true;
    } else {
      fs.unlinkSync(childAbs);
    }
  }
  if (kept) return false;
  fs.rmdirSync(abs);
  return true;
}

/** First excluded path (user data) at or below `rel` on disk, if any. */
export function findExcluded(root: string, excludes: ExcludeMatcher, rel: string): string | undefined {
  if (excludes.matchesSelf(rel)) return rel;
  let names: fs.Dirent<Buffer>[];
  try {
    names = fs.readdirSync(Buffer.from(join(root, rel)), { encoding: 'buffer', withFileTypes: true });
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return undefined;
    throw err;
  }
  for (const d of names) {
    const childRel = `${rel}/${d.name.toString('utf8')}`;
    if (excludes.matchesSelf(childRel)) return childRel;
    if (d.isDirectory()) {
      const found = findExcluded(root, excludes, childRel);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

function mkdirOp(ctx: OpContext, rel: string): void {
  requireParents(ctx, rel);
  const abs = join(ctx.root, rel);
  try {
    // Owner-only until the final chmod, which comes after the children (a read-only mode must
    // not block their placement).
    fs.mkdirSync(abs, 0o700);
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
    const st = fs.lstatSync(abs);
    if (!st.isDirectory()) throw fail('INTERNAL', `cannot create directory ${JSON.stringify(rel)}: something else is there`);
  }
  ctx.guard.add(rel);
}

function placeOp(ctx: OpContext, op: Extract<Op, { op: 'place' }>): void {
  requireParents(ctx, op.path);
  const src = blobPath(ctx.staging, op.hash);
  const dest = join(ctx.root, op.path);
  const mode = op.mode & MODE_MASK;
  if (op.copy) {
    const tmp = tmpPath(ctx);
    let copied = false;
    try {
      fs.copyFileSync(src, tmp, COPY_FLAGS);
      copied = true;
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
    if (copied) {
      fs.chmodSync(tmp, mode);
      fs.renameSync(tmp, dest);
      return;
    }
  } else {
    try {
      fs.chmodSync(src, mode);
      fs.renameSync(src, dest);
      return;
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }
  // The blob is gone: an earlier run of this op (or the last user of the blob) placed it.
  const st = lstatOrNull(dest);
  const got = st?.isFile() && st.size === op.size ? hashFileSync(dest) : undefined;
  if (got?.hash !== op.hash) {
    throw fail(
      'BLOB_HASH_MISMATCH',
      `cannot finish placing ${JSON.stringify(op.path)}: blob ${op.hash.slice(0, 12)}… is gone from staging and the file does not hold it`,
      { path: op.path, hash: op.hash },
    );
  }
  if (((st as fs.Stats).mode & MODE_MASK) !== mode) fs.chmodSync(dest, mode);
}

function symlinkOp(ctx: OpContext, rel: string, target: string): void {
  requireParents(ctx, rel);
  const abs = join(ctx.root, rel);
  const st = lstatOrNull(abs);
  if (st === undefined) {
    fs.symlinkSync(target, abs);
    return;
  }
  if (st.isSymbolicLink() && fs.readlinkSync(abs) === target) return;
  if (st.isDirectory()) throw fail('INTERNAL', `cannot create symlink ${JSON.stringify(rel)}: a directory is there`);
  const tmp = tmpPath(ctx);
  fs.symlinkSync(target, tmp);
  fs.renameSync(tmp, abs); // atomic replacement of the old file or link
}

/** With `ifDir` (making a parent writable for a while) a path that is not a directory is skipped. */
function chmodOp(ctx: OpContext, rel: string, mode: number, ifDir: boolean): void {
  if (ifDir && ctx.guard.parents(rel) !== 'ok') return;
  requireParents(ctx, rel);
  const abs = join(ctx.root, rel);
  const st = lstatOrNull(abs);
  if (ifDir && st?.isDirectory() !== true) return;
  if (st === undefined || st.isSymbolicLink()) {
    throw fail('INTERNAL', `cannot set the mode of ${JSON.stringify(rel)}: ${st === undefined ? 'it is missing' : 'it is a symlink'}`);
  }
  const m = mode & MODE_MASK;
  if ((st.mode & MODE_MASK) !== m) fs.chmodSync(abs, m); // chmod follows links: checked above
}

/** The staging tree of an initial sync. */
export function stagingTree(staging: string): string {
  return join(staging, 'tree');
}

function publishOp(ctx: OpContext): void {
  const from = stagingTree(ctx.staging);
  const st = lstatOrNull(from);
  if (st !== undefined) {
    try {
      fs.renameSync(from, ctx.root); // replaces an absent root or an empty directory atomically
    } catch (err) {
      if (isDiskFull(err)) throw err; // converge() says DISK_LOW
      throw fail('INTERNAL', `cannot publish the new tree at ${ctx.root}: ${errText(err)}`);
    }
    return;
  }
  const root = lstatOrNull(ctx.root);
  if (root === undefined || !root.isDirectory()) {
    throw fail('INTERNAL', `cannot finish publishing ${ctx.root}: the staged tree is gone and the root is not there`);
  }
}
