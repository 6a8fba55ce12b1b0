/**
 * Power loss, found at start-up instead of paid for on every converge.
 *
 * A converge writes its manifest file, journal and head without fsync: against the death of the
 * agent process (kill -9, OOM) that is enough, since the page cache survives it and the journal
 * makes every converge all-or-nothing (see journal.ts). What the page cache does not survive is
 * the machine going down. So the agent keeps a run marker, `<stateDir>/run.json`, holding the
 * kernel's boot id:
 * - written (durably) when the agent starts;
 * - removed on a clean stop, after a sync(1) has put everything the agent wrote on disk.
 * An agent that finds the marker of another boot knows the machine went down while it ran (power
 * loss, panic, reset), and that any file it wrote in the last seconds before may be torn. It then
 * trusts none of its own state (`distrustTrees`): stat caches are dropped, so every file is
 * hashed again; journals are discarded with their staging dirs, since staged blobs may be torn
 * too; a head or manifest file that cannot be read is removed; every other head is marked as
 * drifted, so its next converge re-walks the tree instead of trusting it. The trees are copies
 * of the master's: whatever the crash left is repaired by the converge the master starts on the
 * agent's hello. User data (`sites/*\/files`, …) is excluded from every tree and never touched.
 *
 * A marker of the same boot only means the process died: nothing is distrusted.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '@spoke/shared';
import { readIfExists, writeAtomic } from './fsutil.js';
import { forgetMemos, HEAD, JOURNAL, readHead, readManifestFile, removeStagingNamedIn, STAT, sweepStagingIntent, writeHead } from './state.js';

const RUN = 'run.json';

/** The kernel's boot id (Linux), or undefined where there is none. */
export function linuxBootId(): string | undefined {
  try {
    const id = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return id === '' ? undefined : id;
  } catch {
    return undefined;
  }
}

/** Flushes every file system (sync(1)); false when it failed or took over a minute. */
export function syncAll(): boolean {
  const r = spawnSync('sync', [], { timeout: 60_000, stdio: 'ignore' });
  return r.status === 0;
}

/**
 * Starts a run: reads the marker a previous run left, then writes this run's (durably).
 * @returns unclean: the previous run did not stop cleanly and the machine has booted since (or
 *   the boot cannot be told: no boot id), so files it wrote may be torn
 */
export function beginRun(stateDir: string, bootId: string | undefined): { unclean: boolean; previousBoot?: string } {
  fs.mkdirSync(stateDir, { recursive: true });
  const text = readIfExists(join(stateDir, RUN));
  let unclean = false;
  let previousBoot: string | undefined;
  if (text !== undefined) {
    try {
      const doc = JSON.parse(text) as { bootId?: unknown };
      previousBoot = typeof doc.bootId === 'string' ? doc.bootId : undefined;
    } catch {
      // a torn marker was being written when the machine went down
    }
    unclean = bootId === undefined || previousBoot !== bootId;
  }
  writeAtomic(join(stateDir, RUN), JSON.stringify({ v: 1, bootId: bootId ?? null, pid: process.pid, since: new Date().toISOString() }), true);
  return previousBoot === undefined ? { unclean } : { unclean, previousBoot };
}

/**
 * Ends a run cleanly: flushes what the agent wrote, then removes the marker. When the flush
 * fails the marker stays, and the next start distrusts its state (safe, costs a re-hash).
 */
export function endRun(stateDir: string, flush: () => boolean): boolean {
  if (!flush()) return false;
  fs.rmSync(join(stateDir, RUN), { force: true });
  return true;
}

/** What distrustTrees did, tree dir by tree dir (for the log). */
export interface Distrusted {
  trees: number;
  journalsDiscarded: number;
  headsRemoved: number;
}

/**
 * After an unclean reboot: drops every tree's stat cache, discards journals and staging dirs,
 * removes heads whose head or manifest file is torn, and marks the others as drifted. Never
 * touches a tree itself. Call before anything reads the tree state (replay, observe).
 */
export function distrustTrees(stateDir: string, log?: Logger): Distrusted {
  const out: Distrusted = { trees: 0, journalsDiscarded: 0, headsRemoved: 0 };
  const trees = join(stateDir, 'trees');
  let names: string[];
  try {
    names = fs.readdirSync(trees);
  } catch {
    return out;
  }
  for (const name of names) {
    const treeDir = join(trees, name);
    out.trees++;
    forgetMemos(treeDir);
    fs.rmSync(join(treeDir, STAT), { force: true });
    const journal = readIfExists(join(treeDir, JOURNAL));
    if (journal !== undefined) {
      removeStagingNamedIn(journal); // torn: its staging dir is named by the intent file too
      fs.rmSync(join(treeDir, JOURNAL), { force: true });
      out.journalsDiscarded++;
    }
    sweepStagingIntent(treeDir);
    let head;
    try {
      head = readHead(treeDir);
      if (head !== undefined) readManifestFile(treeDir, head.rootHash);
    } catch (e) {
      log?.warn({ treeDir, err: (e as Error).message }, 'tree state torn by the crash: forgotten, the tree is re-walked');
      fs.rmSync(join(treeDir, HEAD), { force: true });
      for (const f of fs.readdirSync(treeDir)) if (f.startsWith('manifest-')) fs.rmSync(join(treeDir, f), { force: true });
      out.headsRemoved++;
      continue;
    }
    if (head !== undefined && head.drift !== true) writeHead(treeDir, { ...head, drift: true });
  }
  return out;
}
