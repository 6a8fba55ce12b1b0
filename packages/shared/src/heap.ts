/**
 * Heap sizing for the long-running daemons (master, agent).
 *
 * Both hold a modest live set (a manifest of every tree: ~70 MB on the master for a 200,000-file
 * tree) and churn through far more short-lived allocation while they walk, hash and stream. V8's
 * default lets the old generation grow to up to several times the live set before it collects,
 * so the master's RSS peaked at ~300 MB on that tree while a full GC left ~70 MB live. A fixed
 * growth of 25 % over the live set after each collection bounds that: measured on the same tree
 * (pnpm bench:sync --only 200k), master peak 292–303 MB → 231 MB. The extra collections cost
 * time on a first sync: 20,000 files took 3.8 s at V8's default against 4.6–5.9 s at 25–50 %
 * (`--fresh-fs`, medians of 5); see docs/architecture.md.
 */
import { setFlagsFromString } from 'node:v8';
import { fail } from './errors.js';

/** Percent the old generation may grow over what survived the last full collection. */
export const HEAP_GROWING_PERCENT = 25;

/**
 * Call once, first thing in a daemon's main: V8 reads the flag at every collection.
 * SPOKE_HEAP_GROWING_PERCENT overrides the percent; 0 leaves V8's own heuristics.
 */
export function boundHeapGrowth(env: Record<string, string | undefined>): void {
  const raw = env.SPOKE_HEAP_GROWING_PERCENT;
  const percent = raw === undefined || raw === '' ? HEAP_GROWING_PERCENT : Number(raw);
  if (!Number.isInteger(percent) || percent < 0) throw fail('CONFIG_INVALID', `SPOKE_HEAP_GROWING_PERCENT must be a whole number ≥ 0, not ${JSON.stringify(raw)}`);
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
