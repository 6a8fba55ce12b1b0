import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { wire } from '@spoke/shared';
import type { OperatorApi } from './client.js';
import { taskCommand, UsageError, type Ctx } from './command.js';

const S = wire.TaskState;

function task(over: Partial<wire.Task> = {}): wire.Task {
  return wire.Task.fromPartial({ id: 7, kind: 'site.verify', entity: 'site:a.test', state: S.TASK_STATE_QUEUED, ...over });
}

/** A context whose master answers `watch` with one log line and then `final`. */
function fakeCtx(final: wire.Task | null, json = false) {
  const out: string[] = [];
  const err: string[] = [];
  const watched: number[] = [];
  const api = {
    watch(id: number) {
      watched.push(id);
      const s = new EventEmitter();
      setImmediate(() => {
        s.emit('data', {
          event: { $case: 'line', value: { taskId: id, seq: 1, tsMs: Date.UTC(2026, 0, 1, 9, 30, 5), level: 'info', message: 'did the thing' } },
        });
        if (final) s.emit('data', { event: { $case: 'task', value: final } });
        s.emit('end');
      });
      return s;
    },
  } as unknown as OperatorApi;
  const ctx: Ctx = { io: { out: (s) => out.push(s), err: (s) => err.push(s) }, json, conn: {}, api: () => api };
  return { ctx, out, err, watched };
}

describe('taskCommand: start a task and follow it', () => {
  const seen: unknown[] = [];
  const cmd = taskCommand({
    usage: 'site verify DOMAIN [--no-wait]',
    summary: 'x',
    options: { platform: { type: 'string' } },
    args: [1, 1],
    start: async (_ctx, [name], o) => {
      if (name === 'bad') throw new UsageError('bad name');
      seen.push([name, o.platform]);
      return task();
    },
    done: (ctx, final, [name]) => ctx.io.out(`done ${name}: ${final.resultJson}\n`),
  });

  it("adds --no-wait to the command's own options", () => {
    expect(cmd.options).toEqual({ platform: { type: 'string' }, 'no-wait': { type: 'boolean' } });
  });

  it('--no-wait prints the task id and does not follow it', async () => {
    const f = fakeCtx(null);
    expect(await cmd.run(f.ctx, ['a.test', ''], { 'no-wait': true, platform: 'p' })).toBe(0);
    expect(f.out).toEqual(['7\n']);
    expect(f.watched).toEqual([]);
    expect(seen.at(-1)).toEqual(['a.test', 'p']);
  });

  it('follows a task to success: log lines, the outcome, then what done prints; exit 0', async () => {
    const f = fakeCtx(task({ state: S.TASK_STATE_SUCCEEDED, startedMs: 1000, finishedMs: 3500, resultJson: '{"ok":1}' }));
    expect(await cmd.run(f.ctx, ['a.test', ''], {})).toBe(0);
    expect(f.watched).toEqual([7]);
    expect(f.out).toEqual(['task 7: site.verify on site:a.test\n', '09:30:05 did the thing\n', 'task 7 succeeded in 2.5s\n', 'done a.test: {"ok":1}\n']);
    expect(f.err).toEqual([]);
  });

  it('a failed task exits 1 with its error on stderr, and done is not called', async () => {
    const f = fakeCtx(task({ state: S.TASK_STATE_FAILED, errorCode: 'AGENT_OFFLINE', errorMessage: 'w1 is offline' }));
    expect(await cmd.run(f.ctx, ['a.test', ''], {})).toBe(1);
    expect(f.out.at(-1)).toBe('task 7 failed\n');
    expect(f.err).toEqual(['error: AGENT_OFFLINE: w1 is offline\n']);
  });

  it('-o json prints the final task as JSON, the log on stderr', async () => {
    const f = fakeCtx(task({ state: S.TASK_STATE_SUCCEEDED }), true);
    expect(await cmd.run(f.ctx, ['a.test', ''], {})).toBe(0);
    expect(f.err).toEqual(['09:30:05 did the thing\n']);
    expect(JSON.parse(f.out.join(''))).toMatchObject({ id: 7, state: 'succeeded' });
  });

  it('a usage error from start reaches the caller before any task exists', async () => {
    const f = fakeCtx(null);
    await expect(cmd.run(f.ctx, ['bad', ''], {})).rejects.toThrow(UsageError);
    expect(f.out).toEqual([]);
  });
});
