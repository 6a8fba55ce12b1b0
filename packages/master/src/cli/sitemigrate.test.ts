import { describe, expect, it } from 'vitest';
import { wire } from '@spoke/shared';
import { COMMANDS } from './cli.js';
import type { OperatorApi } from './client.js';
import { UsageError, type Ctx } from './command.js';

/** Runs `site migrate a.test` with `opts` against a fake master; returns what it asked the master. */
async function migrate(opts: Record<string, unknown>): Promise<Record<string, unknown>> {
  const calls: Record<string, unknown>[] = [];
  const t = wire.Task.fromPartial({ id: 7, kind: 'site.migrate', entity: 'site:a.test', state: wire.TaskState.TASK_STATE_QUEUED });
  const api = {
    call: async (_m: string, req: Record<string, unknown>) => {
      calls.push(req);
      return t;
    },
  } as unknown as OperatorApi;
  const ctx: Ctx = { io: { out: () => undefined, err: () => undefined }, json: false, conn: {}, api: () => api };
  await COMMANDS['site migrate']?.run(ctx, ['a.test'] as unknown as [string, string], { 'no-wait': true, platform: 'wp2', ...opts });
  return calls[0] as Record<string, unknown>;
}

describe('site migrate --redirect-old-for', () => {
  it('a duration goes to the master in seconds; 0 means none; absent leaves the default to the master', async () => {
    expect(await migrate({ domain: 'b.test', 'redirect-old-for': '7d' })).toMatchObject({ newDomain: 'b.test', redirectOldForS: 604_800 });
    expect(await migrate({ domain: 'b.test', 'redirect-old-for': '90m' })).toMatchObject({ redirectOldForS: 5400 });
    expect(await migrate({ domain: 'b.test', 'redirect-old-for': '0' })).toMatchObject({ redirectOldForS: 0 });
    expect('redirectOldForS' in (await migrate({ domain: 'b.test' }))).toBe(false);
  });

  it('refuses what is not a duration, and the flag without a new name', async () => {
    await expect(migrate({ domain: 'b.test', 'redirect-old-for': 'a month' })).rejects.toThrow(
      new UsageError('--redirect-old-for takes a duration such as 30d, 12h, 90m or 0, got "a month"'),
    );
    await expect(migrate({ 'redirect-old-for': '30d' })).rejects.toThrow(/--redirect-old-for goes with --domain NEW/);
  });
});
