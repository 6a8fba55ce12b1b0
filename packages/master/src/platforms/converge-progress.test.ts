import { describe, expect, it } from 'vitest';
import { ProgressMeter } from './convergelog.js';

const MiB = 1024 * 1024;

describe('ProgressMeter', () => {
  it('shows files, bytes, rate and ETA, the rate over what moved since bytes started moving', () => {
    const m = new ProgressMeter('web-1');
    // the master's scan and the agent's checks took 5 s before the first byte: they do not count
    expect(m.line({ message: 'scan 0/0 files', done: 0, total: 0 }, 0)).toBe('web-1: scan 0/0 files');
    expect(m.line({ message: 'fetch 0/4000 files', done: MiB, total: 100 * MiB }, 5_000)).toBe('web-1: fetch 0/4000 files, 1.0 MiB/100.0 MiB');
    // 20 MiB more in the next second: 20 MiB/s, 79 MiB left: 4 s
    expect(m.line({ message: 'fetch 800/4000 files', done: 21 * MiB, total: 100 * MiB }, 6_000)).toBe(
      'web-1: fetch 800/4000 files, 21.0 MiB/100.0 MiB, 20.0 MiB/s ETA 4s',
    );
  });

  it('logs at most one line a second', () => {
    const m = new ProgressMeter('w');
    expect(m.line({ message: 'fetch 1/9 files', done: 10, total: 90 }, 1_000)).toBeDefined();
    expect(m.line({ message: 'fetch 2/9 files', done: 20, total: 90 }, 1_500)).toBeUndefined();
    expect(m.line({ message: 'fetch 3/9 files', done: 30, total: 90 }, 2_000)).toMatch(/^w: fetch 3\/9 files, 30 B\/90 B, 20 B\/s ETA 3s$/);
  });

  it('starts the rate again when the phase changes (reuse, then fetch)', () => {
    const m = new ProgressMeter('w');
    m.line({ message: 'reuse 1024/3000 files', done: 10 * MiB, total: 30 * MiB }, 0);
    expect(m.line({ message: 'reuse 2048/3000 files', done: 20 * MiB, total: 30 * MiB }, 1_000)).toMatch(/10\.0 MiB\/s ETA 1s$/);
    // fetch counts its bytes from 0: no negative rate, no rate until it has moved for a while
    expect(m.line({ message: 'fetch 10/900 files', done: MiB, total: 9 * MiB }, 2_000)).toBe('w: fetch 10/900 files, 1.0 MiB/9.0 MiB');
    expect(m.line({ message: 'fetch 500/900 files', done: 5 * MiB, total: 9 * MiB }, 3_000)).toMatch(/4\.0 MiB\/s ETA 1s$/);
  });

  it('a phase with nothing to move shows its message only', () => {
    const m = new ProgressMeter('w');
    expect(m.line({ message: 'apply 10/20 files', done: 0, total: 0 }, 0)).toBe('w: apply 10/20 files');
  });
});
