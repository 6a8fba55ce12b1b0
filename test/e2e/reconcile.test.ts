/**
 * Level-triggered healing end to end (issue 19 item 2): a converge that fails for a cause on the
 * server is retried by the master's reconcile loop with backoff — `platform status` says when the
 * next try is — and once the cause is gone the server heals without anyone running a command.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { walkTree } from '@spoke/shared';
import { AgentUnderTest, MasterUnderTest, cleanup, scratch, until } from '../harness.js';

interface StatusJson {
  servers: { server: string; inSync: boolean; retry: { atMs: number; failures: number; lastError: string } | null }[];
}
interface TaskRow {
  kind: string;
  state: string;
  params: { server?: string; why?: string };
}

const dir = scratch('spoke-reconcile-');
const master = new MasterUnderTest(dir);
const solo = new AgentUnderTest(dir, 'solo');
const P = '/var/aegir/platforms/p1';

beforeAll(async () => {
  for (let i = 0; i < 30; i++) {
    mkdirSync(join(master.root, P, `d${i % 5}`), { recursive: true });
    writeFileSync(join(master.root, P, `d${i % 5}`, `f${i}.php`), `<?php // ${i}\n`);
  }
  await master.start({ SPOKE_RECONCILE_MS: '3000', SPOKE_RECONCILE_BACKOFF_MS: '500' });
  const t = await master.cli('server', 'token', 'solo');
  expect((await solo.enroll(master.listen, t.stdout.trim())).code).toBe(0);
  // only the master's loop may heal here: the agent's own drift scan is an hour away
  solo.run({ SPOKE_DRIFT_INTERVAL_MS: String(60 * 60_000) });
  await until('solo online', async () => (await master.json<{ online: boolean }>('server', 'show', 'solo')).online);
});

afterAll(async () => {
  await solo.daemon?.stop('SIGKILL');
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('reconcile loop', () => {
  it('retries a failing converge with backoff, says when, and heals by itself once the cause is gone', async () => {
    // A file where the platform's parent directory should be: every converge on solo fails.
    const blocker = join(solo.root, '/var/aegir/platforms');
    mkdirSync(join(solo.root, '/var/aegir'), { recursive: true });
    writeFileSync(blocker, 'in the way');
    const add = await master.cli('platform', 'add', 'p1', '--path', P, '--server', 'solo');
    expect(add.code).not.toBe(0);

    // The loop retries without a command, and platform status says when it tries next.
    await until(
      'a retry failed and the next one is scheduled',
      async () => {
        const s = await master.json<StatusJson>('platform', 'status', 'p1');
        const r = s.servers.find((x) => x.server === 'solo')?.retry;
        return !!r && r.failures >= 2;
      },
      60_000,
    );
    const human = await master.cli('platform', 'status', 'p1');
    expect(human.stdout).toMatch(/solo: converge failed \d+ time\(s\) in a row \(last: .+\); next try in \d+s, or now: spoke platform verify p1/);
    const failed = await master.json<TaskRow[]>('task', 'ls', '--entity', 'platform:p1');
    expect(failed.filter((t) => t.kind === 'platform.converge' && t.state === 'failed' && t.params.server === 'solo').length).toBeGreaterThanOrEqual(2);

    // The cause goes away; nobody runs a command.
    rmSync(blocker);
    const want = (await walkTree(join(master.root, P))).manifest.rootHash;
    await until(
      'solo healed by the loop',
      async () => existsSync(join(solo.root, P)) && (await walkTree(join(solo.root, P))).manifest.rootHash === want,
      90_000,
    );
    const tasks = await master.json<TaskRow[]>('task', 'ls', '--entity', 'platform:p1');
    expect(tasks.some((t) => t.kind === 'platform.converge' && t.state === 'succeeded' && /^retry \d+/.test(t.params.why ?? ''))).toBe(true);
    await until('status clear', async () => {
      const s = await master.json<StatusJson>('platform', 'status', 'p1');
      const x = s.servers.find((y) => y.server === 'solo');
      return x?.inSync === true && x.retry === null;
    });
  });
});
