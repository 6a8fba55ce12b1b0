import { describe, expect, it } from 'vitest';
import { fail, silentLogger } from '@spoke/shared';
import { openStore } from '../namespace/store.js';
import { TaskEngine } from './engine.js';

function engine(concurrency = 4, file = ':memory:') {
  const db = openStore(file);
  const tasks = new TaskEngine({ db, clock: Date.now, log: silentLogger(), concurrency });
  return { db, tasks };
}

function deferred() {
  let resolve!: () => void;
  const p = new Promise<void>((r) => (resolve = r));
  return { p, resolve };
}

describe('task engine', () => {
  it('runs a task to succeeded with its log and result', async () => {
    const { tasks } = engine();
    tasks.register('t', async ({ log }) => {
      log('step one');
      return { ok: 1 };
    });
    tasks.start();
    const t = tasks.submit({ kind: 't', entity: 'x:1' });
    const done = await tasks.wait(t.id);
    expect(done.state).toBe('succeeded');
    expect(done.result).toEqual({ ok: 1 });
    expect(tasks.lines(t.id).map((l) => l.message)).toEqual(['queued t on x:1', 'step one', 'succeeded']);
  });

  it('a failing handler ends failed with its code', async () => {
    const { tasks } = engine();
    tasks.register('t', async () => {
      throw fail('AGENT_OFFLINE', 'agent a1 is offline');
    });
    tasks.start();
    const done = await tasks.wait(tasks.submit({ kind: 't', entity: 'x:1' }).id);
    expect(done).toMatchObject({ state: 'failed', errorCode: 'AGENT_OFFLINE', errorMessage: 'agent a1 is offline' });
  });

  it('a crash that is not a SpokeError ends failed INTERNAL', async () => {
    const { tasks } = engine();
    tasks.register('t', async () => {
      throw new TypeError('boom');
    });
    tasks.start();
    const done = await tasks.wait(tasks.submit({ kind: 't', entity: 'x:1' }).id);
    expect(done).toMatchObject({ state: 'failed', errorCode: 'INTERNAL' });
  });

  it('runs one task per entity at a time, FIFO, and others in parallel', async () => {
    const { tasks } = engine();
    const order: string[] = [];
    const gate = deferred();
    tasks.register('t', async ({ task }) => {
      order.push(`start ${task.id}`);
      if (task.id === 1) await gate.p;
      order.push(`end ${task.id}`);
    });
    tasks.start();
    const a = tasks.submit({ kind: 't', entity: 'server:a' });
    const b = tasks.submit({ kind: 't', entity: 'server:a' });
    const c = tasks.submit({ kind: 't', entity: 'server:c' });
    await tasks.wait(c.id);
    expect(tasks.get(a.id).state).toBe('running');
    expect(tasks.get(b.id).state).toBe('queued');
    gate.resolve();
    await tasks.wait(b.id);
    expect(order.indexOf('end 1')).toBeLessThan(order.indexOf('start 2'));
    expect(order.indexOf('end 3')).toBeLessThan(order.indexOf('end 1'));
  });

  it('extra locks hold every entity of the task', async () => {
    const { tasks } = engine();
    const gate = deferred();
    tasks.register('t', async ({ task }) => {
      if (task.id === 1) await gate.p;
    });
    tasks.start();
    tasks.submit({ kind: 't', entity: 'site:x', locks: ['platform:a', 'platform:b'] });
    const other = tasks.submit({ kind: 't', entity: 'platform:b' });
    await new Promise((r) => setTimeout(r, 20));
    expect(tasks.get(other.id).state).toBe('queued');
    gate.resolve();
    expect((await tasks.wait(other.id)).state).toBe('succeeded');
  });

  it('respects the global concurrency limit', async () => {
    const { tasks } = engine(2);
    let running = 0;
    let peak = 0;
    tasks.register('t', async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 10));
      running--;
    });
    tasks.start();
    const ids = Array.from({ length: 6 }, (_, i) => tasks.submit({ kind: 't', entity: `e:${i}` }).id);
    await Promise.all(ids.map((id) => tasks.wait(id)));
    expect(peak).toBe(2);
  });

  it('cancels a queued task at once and a running one through its signal', async () => {
    const { tasks } = engine();
    tasks.register('t', ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))));
    tasks.start();
    const a = tasks.submit({ kind: 't', entity: 'e:1' });
    const b = tasks.submit({ kind: 't', entity: 'e:1' });
    expect(tasks.cancel(b.id).state).toBe('cancelled');
    await new Promise((r) => setTimeout(r, 10));
    tasks.cancel(a.id);
    expect((await tasks.wait(a.id)).state).toBe('cancelled');
    expect(() => tasks.cancel(a.id)).toThrow(expect.objectContaining({ code: 'TASK_FINISHED' }));
    expect(() => tasks.cancel(999)).toThrow(expect.objectContaining({ code: 'TASK_NOT_FOUND' }));
  });

  it('fails tasks left running by a previous process, with a log line saying why', async () => {
    const { db, tasks } = engine();
    const gate = deferred();
    tasks.register('t', () => gate.p);
    tasks.start();
    const t = tasks.submit({ kind: 't', entity: 'e:1' });
    await new Promise((r) => setTimeout(r, 10));
    expect(tasks.get(t.id).state).toBe('running');
    // A new engine over the same rows stands for the restarted master.
    const again = new TaskEngine({ db, clock: Date.now, log: silentLogger() });
    expect(again.recover()).toEqual([t.id]);
    expect(again.get(t.id)).toMatchObject({ state: 'failed', errorCode: 'TASK_INTERRUPTED' });
    expect(again.lines(t.id).at(-1)?.message).toMatch(/master stopped while this task was running/);
    gate.resolve();
  });

  it('refuses an unknown kind and lists with filters', async () => {
    const { tasks } = engine();
    tasks.register('t', async () => undefined);
    expect(() => tasks.submit({ kind: 'nope', entity: 'e' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    tasks.submit({ kind: 't', entity: 'e:1' });
    tasks.submit({ kind: 't', entity: 'e:2' });
    expect(tasks.list({ state: 'queued' }).map((t) => t.entity)).toEqual(['e:2', 'e:1']);
    expect(tasks.list({ entity: 'e:1' })).toHaveLength(1);
  });

  it('takes a bare entity name when one kind has it, and names the kinds when several do (issue 23 item 12)', () => {
    const { tasks } = engine();
    tasks.register('t', async () => undefined);
    tasks.submit({ kind: 't', entity: 'platform:wp' });
    tasks.submit({ kind: 't', entity: 'platform:wp' });
    tasks.submit({ kind: 't', entity: 'site:a.test' });
    tasks.submit({ kind: 't', entity: 'platform:web' });
    tasks.submit({ kind: 't', entity: 'server:web' });
    expect(tasks.list({ entity: 'wp' }).map((t) => t.entity)).toEqual(['platform:wp', 'platform:wp']);
    expect(tasks.list({ entity: 'a.test' })).toHaveLength(1);
    expect(tasks.list({ entity: 'nothing' })).toEqual([]);
    // A name is matched whole, never as a pattern.
    expect(tasks.list({ entity: 'w%' })).toEqual([]);
    expect(() => tasks.list({ entity: 'web' })).toThrow(
      expect.objectContaining({ code: 'ENTITY_AMBIGUOUS', message: expect.stringContaining('platform:web, server:web') }),
    );
  });

  it('streams events to subscribers', async () => {
    const { tasks } = engine();
    tasks.register('t', async ({ log }) => log('hello'));
    const seen: string[] = [];
    tasks.start();
    const t = tasks.submit({ kind: 't', entity: 'e:1' });
    tasks.subscribe(t.id, (e) => seen.push(e.type === 'line' ? `line:${e.line.message}` : `task:${e.task.state}`));
    await tasks.wait(t.id);
    expect(seen).toEqual(['task:running', 'line:hello', 'line:succeeded', 'task:succeeded']);
  });
});
