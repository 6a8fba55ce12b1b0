/**
 * Liveness stays in memory (issue 20): heartbeats update the session at once, and the store gets
 * every agent's last heartbeat in one transaction per heartbeat interval — not one write per
 * heartbeat — and at a disconnect and at shutdown.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '@spoke/shared';
import { AgentHub } from './hub.js';
import { addAgent, FakeAgentStream, freshNamespace } from '../testutil.js';

type AgentStream = Parameters<AgentHub['attach']>[2];

function setup(names: string[]) {
  vi.useFakeTimers();
  let now = 1_000_000;
  const clock = () => now;
  const { ns } = freshNamespace();
  for (const n of names) addAgent(ns, n);
  const hub = new AgentHub({ ns, log: silentLogger(), clock, heartbeatIntervalMs: 5000, heartbeatTtlMs: 15_000 });
  const streams = new Map<string, FakeAgentStream>();
  for (const n of names) {
    const stream = new FakeAgentStream();
    hub.attach(n, null, stream as unknown as AgentStream);
    stream.emit('data', { event: { $case: 'hello', value: { capabilityVersion: 99, facts: undefined, services: [], observed: {} } } });
    streams.set(n, stream);
  }
  const beat = (n: string, atMs: number) => {
    now = atMs;
    streams.get(n)?.emit('data', { event: { $case: 'heartbeat', value: { tsMs: atMs } } });
  };
  const touchMany = vi.spyOn(ns, 'touchMany');
  const touch = vi.spyOn(ns, 'touch');
  return { hub, ns, streams, beat, touch, touchMany, setNow: (ms: number) => (now = ms) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('AgentHub liveness', () => {
  it('writes the heartbeats of many agents in one transaction per interval, the latest of each', () => {
    const { hub, ns, beat, touch, touchMany } = setup(['w1', 'w2', 'w3']);
    const hello = ns.getServer('w1').lastSeenMs;
    for (let i = 1; i <= 4; i++) for (const n of ['w1', 'w2', 'w3']) beat(n, 1_000_000 + i * 1000 + (n === 'w2' ? 7 : 0));
    // online from memory at once; nothing written yet
    expect(hub.isOnline('w2')).toBe(true);
    expect(hub.heartbeatAgeMs('w1')).toBe(0);
    expect(touchMany).not.toHaveBeenCalled();
    expect(touch).not.toHaveBeenCalled();
    expect(ns.getServer('w1').lastSeenMs).toBe(hello);
    vi.advanceTimersByTime(5000);
    expect(touchMany).toHaveBeenCalledTimes(1);
    expect(ns.getServer('w1').lastSeenMs).toBe(1_004_000);
    expect(ns.getServer('w2').lastSeenMs).toBe(1_004_007);
    // no heartbeat since: the next interval writes nothing
    vi.advanceTimersByTime(20_000);
    expect(touchMany).toHaveBeenCalledTimes(1);
  });

  it('writes an agent’s last heartbeat when it disconnects and every unsaved one at shutdown', () => {
    const { hub, ns, streams, beat, touchMany } = setup(['w1', 'w2']);
    beat('w1', 1_002_000);
    beat('w2', 1_002_500);
    streams.get('w1')?.emit('end');
    expect(ns.getServer('w1').lastSeenMs).toBe(1_002_000);
    expect(touchMany).not.toHaveBeenCalled();
    hub.closeAll();
    expect(ns.getServer('w2').lastSeenMs).toBe(1_002_500);
    expect(touchMany).toHaveBeenCalledTimes(1);
    expect(touchMany.mock.calls[0]?.[0]).toEqual([['w2', 1_002_500]]);
  });
});
