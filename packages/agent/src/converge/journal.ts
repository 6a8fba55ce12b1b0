/**
 * The converge transaction log: `<treeStateDir>/journal.json`, written atomically (temp file,
 * rename) once every blob is staged and verified, before the tree is touched. Its existence is the commit decision: without it the tree is still the old one (the
 * staging dir is swept), with it the ops are run to the end — now, or by replayJournals at the
 * next start-up. The new manifest is written to its own file first and the journal names it; the
 * head file written after the last op is the commit point of the manifest. None of these is
 * fsynced: that holds against the death of the process (the page cache survives it); the machine
 * going down is found at the next start from the run marker, and the state distrusted (boot.ts).
 *
 * Format (v1):
 * ```
 * { "v": 1, "treeKey": "/var/aegir/platforms/d7", "hostRoot": "/srv/x/var/aegir/platforms/d7",
 *   "staging": "/srv/x/var/aegir/platforms/.spoke-staging-d7-1a2b3c4d5e6f",
 *   "rootHash": "<new root hash>",      // its manifest file: manifest-<root>.json (state.ts)
 *   "excludes": [<extra exclude patterns; the defaults always apply>],
 *   "ops": [ {"op":"chmod","path":"ro","mode":493,"ifDir":true},     // u+rwx while writing into it
 *            {"op":"rm","path":"old.php"},                              // removed, deepest first
 *            {"op":"rm","path":"x","ifType":"dir"}, {"op":"place","path":"x",…}, // type change
 *            {"op":"mkdir","path":"n"},                                 // 0700 until its final chmod
 *            {"op":"place","path":"n/a","hash":"…","size":3,"mode":420,"copy":true}, // blob used again later
 *            {"op":"place","path":"n/b","hash":"…","size":3,"mode":420}, // last use: rename
 *            {"op":"symlink","path":"l","target":"n/a"},
 *            {"op":"chmod","path":"n","mode":493}, … ] }            // directory modes last, deepest first
 * ```
 * `rm` may carry `ifType` ("file" | "dir" | "symlink" | "other"): it then only removes a path that
 * still has that type (type changes, and things the walk cannot list such as sockets or symlinks
 * leaving the tree). A removed directory keeps excluded content (user data) and stays if any.
 * or, for the initial sync into an empty or missing root, the single op `{"op":"publish"}`
 * (rename `<staging>/tree` to hostRoot).
 */
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { excludeMatcher, fail, isSpokeError } from '@spoke/shared';
import { errText, lstatOrNull, readIfExists, removeAll, writeAtomic } from './fsutil.js';
import { DirGuard, type Op, type OpContext, runOp } from './ops.js';
import { type Committed, type HeadConflict, JOURNAL, pruneManifestFiles, readManifestFile, rememberCommitted, STAGING_INTENT, writeHead } from './state.js';

/** The journal document (see the module comment). */
export interface Journal {
  v: 1;
  treeKey: string;
  hostRoot: string;
  staging: string;
  rootHash: string;
  excludes: string[];
  ops: Op[];
  /** Paths this converge skipped for user data (written to the head at the commit). */
  conflicts?: HeadConflict[];
  /** With conflicts: the root hash that was desired. */
  wanted?: string;
}

/** Counts steps for the onStep test hook. */
export class Stepper {
  n = 0;
  constructor(private readonly hook: ((n: number, what: string) => void) | undefined) {}
  step(what: string): void {
    if (this.hook !== undefined) this.hook(++this.n, what);
  }
  get active(): boolean {
    return this.hook !== undefined;
  }
}

/** Writes the journal: from here on the converge is decided. */
export function writeJournal(treeDir: string, j: Journal): void {
  writeAtomic(join(treeDir, JOURNAL), JSON.stringify(j), false);
}

/** The journal of a tree, if one is pending. */
export function readJournal(treeDir: string): Journal | undefined {
  const file = join(treeDir, JOURNAL);
  const text = readIfExists(file);
  if (text === undefined) return undefined;
  let j: Journal;
  try {
    j = JSON.parse(text) as Journal;
  } catch {
    throw fail('INTERNAL', `journal ${file} is not valid JSON (left in place)`);
  }
  if (j.v !== 1 || !Array.isArray(j.ops) || typeof j.hostRoot !== 'string' || typeof j.staging !== 'string') {
    throw fail('INTERNAL', `journal ${file} has an unknown format (left in place)`);
  }
  return j;
}

/**
 * Runs every op of a journal, then commits: head, journal removed, staging removed,
 * older manifest files pruned. Safe to call again after a crash at any point of an earlier call.
 * @throws SpokeError when an op cannot be completed; the journal is left for a later attempt
 */
export function runJournal(
  treeDir: string,
  j: Journal,
  opts: { stepper?: Stepper; committed?: Committed; onOp?: (done: number, total: number) => void } = {},
): void {
  const stepper = opts.stepper ?? new Stepper(undefined);
  const ctx: OpContext = {
    root: j.hostRoot,
    staging: j.staging,
    excludes: excludeMatcher({ exclude: j.excludes }),
    guard: new DirGuard(j.hostRoot),
    tmpSeq: 0,
    tmpPrefix: randomBytes(4).toString('hex'),
  };
  if (j.ops[0]?.op !== 'publish') {
    const st = lstatOrNull(j.hostRoot);
    if (st === undefined || !st.isDirectory()) {
      throw fail(st?.isSymbolicLink() ? 'PATH_OUTSIDE_ROOTS' : 'INTERNAL', `tree root ${j.hostRoot} is not a directory`);
    }
  }
  const total = j.ops.length;
  for (let i = 0; i < total; i++) {
    const op = j.ops[i] as Op;
    if (stepper.active) stepper.step(`op ${i} ${op.op} ${'path' in op ? op.path : ''}`);
    try {
      runOp(ctx, op);
    } catch (err) {
      if (isSpokeError(err)) throw err;
      throw fail('INTERNAL', `converge of ${j.treeKey} failed at op ${i} (${op.op}${'path' in op ? ` ${JSON.stringify(op.path)}` : ''}): ${errText(err)}`);
    }
    if (opts.onOp !== undefined && (i % 256 === 255 || i === total - 1)) opts.onOp(i + 1, total);
  }
  // The manifest file (and the chain behind it) was written before the journal.
  const committed = opts.committed ?? readManifestFile(treeDir, j.rootHash);
  stepper.step('commit head');
  writeHead(treeDir, {
    v: 1,
    treeKey: j.treeKey,
    hostRoot: j.hostRoot,
    rootHash: j.rootHash,
    excludes: j.excludes,
    ...(j.conflicts?.length ? { conflicts: j.conflicts, wanted: j.wanted } : {}),
  });
  stepper.step('remove journal');
  fs.rmSync(join(treeDir, JOURNAL), { force: true });
  stepper.step('remove staging');
  removeAll(j.staging);
  fs.rmSync(join(treeDir, STAGING_INTENT), { force: true });
  pruneManifestFiles(treeDir, committed.chain);
  rememberCommitted(treeDir, committed);
}
