import { describe, expect, it } from 'vitest';
import { expectCode } from '@spoke/shared/testkit';
import {
  cronOffsetMs,
  cronSkipReason,
  formatCronInterval,
  latestSlot,
  nextCronRun,
  nextSlotAfter,
  parseCronInterval,
  planCron,
  type CronSite,
} from './cron.js';

const H = 3_600_000;
const T0 = 1_700_000_000_000 - (1_700_000_000_000 % H); // an hour boundary

function site(domain: string, over: Partial<CronSite> = {}): CronSite {
  return { domain, status: 'installed', kind: 'drupal7', intervalS: 3600, installedMs: T0 - 10 * H, createdMs: T0 - 11 * H, ...over };
}

describe('cron intervals', () => {
  it.each([
    ['15m', 900],
    ['1h', 3600],
    ['2h', 7200],
    ['1d', 86_400],
    ['90m', 5400],
    [' 1H ', 3600],
    ['off', 0],
    ['OFF', 0],
    ['5m', 300],
    ['7d', 604_800],
  ])('%s is %d seconds', (text, s) => {
    expect(parseCronInterval(text)).toBe(s);
  });

  it.each(['', '1', '1s', '4m', '8d', '0h', '-1h', '1.5h', '1w', 'hourly', '1h30m', 'on'])('refuses %j with INVALID_ARGUMENT on one line', (text) => {
    const e = expectCode(() => parseCronInterval(text));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/^cron interval /);
    expect(e.message).not.toContain('\n');
  });

  it.each([
    [3600, '1h'],
    [900, '15m'],
    [86_400, '1d'],
    [5400, '90m'],
    [0, 'off'],
  ])('formats %d as %s', (s, text) => {
    expect(formatCronInterval(s)).toBe(text);
  });
});

describe('per-site offsets', () => {
  it('are deterministic and inside the interval', () => {
    expect(cronOffsetMs('a.test', H)).toBe(cronOffsetMs('a.test', H));
    for (const d of ['a.test', 'b.test', 'example.com']) {
      const o = cronOffsetMs(d, H);
      expect(o).toBeGreaterThanOrEqual(0);
      expect(o).toBeLessThan(H);
    }
  });

  it('spread 10,000 hourly sites over the hour: no minute holds more than twice its share', () => {
    const perMinute = new Array<number>(60).fill(0);
    for (let i = 0; i < 10_000; i++) {
      const m = Math.floor(cronOffsetMs(`site${i}.example.com`, H) / 60_000);
      perMinute[m] = (perMinute[m] ?? 0) + 1;
    }
    expect(Math.max(...perMinute)).toBeLessThan((10_000 / 60) * 2);
    expect(Math.min(...perMinute)).toBeGreaterThan(10_000 / 60 / 2);
  });

  it('slots are offset + k × interval', () => {
    const off = cronOffsetMs('a.test', H);
    expect(latestSlot('a.test', 3600, T0 + off)).toBe(T0 + off);
    expect(latestSlot('a.test', 3600, T0 + off - 1)).toBe(T0 + off - H);
    expect(nextSlotAfter('a.test', 3600, T0 + off)).toBe(T0 + off + H);
  });
});

describe('planCron', () => {
  const a = site('a.test');
  const off = cronOffsetMs('a.test', H);

  it.each([
    // [what, site, lastRun, now, due]
    ['its slot came and it has not run since', a, T0 + off - H, T0 + off, true],
    ['one ms before its slot', a, T0 + off - H, T0 + off - 1, false],
    ['it ran at this slot already', a, T0 + off, T0 + off + 30_000, false],
    ['a manual run after the slot covers it', a, T0 + off + 5_000, T0 + off + 60_000, false],
    ['it missed three slots (master down): due once', a, T0 + off - 3 * H, T0 + off + 10, true],
    ['never ran, installed before the last slot', a, undefined, T0 + off, true],
    ['never ran, installed after the last slot', site('a.test', { installedMs: T0 + off + 1 }), undefined, T0 + off + 2, false],
    ['never ran, not installed time: created time counts', site('a.test', { installedMs: null, createdMs: T0 + off + 1 }), undefined, T0 + off + 2, false],
    [
      'installed again after its last run and after the slot: waits for the next slot',
      site('a.test', { installedMs: T0 + off + 1 }),
      T0 - 5 * H,
      T0 + off + 2,
      false,
    ],
    ['disabled', site('a.test', { status: 'disabled' }), T0 - 5 * H, T0 + off, false],
    ['installing', site('a.test', { status: 'installing' }), undefined, T0 + off, false],
    ['failed status', site('a.test', { status: 'failed' }), undefined, T0 + off, false],
    ['cron off', site('a.test', { intervalS: 0 }), undefined, T0 + off, false],
    ['a generic platform', site('a.test', { kind: 'generic' }), undefined, T0 + off, false],
    ['an unverified platform', site('a.test', { kind: '' }), undefined, T0 + off, false],
    ['WordPress', site('a.test', { kind: 'wordpress' }), undefined, T0 + off, true],
    ['MediaWiki', site('a.test', { kind: 'mediawiki' }), undefined, T0 + off, true],
    ['Drupal 8+', site('a.test', { kind: 'drupal8' }), undefined, T0 + off, true],
  ] as const)('%s', (_what, s, last, now, due) => {
    const lastRuns = new Map<string, number>(last === undefined ? [] : [[s.domain, last]]);
    expect(planCron([s], now, new Set(), lastRuns).due).toEqual(due ? [s.domain] : []);
  });

  it('a site whose cron or task is running is not started again, and is named as busy', () => {
    const p = planCron([a], T0 + off, new Set(['a.test']), new Map());
    expect(p).toEqual({ due: [], busy: ['a.test'] });
  });

  it('orders the due sites by how long they have waited (oldest slot first)', () => {
    const names = ['b.test', 'a.test', 'c.test', 'e.test'];
    const now = T0 + H; // every site's slot of the hour before is at or before now
    const plan = planCron(
      names.map((d) => site(d)),
      now,
      new Set(),
      new Map(),
    );
    const byOffset = [...names].sort((x, y) => cronOffsetMs(x, H) - cronOffsetMs(y, H));
    expect(plan.due).toEqual(byOffset);
    expect(plan.due).not.toEqual(names);
  });

  it('over one simulated day, an hourly site runs 24 times and a 15-minute site 96 times, each at its own offset', () => {
    const sites = [site('hourly.test', { installedMs: T0 - 1 }), site('quarter.test', { intervalS: 900, installedMs: T0 - 1 })];
    const last = new Map<string, number>();
    const runs: Record<string, number[]> = { 'hourly.test': [], 'quarter.test': [] };
    for (let now = T0; now < T0 + 24 * H; now += 10_000) {
      for (const d of planCron(sites, now, new Set(), last).due) {
        last.set(d, now);
        runs[d]?.push(now);
      }
    }
    expect(runs['hourly.test']).toHaveLength(24);
    expect(runs['quarter.test']).toHaveLength(96);
    // each run within one tick (10 s) after the site's slot
    for (const t of runs['hourly.test'] ?? []) expect(t - latestSlot('hourly.test', 3600, t)).toBeLessThan(10_000);
  });
});

describe('what site show says', () => {
  it('skip reasons', () => {
    expect(cronSkipReason(site('a.test'))).toBe('');
    expect(cronSkipReason(site('a.test', { status: 'disabled' }))).toBe('the site is disabled');
    expect(cronSkipReason(site('a.test', { status: 'installing' }))).toBe('the site is installing');
    expect(cronSkipReason(site('a.test', { intervalS: 0 }))).toBe('cron is off');
    expect(cronSkipReason(site('a.test', { kind: 'generic' }))).toBe('Spoke runs no cron for generic sites');
  });

  it('the next run: the coming slot, now when due, 0 when it does not run', () => {
    const off = cronOffsetMs('a.test', H);
    expect(nextCronRun(site('a.test'), T0 + off, T0 + off + 1)).toBe(T0 + off + H);
    expect(nextCronRun(site('a.test'), T0 + off - H, T0 + off + 1)).toBe(T0 + off);
    expect(nextCronRun(site('a.test', { status: 'disabled' }), undefined, T0)).toBe(0);
  });
});
