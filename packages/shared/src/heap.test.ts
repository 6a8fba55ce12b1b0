import { describe, expect, it } from 'vitest';
import { boundHeapGrowth } from './heap.js';

describe('boundHeapGrowth', () => {
  it('refuses a percent that is not a whole number ≥ 0, naming the variable', () => {
    for (const bad of ['-5', '2.5', 'lots']) {
      expect(() => boundHeapGrowth({ SPOKE_HEAP_GROWING_PERCENT: bad })).toThrow(/SPOKE_HEAP_GROWING_PERCENT must be a whole number/);
    }
  });

  it('accepts the default, an override and 0 (V8 decides)', () => {
    for (const ok of [undefined, '', '40', '0']) expect(() => boundHeapGrowth({ SPOKE_HEAP_GROWING_PERCENT: ok })).not.toThrow();
  });
});
