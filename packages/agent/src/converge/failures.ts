/**
 * The errors a converge stops with, worded for an operator: DISK_LOW for a full disk anywhere in
 * it, DRIFT_FOUND for a tree whose drift is reported instead of repaired, TASK_CANCELLED between
 * steps.
 */
import { fail } from '@spoke/shared';
import { errText, isDiskFull, isErrno } from './fsutil.js';
import type { Drift } from './observe.js';

/**
 * A full disk (or quota) anywhere in a converge, as DISK_LOW with what to do, instead of an
 * INTERNAL error quoting ENOSPC (the steps that wrap file system errors let these through). The
 * tree is as it was (the staging dir is gone; verified blobs are kept for the retry), or a
 * journal finishes it at the next converge.
 */
export function diskFull(e: unknown, root: string): Error | undefined {
  if (!isDiskFull(e)) return undefined;
  const what = isErrno(e, 'EDQUOT') ? 'disk quota exceeded' : 'file system full';
  return fail(
    'DISK_LOW',
    `no space left for ${root} (${what}); the tree keeps its last complete version — free space on this server and run a verify (${errText(e)}: ${(e as Error).message})`,
  );
}

/** DRIFT_FOUND for a tree whose drift is reported, not repaired. */
export function driftFound(tree: string, d: Drift): Error {
  const sample = [...d.changed.map((x) => `~${x}`), ...d.added.map((x) => `+${x}`), ...d.removed.map((x) => `-${x}`)];
  const n = sample.length;
  return fail(
    'DRIFT_FOUND',
    `${tree} differs from what was last converged in ${n} path(s): ${sample.slice(0, 10).join(' ')}${n > 10 ? ' …' : ''}; nothing was changed (drift is reported, not repaired)`,
    { tree, drift: d },
  );
}

/** @throws SpokeError TASK_CANCELLED once `signal` is aborted. */
export function cancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw fail('TASK_CANCELLED', 'converge cancelled');
}
