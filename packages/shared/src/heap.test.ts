import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { beforeEach, describe, expect, it } from 'vitest';
import { boundHeapGrowth, growingPercentFor } from './heap.js';

const MB = 1024 * 1024;

/** Every V8 flag heap.ts sets, in order (the real setFlagsFromString still runs). */
const flags: string[] = [];
const setFlags = (f: string) => {
  flags.push(f);
  setFlagsFromString(f);
};
const growing = () => flags.filter((f) => f.startsWith('--heap-growing-percent='));
beforeEach(() => {
  flags.length = 0;
});

/** A full collection, and a promise that settles once observers of it have been told. */
function majorGc(): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const seen = new Promise<void>((resolve) => {
    const obs = new PerformanceObserver((list) => {
      if (list.getEntries().some((e) => (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) {
        obs.disconnect();
        // the other observers of the same entry are told in this same turn
        setImmediate(resolve);
      }
    });
    obs.observe({ entryTypes: ['gc'] });
  });
  gc();
  return seen;
}

describe('boundHeapGrowth', () => {
  it('refuses a percent that is not a whole number ≥ 0, naming the variable', () => {
    for (const bad of ['-5', '2.5', 'lots']) {
      expect(() => boundHeapGrowth({ SPOKE_HEAP_GROWING_PERCENT: bad }, 32, undefined, setFlags)).toThrow(/SPOKE_HEAP_GROWING_PERCENT must be a whole number/);
    }
  });

  it('an override is set once and never adjusted; 0 leaves V8 its own heuristics', async () => {
    const told: number[] = [];
    const stop = boundHeapGrowth({ SPOKE_HEAP_GROWING_PERCENT: '40' }, 32, (p) => told.push(p), setFlags);
    expect(growing()).toEqual(['--heap-growing-percent=40']);
    await majorGc();
    expect(growing()).toEqual(['--heap-growing-percent=40']);
    expect(told).toEqual([]);
    stop();
    boundHeapGrowth({ SPOKE_HEAP_GROWING_PERCENT: '0' }, 32, (p) => told.push(p), setFlags)();
    expect(growing()).toEqual(['--heap-growing-percent=40']);
    expect(told).toEqual([]);
  });

  it('unset or empty: the adaptive bound sets a percent at once; stopped, a full collection changes nothing', async () => {
    for (const unset of [undefined, '']) {
      flags.length = 0;
      const told: number[] = [];
      const stop = boundHeapGrowth({ SPOKE_HEAP_GROWING_PERCENT: unset }, 64, (p) => told.push(p), setFlags);
      expect(told).toHaveLength(1);
      expect(growing()).toEqual([`--heap-growing-percent=${told[0]}`]);
      expect(told[0]).toBeGreaterThanOrEqual(25);
      expect(told[0]).toBeLessThanOrEqual(400);
      stop();
      // ~100 MB more live: a bound still running would set a lower percent after this collection
      const live = Array.from({ length: 200 }, (_, i) => Array.from({ length: 10_000 }, (_, k) => `${i}-${k}-live`));
      await majorGc();
      expect(live).toHaveLength(200);
      expect(told).toHaveLength(1);
      expect(growing()).toHaveLength(1);
    }
  });
});

describe('the adaptive bound', () => {
  it('sets the percent at start and again after a full collection, from what survived', async () => {
    await majorGc();
    const set: number[] = [];
    const stop = boundHeapGrowth({}, 64, (p) => set.push(p), setFlags);
    let live: string[][] = [];
    try {
      expect(set).toHaveLength(1);
      const first = set[0] as number;
      // ~100 MB more live: after a full collection the percent for the next one is lower
      for (let i = 0; i < 200; i++) live.push(Array.from({ length: 10_000 }, (_, k) => `${i}-${k}-live`));
      await majorGc();
      expect(set.length).toBeGreaterThan(1);
      expect(growing().at(-1)).toBe(`--heap-growing-percent=${set.at(-1)}`);
      const after = set[set.length - 1] as number;
      expect(after).toBeLessThan(first);
      expect(after).toBeLessThanOrEqual(70); // 64 MB over ≥ 100 MB live
    } finally {
      live = [];
      stop();
    }
    expect(live).toHaveLength(0);
  });
});

describe('growingPercentFor', () => {
  it('gives about the headroom over the live set', () => {
    expect(growingPercentFor(32 * MB, 32)).toBe(100);
    expect(growingPercentFor(64 * MB, 32)).toBe(50);
    expect(growingPercentFor(25 * MB, 64)).toBe(256);
  });

  it('never less than 25 % (a large live set) nor more than 400 % (a tiny one)', () => {
    expect(growingPercentFor(200 * MB, 32)).toBe(25);
    expect(growingPercentFor(4 * MB, 64)).toBe(400);
    expect(growingPercentFor(0, 32)).toBe(400);
  });
});
