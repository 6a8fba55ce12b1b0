/**
 * The agent simulator of the scale suite (bench/simagents.ts, `pnpm bench:scale`) against a real
 * master, small, so it cannot rot silently: 20 simulated agents enroll with real tokens, come
 * online, answer a `server verify`, converge a small platform over the real wire (the files they
 * write are the master's), and all come back after a master restart.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimFleet, createTokens, operatorClient } from '../../bench/simagents.js';
import { MasterUnderTest, cleanup, scratch, until } from '../harness.js';

const N = 20;
const dir = scratch('spoke-simagents-');
const master = new MasterUnderTest(dir);
const names = Array.from({ length: N }, (_, i) => `sim-${String(i + 1).padStart(2, '0')}`);
const received: { agent: string; type: string }[] = [];
let fleet: SimFleet;

interface ServerJson {
  name: string;
  state: string;
}

async function onlineOnMaster(): Promise<number> {
  const servers = await master.json<ServerJson[]>('server', 'ls');
  return servers.filter((s) => s.state === 'online').length;
}

beforeAll(async () => {
  await master.start();
  const api = operatorClient(master.stateDir);
  const tokens = await createTokens(api, names);
  api.close();
  fleet = new SimFleet({
    master: master.listen,
    backoffInitialMs: 100,
    backoffMaxMs: 500,
    treesDir: join(dir, 'sim-trees'),
    onCommand: (agent, type) => received.push({ agent, type }),
  });
  await fleet.enroll(tokens);
  fleet.start();
});

afterAll(async () => {
  fleet?.stop();
  await master.daemon?.stop();
  cleanup(dir);
});

describe('agent simulator', () => {
  it('enrolls every agent with its token and brings them all online on the master', async () => {
    expect([...fleet.agents.keys()].sort()).toEqual(names);
    await until('20 agents online on the master', async () => (await onlineOnMaster()) === N);
  });

  it('answers server verify with its roots writable', async () => {
    const { t, log } = await master.task('server', 'verify', 'sim-07');
    expect(t.state, log).toBe('succeeded');
    expect(log).toContain('sim-07: root /var/www: writable');
    expect(received.filter((r) => r.type === 'verifyServer').map((r) => r.agent)).toEqual(['sim-07']);
  });

  it('converges a platform over GetManifest/FetchBlobs and writes the master tree', async () => {
    const tree = join(master.root, 'var/www/small');
    mkdirSync(join(tree, 'core'), { recursive: true });
    writeFileSync(join(tree, 'index.php'), '<?php // front\n');
    writeFileSync(join(tree, 'core/a.php'), '<?php // a\n');
    writeFileSync(join(tree, 'core/b.php'), '<?php // b\n');
    const { t, log } = await master.task('platform', 'add', 'small', '--path', '/var/www/small', '--server', 'sim-03');
    expect(t.state, log).toBe('succeeded');
    const written = join(dir, 'sim-trees', 'sim-03', 'var/www/small');
    expect(readFileSync(join(written, 'core/b.php'), 'utf8')).toBe('<?php // b\n');
    expect(readFileSync(join(written, 'index.php'), 'utf8')).toBe('<?php // front\n');
    // a second verify finds the agent in sync: its hello-less observed hash is the desired one
    const again = await master.task('platform', 'verify', 'small');
    expect(again.t.state, again.log).toBe('succeeded');
    expect(again.log).toMatch(/in sync/);
  });

  it('every agent reconnects after a master restart', async () => {
    const before = [...fleet.agents.values()].map((a) => a.connects);
    await master.daemon?.stop();
    await master.start();
    await until('all agents back on the master', async () => (await onlineOnMaster()) === N, 30_000);
    const after = [...fleet.agents.values()].map((a) => a.connects);
    expect(after.every((c, i) => c === (before[i] ?? 0) + 1)).toBe(true);
  });
});
