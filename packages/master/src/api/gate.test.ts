import { describe, expect, it } from 'vitest';
import { Gate } from './gate.js';

/** A body that runs until `release()`: records when it started. */
function held(started: number[], n: number) {
  let release!: () => void;
  const done = new Promise<void>((r) => (release = r));
  return { body: () => (started.push(n), done.then(() => n)), release: () => release() };
}

describe('Gate', () => {
  it('runs at most `limit` bodies at once, the rest in arrival order, and passes a turn on when one fails', async () => {
    const gate = new Gate(2);
    const started: number[] = [];
    const bodies = [1, 2, 3, 4].map((n) => held(started, n));
    const results = bodies.map((b) => gate.run(b.body));
    const failing = gate.run(() => Promise.reject(new Error('stream broke')));
    await Promise.resolve();
    expect(started).toEqual([1, 2]);
    expect([gate.running, gate.queued]).toEqual([2, 3]);
    bodies[1]?.release();
    await expect(results[1]).resolves.toBe(2);
    await Promise.resolve();
    expect(started).toEqual([1, 2, 3]);
    bodies[0]?.release();
    bodies[2]?.release();
    await Promise.all([results[0], results[2]]);
    await expect(failing).rejects.toThrow('stream broke');
    await Promise.resolve();
    expect(started).toEqual([1, 2, 3, 4]);
    bodies[3]?.release();
    await expect(results[3]).resolves.toBe(4);
    expect([gate.running, gate.queued]).toEqual([0, 0]);
  });
});
