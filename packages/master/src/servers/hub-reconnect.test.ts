/**
 * The reconnect grace after a master start: a command for an agent that was online when the
 * master stopped waits (bounded, said in the task log) for it to come back; agents that were
 * already gone, never seen, or came back once are not waited for, and the grace ends.
 */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '@spoke/shared';
import { AgentHub, expectedBack } from './hub.js';
import type { Namespace } from '../namespace/namespace.js';
import { FakeAgentStream } from '../testutil.js';

type AgentStream = Parameters<AgentHub['attach']>[2];
const NOW = Date.now();
const SERVERS = [
  { name: 'web', kind: 'cluster', lastSeenMs: null },
  { name: 'w1', kind: 'agent', lastSeenMs: NOW - 2_000 }, // online when the master stopped
  { name: 'w2', kind: 'agent', lastSeenMs: NOW - 1_000 },
  { name: 'dead', kind: 'agent', lastSeenMs: NOW - 3_600_000 }, // gone an hour before
  { name: 'new', kind: 'agent', lastSeenMs: null }, // enrolled, never said hello
];

function hub(graceMs: number): AgentHub {
  const ns = {
    listServers: () => SERVERS,
    recordHello: () => undefined,
    touch: () => undefined,
    getServer: (n: string) => SERVERS.find((s) => s.name === n),
  } as unknown as Namespace;
  return new AgentHub({ ns, log: silentLogger(), clock: Date.now, heartbeatIntervalMs: 1000, heartbeatTtlMs: 3000, reconnectGraceMs: graceMs });
}

function connect(h: AgentHub, name: string): FakeAgentStream {
  const stream = new FakeAgentStream();
  h.attach(name, null, stream as unknown as AgentStream);
  stream.emit('data', { event: { $case: 'hello', value: { capabilityVersion: 99, facts: undefined, services: [], observed: {} } } });
  return stream;
}

function answerPing(stream: FakeAgentStream): void {
  const sent = stream.written.at(-1) as { id: string };
  stream.emit('data', { event: { $case: 'result', value: { id: sent.id, ok: true, errorCode: '', errorMessage: '', result: { $case: 'pong', value: {} } } } });
}

describe('expectedBack', () => {
  it('names the agents seen within two heartbeat TTLs of the last sign of life, never clusters or the never-seen', () => {
    expect(expectedBack(SERVERS, 3000)).toEqual(['w1', 'w2']);
    expect(expectedBack(SERVERS, 3_600_000)).toEqual(['dead', 'w1', 'w2']);
    expect(expectedBack([], 3000)).toEqual([]);
  });
});

describe('AgentHub reconnect grace', () => {
  it('a command for an agent that was online waits for its hello, and the task log says so', async () => {
    const h = hub(10_000);
    const lines: string[] = [];
    const call = h.call('w1', { type: 'ping' }, { log: (m) => lines.push(m) });
    await new Promise((r) => setTimeout(r, 50));
    expect(lines).toEqual(['waiting up to 10s for w1 to reconnect after the master restart']);
    const stream = connect(h, 'w1');
    await new Promise((r) => setImmediate(r));
    answerPing(stream);
    await expect(call).resolves.toBeNull();
    expect(lines[1]).toMatch(/^w1 reconnected after \d+\.\ds$/);
  });

  it('agents that were gone before the stop, or never seen, fail AGENT_OFFLINE at once', async () => {
    const h = hub(10_000);
    const lines: string[] = [];
    for (const name of ['dead', 'new']) {
      await expect(h.call(name, { type: 'ping' }, { log: (m) => lines.push(m) })).rejects.toMatchObject({ code: 'AGENT_OFFLINE' });
    }
    expect(lines).toEqual([]);
  });

  it('the wait is bounded by the grace, after which commands fail at once; a cancel ends it', async () => {
    const h = hub(300);
    const lines: string[] = [];
    const t0 = Date.now();
    await expect(h.call('w2', { type: 'ping' }, { log: (m) => lines.push(m) })).rejects.toMatchObject({ code: 'AGENT_OFFLINE' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(lines).toEqual(['waiting up to 1s for w2 to reconnect after the master restart', 'w2 did not reconnect within 1s of the master restart']);
    // w2 is no longer expected; w1's grace is over
    lines.length = 0;
    await expect(h.call('w2', { type: 'ping' }, { log: (m) => lines.push(m) })).rejects.toMatchObject({ code: 'AGENT_OFFLINE' });
    await expect(h.call('w1', { type: 'ping' }, { log: (m) => lines.push(m) })).rejects.toMatchObject({ code: 'AGENT_OFFLINE' });
    expect(lines).toEqual([]);

    const h2 = hub(60_000);
    const ac = new AbortController();
    const waiting = h2.awaitReconnect('w1', { signal: ac.signal });
    ac.abort();
    await expect(waiting).resolves.toBeUndefined();
  });

  it('an agent that came back once is not waited for when it drops again', async () => {
    const h = hub(60_000);
    const stream = connect(h, 'w1');
    stream.emit('end');
    const lines: string[] = [];
    await expect(h.call('w1', { type: 'ping' }, { log: (m) => lines.push(m) })).rejects.toMatchObject({ code: 'AGENT_OFFLINE' });
    expect(lines).toEqual([]);
  });

  it('without a grace (the default) nothing waits', async () => {
    const h = hub(0);
    await expect(h.call('w1', { type: 'ping' })).rejects.toMatchObject({ code: 'AGENT_OFFLINE' });
  });
});
