import { describe, expect, it } from 'vitest';
import { wire } from '@spoke/shared';
import { COMMANDS } from './cli.js';
import type { OperatorApi } from './client.js';
import type { Ctx } from './command.js';

/** Options that make each task command's own checks pass (the master is faked). */
const OPTS: Record<string, Record<string, unknown>> = {
  'platform add': { path: '/var/www/wp', server: 'web-1' },
  'site install': { platform: 'wp' },
  'site import': { platform: 'wp', from: '/tmp/x' },
  'site clone': { platform: 'wp' },
  'site migrate': { platform: 'wp2' },
  'site restore': { backup: '3' },
};
/** Positionals, where the command wants other than one domain. */
const POS: Record<string, string[]> = {
  'site alias': ['add', 'a.test', 'b.test'],
  'platform diff': ['wp', 'wp2'],
  'site https': ['a.test', 'on'],
  'task rollback': ['7'],
};

describe('--no-wait: stdout is the task id alone, for every task command (issue 23 item 11)', () => {
  const taskCommands = Object.entries(COMMANDS).filter(([, c]) => c.options?.['no-wait']);

  it('the task commands all have --no-wait', () => {
    expect(taskCommands.length).toBeGreaterThanOrEqual(14);
  });

  for (const [name, cmd] of taskCommands) {
    it(`${name} --no-wait`, async () => {
      const out: string[] = [];
      const err: string[] = [];
      const t = wire.Task.fromPartial({ id: 42, kind: name.replace(' ', '.'), entity: 'x', state: wire.TaskState.TASK_STATE_QUEUED });
      // Every operator call answers with the task and whatever else a task-starting reply carries.
      const reply = { ...t, task: t, adminPassword: 'pw-123', platform: wire.Platform.fromPartial({ name: 'wp', path: '/var/www/wp', server: 'web-1' }) };
      const api = { call: async () => reply, watch: () => expect.unreachable('--no-wait must not follow the task') } as unknown as OperatorApi;
      const ctx: Ctx = { io: { out: (s) => out.push(s), err: (s) => err.push(s) }, json: false, conn: {}, api: () => api };
      const pos = (POS[name] ?? ['a.test']) as [string, string];
      expect(await cmd.run(ctx, pos, { 'no-wait': true, ...OPTS[name] })).toBe(0);
      expect(out.join('')).toBe('42\n');
    });
  }
});
