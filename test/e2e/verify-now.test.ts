/**
 * `platform verify` is the command that makes the servers right now (issue 19 item 1): hand
 * edits, additions and removals made on a server a moment before it are repaired by that verify,
 * on a single server and on every member of a cluster — not by the agent's minute scan, which is
 * set to an hour here so only the verify can do it.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { walkTree } from '@spoke/shared';
import { AgentUnderTest, MasterUnderTest, cleanup, scratch, until } from '../harness.js';

interface VerifyResult {
  servers: { server: string; inSync: boolean; filesFetched: number; removed: number; drift: { total: number } }[];
}

async function verify(name: string): Promise<{ state: string; result: VerifyResult | null }> {
  const { t } = await master.task('platform', 'verify', name);
  return { state: t.state, result: t.result as VerifyResult | null };
}

const dir = scratch('spoke-verify-now-');
const master = new MasterUnderTest(dir);
const w1 = new AgentUnderTest(dir, 'w1');
const w2 = new AgentUnderTest(dir, 'w2');
const solo = new AgentUnderTest(dir, 'solo');
const AGENT_ENV = { SPOKE_DRIFT_INTERVAL_MS: String(60 * 60_000) };
const CL = '/var/aegir/platforms/cl';
const SO = '/var/aegir/platforms/so';

function makeTree(root: string): void {
  for (let m = 0; m < 10; m++) {
    mkdirSync(join(root, 'modules', `m${m}`), { recursive: true });
    for (let f = 0; f < 20; f++) writeFileSync(join(root, 'modules', `m${m}`, `f${f}.php`), `<?php // ${m}/${f}\n`);
  }
  writeFileSync(join(root, 'index.php'), '<?php // front\n');
}

async function rootHash(dirPath: string): Promise<string> {
  return (await walkTree(dirPath)).manifest.rootHash;
}

/** Edits, adds and removes a file on a server's copy, as an operator's hand would. */
function tamper(tree: string): void {
  writeFileSync(join(tree, 'index.php'), 'hacked by hand\n');
  writeFileSync(join(tree, 'stray.php'), '<?php // added by hand\n');
  rmSync(join(tree, 'modules/m3/f7.php'));
}

async function enrollAndRun(a: AgentUnderTest, ...tokenArgs: string[]): Promise<void> {
  const t = await master.cli('server', 'token', a.name, ...tokenArgs);
  const r = await a.enroll(master.listen, t.stdout.trim());
  expect(r.code, r.stderr).toBe(0);
  a.run(AGENT_ENV);
}

beforeAll(async () => {
  makeTree(join(master.root, CL));
  makeTree(join(master.root, SO));
  await master.start();
  await enrollAndRun(w1, '--cluster', 'web');
  await enrollAndRun(w2, '--cluster', 'web');
  await enrollAndRun(solo);
  await until('agents online', async () => {
    const s = await master.json<{ name: string; online: boolean }[]>('server', 'ls');
    return ['w1', 'w2', 'solo'].every((n) => s.find((x) => x.name === n)?.online);
  });
  for (const [name, path, server] of [
    ['cl', CL, 'web'],
    ['so', SO, 'solo'],
  ] as const) {
    const r = await master.cli('platform', 'add', name, '--path', path, '--server', server);
    expect(r.code, r.stderr).toBe(0);
  }
});

afterAll(async () => {
  await Promise.all([w1, w2, solo].map((a) => a.daemon?.stop('SIGKILL')));
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('platform verify repairs what was changed on the servers a moment before', () => {
  it('on a single server', async () => {
    const want = await rootHash(join(master.root, SO));
    const tree = join(solo.root, SO);
    expect(await rootHash(tree)).toBe(want);
    tamper(tree);
    const t = await verify('so');
    expect(t.state).toBe('succeeded');
    expect(existsSync(join(tree, 'stray.php'))).toBe(false);
    expect(existsSync(join(tree, 'modules/m3/f7.php'))).toBe(true);
    expect(await rootHash(tree)).toBe(want);
    const s = t.result?.servers.find((x) => x.server === 'solo');
    expect(s?.inSync).toBe(false);
    expect(s?.drift.total).toBe(3);
  });

  it('on every member of a cluster', async () => {
    const want = await rootHash(join(master.root, CL));
    const trees = [w1, w2].map((a) => join(a.root, CL));
    for (const tree of trees) {
      expect(await rootHash(tree)).toBe(want);
      tamper(tree);
    }
    const t = await verify('cl');
    expect(t.state).toBe('succeeded');
    for (const tree of trees) expect(await rootHash(tree)).toBe(want);
    expect(t.result?.servers.map((x) => [x.server, x.drift.total]).sort()).toEqual([
      ['w1', 3],
      ['w2', 3],
    ]);
  });

  it('a verify with nothing changed still moves nothing', async () => {
    const t = await verify('cl');
    expect(t.result?.servers.every((x) => x.inSync && x.filesFetched === 0)).toBe(true);
  });
});
