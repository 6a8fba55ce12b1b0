/**
 * Heap sizing for the long-running daemons (master, agent).
 *
 * Both hold a live set that ranges from a few MB to ~100 MB (a manifest of every tree: ~70 MB on
 * the master for a 200,000-file tree) and churn through far more short-lived allocation while
 * they walk, hash and stream. V8's default lets the old generation grow to several times the live
 * set before it collects: the master's RSS reached 450–495 MB on 20,000-file trees and ~300 MB on
 * the 200,000-file tree while a full GC left ~70 MB live.
 *
 * A fixed percentage (`--heap-growing-percent=25`, the earlier bound) cost CPU on small live sets:
 * 25 % of 25 MB lets the old generation grow by V8's minimum step (8 MB) between full collections,
 * so an initial sync of 20,000 files spent ~1 s of CPU (master and agent together) more than at
 * V8's default. So the bound is a headroom in MB instead: after each full collection the percent
 * for the next one is set from what survived, so the heap may grow by about `headroomMb` over its
 * live set (never less than 25 %, never more than 400 %). V8 reads the flag at every collection.
 */
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { fail } from './errors.js';

/** The lowest percent the adaptive bound sets (a large live set), and the fixed bound of before. */
export const HEAP_GROWING_PERCENT = 25;
const MAX_PERCENT = 400;
/**
 * The master's headroom: its peak RSS on the 200,000-file tree is the bound that matters (target
 * ≤ 300 MB, ~100 MB live there, so the 25 % floor applies); on 20,000 files it is twice V8's
 * minimum step. Measured with 32 MB: 200k phase 310 MB; with 16 MB: 285 MB (pnpm bench:sync).
 */
export const MASTER_HEAP_HEADROOM_MB = 16;
/** The agent's: its time is on the critical path of every converge, and nothing else bounds it. */
export const AGENT_HEAP_HEADROOM_MB = 64;

/**
 * Node flags every launcher of the master passes (bin/spoke-master, bin/spoke for `spoke up`,
 * `pnpm start`, the systemd unit and its drop-in from install-master.sh, the benchmarks; a test
 * keeps them in step). V8 sizes the young generation at start only: a flag set later is ignored.
 * A 4 MB semi-space (V8's default grows to 16 MB, so 32 MB of young generation) took ~30 MB off
 * the master's RSS: 20,000-file cases 231–240 → 200–205 MB, 200,000-file phase 276–299 →
 * 256–261 MB, with initial-sync CPU unchanged within the noise in paired runs (pnpm bench:sync).
 */
export const MASTER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

/** The percent that gives `headroomMb` over a live set of `liveBytes`, within [25, 400]. */
export function growingPercentFor(liveBytes: number, headroomMb: number): number {
  const live = Math.max(liveBytes, 1024 * 1024);
  const p = Math.round(((headroomMb * 1024 * 1024) / live) * 100);
  return Math.min(MAX_PERCENT, Math.max(HEAP_GROWING_PERCENT, p));
}

/**
 * Call once, first thing in a daemon's main. SPOKE_HEAP_GROWING_PERCENT fixes the percent
 * instead (0 leaves V8's own heuristics). Returns a function that stops the adaptive bound.
 * @param headroomMb what the old generation may grow over its live set between full collections
 */
export function boundHeapGrowth(
  env: Record<string, string | undefined>,
  headroomMb: number,
  /** Told each percent the adaptive bound sets. */
  onSet?: (percent: number) => void,
  /** Sets a V8 flag (tests pass a recorder that also sets it). */
  setFlags: (flag: string) => void = setFlagsFromString,
): () => void {
  const raw = env.SPOKE_HEAP_GROWING_PERCENT;
  if (raw !== undefined && raw !== '') {
    const percent = Number(raw);
    if (!Number.isInteger(percent) || percent < 0)
      throw fail('CONFIG_INVALID', `SPOKE_HEAP_GROWING_PERCENT must be a whole number ≥ 0, not ${JSON.stringify(raw)}`);
    if (percent > 0) setFlags(`--heap-growing-percent=${percent}`);
    return () => undefined;
  }
  let current = 0;
  const adjust = () => {
    const p = growingPercentFor(getHeapStatistics().used_heap_size, headroomMb);
    if (p === current) return;
    current = p;
    setFlags(`--heap-growing-percent=${p}`);
    onSet?.(p);
  };
  adjust();
  // Told after each collection (asynchronously): the percent is set for the next full one.
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) return adjust();
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  return () => obs.disconnect();
}
