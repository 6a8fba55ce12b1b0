/**
 * What one build carries from step to step (build.ts drives it, buildfetch.ts fetches into it):
 * the task's log and cancellation, the staging tree, the budget, what has been placed; and the
 * named step every piece of work runs as, so that a failure is one line naming the platform and
 * the step.
 */
import { fail, isSpokeError, type SpokeError } from '@spoke/shared';
import type { BuildBudget } from './buildfs.js';
import { oneLine } from './buildtools.js';

/** What a build writes to (the task log) and listens to (cancellation). */
export interface BuildContext {
  log(message: string, level?: 'info' | 'warn' | 'error'): void;
  signal: AbortSignal;
}

/** One build in progress. */
export interface BuildState {
  platform: string;
  /** The tree being built (becomes the platform). */
  root: string;
  /** Scratch space beside it, removed with the staging dir. */
  work: string;
  ctx: BuildContext;
  budget: BuildBudget;
  seq: number;
  /** Directories local sources may come from in this build (the policy's, and the tree being built). */
  sources: string[];
  /** Top-level project and library names (`project:x`, `library:x`): nested makefiles never redefine them. */
  claimed: Set<string>;
  made: Set<string>;
  placed: { label: string; rel: string }[];
  projects: number;
  libraries: number;
  patches: number;
}

/** A failure of one build step: keeps a specific code, names the platform and the step. */
export function stepError(platform: string, step: string, e: unknown): SpokeError {
  const code = isSpokeError(e) ? e.code : 'PLATFORM_BUILD_FAILED';
  const why = isSpokeError(e) ? e.message : e instanceof Error ? e.message : String(e);
  return fail(code, oneLine(`platform ${platform}: ${step}: ${why}`), { platform, step });
}

/** Runs one named step; a failure becomes a one-line error naming it (cancellation passes through). */
export async function runStep<T>(platform: string, ctx: BuildContext, step: string, fn: () => Promise<T>): Promise<T> {
  if (ctx.signal.aborted) throw ctx.signal.reason;
  try {
    return await fn();
  } catch (e) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const err = stepError(platform, step, e);
    ctx.log(`${platform}: step failed: ${step}`, 'error');
    throw err;
  }
}
