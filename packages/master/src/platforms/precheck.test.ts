import { describe, expect, it } from 'vitest';
import { fail } from '@spoke/shared';
import { observeFirst, type PrecheckHub } from './precheck.js';

/** A hub whose servers answer treeStatus as scripted; records every call. */
function fakeHub(online: string[], answer: (server: string) => Promise<void>): PrecheckHub & { calls: [string, unknown][] } {
  const calls: [string, unknown][] = [];
  const hub = {
    calls,
    isOnline: (server: string) => online.includes(server),
    call: async (server: string, cmd: unknown) => {
      calls.push([server, cmd]);
      await answer(server);
      return {
        committedRootHash: '',
        actualRootHash: '',
        exists: true,
        drift: { changed: [], added: [], removed: [], total: 0 },
        conflicts: [],
        quarantine: [],
      };
    },
  };
  return hub as unknown as PrecheckHub & { calls: [string, unknown][] };
}

describe('observeFirst', () => {
  it('has every online server re-observe the tree and names those that did', async () => {
    const hub = fakeHub(['w1', 'w2', 'w3'], async (s) => {
      if (s === 'w2') throw fail('AGENT_TIMEOUT', 'agent w2 did not answer treeStatus within 60s');
    });
    const lines: string[] = [];
    const done = await observeFirst(hub, ['w1', 'w2', 'w3', 'gone'], '/var/www/d7', ['x/'], new AbortController().signal, (l) => lines.push(l));
    expect([...done].sort()).toEqual(['w1', 'w3']);
    // the offline server is not waited for (its converge re-observes); the others were asked
    expect(hub.calls).toEqual([
      ['w1', { type: 'treeStatus', tree: '/var/www/d7', excludes: ['x/'] }],
      ['w2', { type: 'treeStatus', tree: '/var/www/d7', excludes: ['x/'] }],
      ['w3', { type: 'treeStatus', tree: '/var/www/d7', excludes: ['x/'] }],
    ]);
    expect(lines).toEqual(['w2: could not re-observe the tree before the converge (AGENT_TIMEOUT); the converge does it']);
  });

  it('asks all servers at once, not one after another', async () => {
    const waiting: (() => void)[] = [];
    const hub = fakeHub(['w1', 'w2'], () => new Promise<void>((r) => waiting.push(r)));
    const p = observeFirst(hub, ['w1', 'w2'], '/t', [], new AbortController().signal, () => undefined);
    await new Promise((r) => setImmediate(r));
    // both are in flight before either answered
    expect(hub.calls.map(([s]) => s)).toEqual(['w1', 'w2']);
    for (const w of waiting) w();
    expect([...(await p)].sort()).toEqual(['w1', 'w2']);
  });

  it('gives up on a server that goes offline while it is asked (a frozen agent): its converge waits for it instead', async () => {
    const online = ['w1', 'w2'];
    let seen: AbortSignal | undefined;
    const hub = {
      isOnline: (s: string) => online.includes(s),
      call: (server: string, _cmd: unknown, opts: { signal: AbortSignal }) => {
        if (server === 'w2') return Promise.resolve({});
        seen = opts.signal;
        // never answers; only an abort ends it
        return new Promise((_, reject) => opts.signal.addEventListener('abort', () => reject(fail('TASK_CANCELLED', 'aborted'))));
      },
    } as unknown as PrecheckHub;
    const lines: string[] = [];
    const p = observeFirst(hub, ['w1', 'w2'], '/t', [], new AbortController().signal, (l) => lines.push(l), 10);
    await new Promise((r) => setTimeout(r, 30));
    expect(seen?.aborted).toBe(false); // still online: still waited for
    online.splice(0, 1); // w1's heartbeats stop
    expect([...(await p)]).toEqual(['w2']);
    expect(lines).toEqual(['w1: went offline before it re-observed the tree; its converge waits for it']);
  });
});
