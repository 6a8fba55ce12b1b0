import { describe, expect, it } from 'vitest';
import { backoffMs, failuresOf, nextWakeMs, planConverges, type PairState, type ReconcilePolicy } from './reconcile.js';
import type { TaskInfo } from '../types.js';

const POLICY: ReconcilePolicy = { baseBackoffMs: 1000, maxBackoffMs: 8000, maxConcurrent: 2 };
const NOW = 1_000_000;

function pair(over: Partial<PairState>): PairState {
  return { platform: 'd7', server: 'w1', desired: 'H', observed: 'H', online: true, busy: false, failures: 0, lastFailedMs: 0, lastError: '', ...over };
}

describe('planConverges', () => {
  const rows: [string, Partial<PairState>, 'start' | 'skip' | 'wait', string?][] = [
    ['in sync', {}, 'skip'],
    ['drifted', { observed: 'X' }, 'start', 'drift or stale copy'],
    ['tree missing (empty)', { observed: '' }, 'start', 'tree missing on the server'],
    ['never reported', { observed: null }, 'start', 'tree missing on the server'],
    ['never verified', { desired: '', observed: 'X' }, 'skip'],
    ['offline', { observed: 'X', online: false }, 'skip'],
    ['already converging', { observed: 'X', busy: true }, 'skip'],
    ['failed once, backoff not over', { observed: 'X', failures: 1, lastFailedMs: NOW - 500 }, 'wait'],
    [
      'failed once, backoff over',
      { observed: 'X', failures: 1, lastFailedMs: NOW - 1000, lastError: 'DISK_LOW: full' },
      'start',
      'retry 2 (drift or stale copy; last: DISK_LOW: full)',
    ],
    ['failed 3 times, 4 s backoff not over', { observed: 'X', failures: 3, lastFailedMs: NOW - 3999 }, 'wait'],
    ['failed 3 times, 4 s backoff over', { observed: 'X', failures: 3, lastFailedMs: NOW - 4000 }, 'start'],
    ['failed 50 times: capped at 8 s', { observed: 'X', failures: 50, lastFailedMs: NOW - 8000 }, 'start'],
    ['failures while in sync: nothing to do', { failures: 5, lastFailedMs: NOW }, 'skip'],
    ['report-only platform, this drift reported already: left to an operator', { observed: 'X', driftReported: true }, 'skip'],
    [
      'report-only platform, drift reported and its converge failed: no retry',
      { observed: 'X', driftReported: true, failures: 1, lastFailedMs: NOW - 5000 },
      'skip',
    ],
  ];
  for (const [name, over, want, why] of rows) {
    it(name, () => {
      const plan = planConverges([pair(over)], 0, NOW, POLICY);
      expect(plan.start.length === 1 ? 'start' : plan.waiting.length === 1 ? 'wait' : 'skip').toBe(want);
      if (why !== undefined) expect(plan.start[0]?.why).toBe(why);
      if (want === 'wait') expect(plan.waiting[0]?.nextMs).toBe((over.lastFailedMs ?? 0) + backoffMs(over.failures ?? 0, POLICY));
    });
  }

  it('caps converges at once, counting those already running; fresh pairs before retries; the rest deferred', () => {
    const pairs = [
      pair({ server: 'w3', observed: 'X', failures: 2, lastFailedMs: 0 }),
      pair({ server: 'w2', observed: 'X' }),
      pair({ server: 'w1', observed: '' }),
    ];
    expect(planConverges(pairs, 0, NOW, POLICY)).toMatchObject({ start: [{ server: 'w1' }, { server: 'w2' }], deferred: 1 });
    expect(planConverges(pairs, 1, NOW, POLICY)).toMatchObject({ start: [{ server: 'w1' }], deferred: 2 });
    expect(planConverges(pairs, 5, NOW, POLICY)).toMatchObject({ start: [], deferred: 3 });
  });

  it('backoff doubles from the base up to the ceiling', () => {
    expect([0, 1, 2, 3, 4, 5, 1000].map((n) => backoffMs(n, POLICY))).toEqual([0, 1000, 2000, 4000, 8000, 8000, 8000]);
  });

  it('wakes at the earliest retry when it comes before the interval', () => {
    const plan = planConverges(
      [pair({ server: 'a', observed: 'X', failures: 1, lastFailedMs: NOW - 200 }), pair({ server: 'b', observed: 'X', failures: 2, lastFailedMs: NOW })],
      0,
      NOW,
      POLICY,
    );
    expect(plan.waiting.map((w) => w.server)).toEqual(['a', 'b']);
    expect(nextWakeMs(plan, NOW, 30_000)).toBe(NOW + 800);
    expect(nextWakeMs(plan, NOW, 500)).toBe(NOW + 500);
    expect(nextWakeMs(planConverges([], 0, NOW, POLICY), NOW, 30_000)).toBe(NOW + 30_000);
  });
});

describe('failuresOf', () => {
  let id = 100;
  const t = (kind: string, state: TaskInfo['state'], server?: string, errorCode: string | null = null): TaskInfo => ({
    id: id--,
    kind,
    entity: 'platform:d7',
    state,
    params: { platform: 'd7', ...(server ? { server } : {}) },
    result: null,
    errorCode,
    errorMessage: errorCode ? 'it broke' : null,
    createdMs: 10 * id,
    startedMs: null,
    finishedMs: 10 * id + 5,
  });

  it('counts failed converges of the server since its last success, newest first', () => {
    const recent = [
      t('platform.converge', 'failed', 'w1', 'DISK_LOW'),
      t('platform.converge', 'failed', 'w2', 'DISK_LOW'),
      t('platform.converge', 'failed', 'w1', 'AGENT_OFFLINE'),
      t('platform.converge', 'succeeded', 'w1'),
      t('platform.converge', 'failed', 'w1', 'DISK_LOW'),
    ];
    expect(failuresOf(recent, 'w1')).toEqual({ failures: 2, lastFailedMs: recent[0]?.finishedMs, lastError: 'DISK_LOW: it broke' });
    expect(failuresOf(recent, 'w2').failures).toBe(1);
    expect(failuresOf(recent, 'w3').failures).toBe(0);
  });

  it('a succeeded verify ends the count; an interrupted converge is not the server failing', () => {
    expect(
      failuresOf([t('platform.converge', 'failed', 'w1', 'X'), t('platform.verify', 'succeeded'), t('platform.converge', 'failed', 'w1', 'X')], 'w1').failures,
    ).toBe(1);
    expect(failuresOf([t('platform.converge', 'failed', 'w1', 'TASK_INTERRUPTED')], 'w1').failures).toBe(0);
  });
});
