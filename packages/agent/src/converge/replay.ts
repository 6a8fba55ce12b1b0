/**
 * Journals of converges that did not finish: replayed at agent start-up (replayJournals), or
 * abandoned when one can never complete, so the next converge works from what is on disk
 * (abandonJournal).
 */
import * as fs from 'node:fs';
import { basename, join } from 'node:path';
import { fail, isSpokeError, STAGING_PREFIX } from '@spoke/shared';
import { isErrno, removeAll } from './fsutil.js';
import { readJournal, runJournal } from './journal.js';
import { JOURNAL, readHead, sweepStagingIntent, withTreeLock, writeHead } from './state.js';

/**
 * Finishes or discards every pending transaction under stateDir: a journal is run to the end
 * (its tree becomes the new one), a staging dir without a journal is removed (its tree stayed the
 * old one). Call once at agent start-up, before connecting. Returns the tree keys it finished.
 * @throws SpokeError the first journal that cannot be completed (after trying all others); that
 *   journal and its staging dir are left in place
 */
export async function replayJournals(stateDir: string): Promise<string[]> {
  const trees = join(stateDir, 'trees');
  let names: string[];
  try {
    names = fs.readdirSync(trees).sort();
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
  const finished: string[] = [];
  const errors: unknown[] = [];
  for (const name of names) {
    const treeDir = join(trees, name);
    await withTreeLock(treeDir, async () => {
      try {
        const j = readJournal(treeDir);
        if (j === undefined) {
          sweepStagingIntent(treeDir);
          return;
        }
        runJournal(treeDir, j);
        finished.push(j.treeKey);
      } catch (err) {
        errors.push(err);
      }
    });
  }
  const first = errors[0];
  if (first !== undefined) {
    if (errors.length > 1 && isSpokeError(first)) {
      throw fail(first.code, `${first.message} (and ${errors.length - 1} more trees could not be replayed)`, first.details);
    }
    throw first;
  }
  return finished;
}

/**
 * Drops a journal that cannot be completed (and its staging dir) and marks the tree drifted, so
 * the next plan walks what is really there: the ops that did run leave a tree between the old and
 * the new version, which the walk sees as it is.
 */
export function abandonJournal(treeDir: string): void {
  let staging: string | undefined;
  try {
    staging = readJournal(treeDir)?.staging;
  } catch {
    // torn: its staging dir is swept with the intent record below
  }
  if (staging !== undefined && basename(staging).startsWith(STAGING_PREFIX)) removeAll(staging);
  fs.rmSync(join(treeDir, JOURNAL), { force: true });
  sweepStagingIntent(treeDir);
  const head = readHead(treeDir);
  if (head !== undefined && head.drift !== true) writeHead(treeDir, { ...head, drift: true });
}
