/**
 * `spoke events -f` (issue 23 item 12): a real master and agent; the CLI follows every task
 * state change and the agent connecting and leaving as they happen, one JSON object per line.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentUnderTest, BIN, MasterUnderTest, cleanup, scratch, until } from '../harness.js';

const dir = scratch('spoke-events-');
const master = new MasterUnderTest(dir);
const solo = new AgentUnderTest(dir, 'solo');

beforeAll(async () => {
  await master.start();
  const t = await master.cli('server', 'token', 'solo');
  expect((await solo.enroll(master.listen, t.stdout.trim())).code).toBe(0);
  solo.run();
  await until('solo online', async () => (await master.json<{ online: boolean }>('server', 'show', 'solo')).online);
});

afterAll(async () => {
  await solo.daemon?.stop('SIGKILL');
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('spoke events', () => {
  it('follows task state changes and an agent leaving, as they happen', async () => {
    // one task first: its last change is the backlog line that shows the stream is open
    expect((await master.task('server', 'verify', 'solo')).t.state).toBe('succeeded');
    const child = spawn(process.execPath, [BIN.spoke, '--state-dir', master.stateDir, '-o', 'json', 'events', '-f', '--limit', '1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const events = () =>
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { kind: string; entity: string; state: string; taskKind: string | null; taskId: number | null });
    try {
      await until('backlog line', () => events().length === 1);
      expect(events()[0]).toMatchObject({ kind: 'task', taskKind: 'server.verify', state: 'succeeded' });
      const before = events().length;
      const v = await master.task('server', 'verify', 'solo');
      expect(v.t.state).toBe('succeeded');
      await until('verify events', () => events().filter((e) => e.taskId === v.t.id).length === 3);
      expect(
        events()
          .slice(before)
          .filter((e) => e.taskId === v.t.id)
          .map((e) => `${e.taskKind} ${e.entity} ${e.state}`),
      ).toEqual(['server.verify server:solo queued', 'server.verify server:solo running', 'server.verify server:solo succeeded']);
      await solo.daemon?.stop('SIGTERM');
      await until('agent left', () => events().some((e) => e.kind === 'agent' && e.entity === 'server:solo' && e.state === 'disconnected'));
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('without -f prints the recent task changes and ends', async () => {
    const r = await master.cli('events', '--limit', '3');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(/server:solo\s+server\.verify #\d+ succeeded$/);
    const bad = await master.cli('events', '--limit', '0');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--limit must be a whole number of events, at least 1/);
  });
});
