import { describe, expect, it } from 'vitest';
import type { TaskInfo } from '../types.js';
import { FAILING_WINDOW_MS, LIST_MAX, STUCK_QUEUED_MS, STUCK_RUNNING_MS, healthSummary } from './summary.js';

const NOW = 10_000_000_000;
function t(id: number, state: TaskInfo['state'], times: Partial<Pick<TaskInfo, 'createdMs' | 'startedMs' | 'finishedMs'>>): TaskInfo {
  return {
    id,
    kind: 'site.install',
    entity: `site:s${id}.example`,
    state,
    params: {},
    result: null,
    errorCode: state === 'failed' ? 'INSTALL_FAILED' : null,
    errorMessage: state === 'failed' ? 'boom' : null,
    createdMs: 0,
    startedMs: null,
    finishedMs: null,
    ...times,
  };
}
const none = { agents: [], failed: [], running: [], queued: [], cron: [] };

describe('healthSummary', () => {
  it('is empty when all is well', () => {
    expect(healthSummary({ now: NOW, ...none, agents: [{ name: 'web1', online: true }] })).toEqual({
      agentsOffline: [],
      tasksFailing: [],
      tasksStuck: [],
      cronFailing: [],
    });
  });

  it('names offline agents, sorted', () => {
    const s = healthSummary({
      now: NOW,
      ...none,
      agents: [
        { name: 'web2', online: false },
        { name: 'web1', online: true },
        { name: 'a', online: false },
      ],
    });
    expect(s.agentsOffline).toEqual(['a', 'web2']);
  });

  it('lists tasks failed within the window, at most LIST_MAX', () => {
    const failed = [
      t(3, 'failed', { finishedMs: NOW - 1000 }),
      t(2, 'failed', { finishedMs: NOW - FAILING_WINDOW_MS }),
      t(1, 'failed', { finishedMs: NOW - FAILING_WINDOW_MS - 1 }),
    ];
    expect(healthSummary({ now: NOW, ...none, failed }).tasksFailing.map((x) => [x.id, x.errorCode, x.sinceMs])).toEqual([
      [3, 'INSTALL_FAILED', NOW - 1000],
      [2, 'INSTALL_FAILED', NOW - FAILING_WINDOW_MS],
    ]);
    const many = Array.from({ length: LIST_MAX + 5 }, (_, i) => t(100 - i, 'failed', { finishedMs: NOW - i }));
    expect(healthSummary({ now: NOW, ...none, failed: many }).tasksFailing).toHaveLength(LIST_MAX);
  });

  it('calls tasks stuck past the thresholds only, oldest first', () => {
    const running = [t(5, 'running', { startedMs: NOW - STUCK_RUNNING_MS }), t(6, 'running', { startedMs: NOW - STUCK_RUNNING_MS - 1 })];
    const queued = [t(7, 'queued', { createdMs: NOW - STUCK_QUEUED_MS }), t(8, 'queued', { createdMs: NOW - 2 * STUCK_RUNNING_MS })];
    expect(healthSummary({ now: NOW, ...none, running, queued }).tasksStuck.map((x) => [x.id, x.state])).toEqual([
      [8, 'queued'],
      [6, 'running'],
    ]);
  });

  it('lists sites whose newest cron run failed, most failures first', () => {
    const cron = [
      { domain: 'ok.example', ok: true, failures: 0, errorCode: '', message: 'drush: ok' },
      { domain: 'b.example', ok: false, failures: 1, errorCode: 'AGENT_OFFLINE', message: 'no web server' },
      { domain: 'a.example', ok: false, failures: 4, errorCode: 'CRON_FAILED', message: 'exit 1' },
    ];
    expect(healthSummary({ now: NOW, ...none, cron }).cronFailing.map((c) => [c.domain, c.failures])).toEqual([
      ['a.example', 4],
      ['b.example', 1],
    ]);
  });
});
