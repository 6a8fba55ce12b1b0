import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { boundHeapGrowth, growingPercentFor } from './heap.js';

const MB = 1024 * 1024;

describe('boundHeapGrowth', () => {
  it('refuses a percent that is not a whole number ≥ 0, naming the variable', () => {
    for (const bad of ['-5', '2.5', 'lots']) {
      expect(() => boundHeapGrowth({ SPOKE_HEAP_GROWING_PERCENT: bad }, 32)).toThrow(/SPOKE_HEAP_GROWING_PERCENT must be a whole number/);
    }
  });

  it('accepts the adaptive default, an override and 0 (V8 decides), and stops when told', () => {
    for (const ok of [undefined, '', '40', '0']) {
      const stop = boundHeapGrowth({ SPOKE_HEAP_GROWING_PERCENT: ok }, 32);
      stop();
    }
  });
});

describe('the adaptive bound', () => {
  it('sets the percent at start and again after a full collection, from what survived', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const set: number[] = [];
    const stop = boundHeapGrowth({}, 64, (p) => set.push(p));
    let live: string[][] = [];
    try {
      expect(set).toHaveLength(1);
      const first = set[0] as number;
      // ~100 MB more live: after a full collection the percent for the next one is lower
      for (let i = 0; i < 200; i++) live.push(Array.from({ length: 10_000 }, (_, k) => `${i}-${k}-live`));
      gc();
      for (let i = 0; i < 100 && set.length === 1; i++) await new Promise((r) => setTimeout(r, 10));
      expect(set.length).toBeGreaterThan(1);
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
