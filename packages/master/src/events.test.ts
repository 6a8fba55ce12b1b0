import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '@spoke/shared';
import { EventFeed, taskBacklog, taskEvent, type SpokeEvent } from './events.js';
import { openStore } from './namespace/store.js';
import { TaskEngine } from './tasks/engine.js';
import type { TaskInfo } from './types.js';

const task = (over: Partial<TaskInfo>): TaskInfo => ({
  id: 1,
  kind: 'site.install',
  entity: 'site:a.test',
  state: 'queued',
  params: {},
  result: null,
  errorCode: null,
  errorMessage: null,
  createdMs: 100,
  startedMs: null,
  finishedMs: null,
  ...over,
});

describe('events', () => {
  it('a task row gives its queued, started and finished events, oldest first, the last N', () => {
    const rows = [
      task({ id: 2, state: 'failed', createdMs: 200, startedMs: 210, finishedMs: 300, errorCode: 'DB_UNREACHABLE', errorMessage: 'no db' }),
      task({ id: 1, state: 'succeeded', createdMs: 100, startedMs: 150, finishedMs: 250 }),
      task({ id: 3, state: 'queued', createdMs: 400 }),
    ];
    const all = taskBacklog(rows, 100).map((e) => `${e.tsMs} #${e.taskId} ${e.state}${e.message ? ` ${e.message}` : ''}`);
    expect(all).toEqual([
      '100 #1 queued',
      '150 #1 running',
      '200 #2 queued',
      '210 #2 running',
      '250 #1 succeeded',
      '300 #2 failed DB_UNREACHABLE: no db',
      '400 #3 queued',
    ]);
    expect(taskBacklog(rows, 2).map((e) => e.taskId)).toEqual([2, 3]);
    expect(taskEvent(rows[0] as TaskInfo)).toMatchObject({ kind: 'task', entity: 'site:a.test', taskKind: 'site.install', tsMs: 300 });
  });

  it('the feed follows every task change and agents connecting and leaving', async () => {
    const tasks = new TaskEngine({ db: openStore(':memory:'), clock: Date.now, log: silentLogger() });
    tasks.register('server.verify', async () => ({ ok: true }));
    const hub = { events: new EventEmitter() };
    const feed = new EventFeed({ tasks, hub, clock: () => 5 });
    const seen: SpokeEvent[] = [];
    const off = feed.subscribe((e) => seen.push(e));
    tasks.start();
    const t = tasks.submit({ kind: 'server.verify', entity: 'server:w1', params: { server: 'w1' } });
    await tasks.wait(t.id);
    hub.events.emit('online', 'w1');
    hub.events.emit('offline', 'w1');
    off();
    hub.events.emit('online', 'w2');
    expect(seen.map((e) => `${e.entity} ${e.state}`)).toEqual([
      'server:w1 queued',
      'server:w1 running',
      'server:w1 succeeded',
      'server:w1 connected',
      'server:w1 disconnected',
    ]);
    expect(feed.backlog(10).map((e) => e.state)).toEqual(['queued', 'running', 'succeeded']);
    await tasks.stop();
  });
});
