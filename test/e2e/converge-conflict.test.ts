/**
 * One user-data conflict never wedges a platform: the master turns `sites/x.example.com` into a
 * file while the server holds user files there. The converge skips that path, applies everything
 * else, says so in the task log and in `platform status` (with what to do); drift repair goes on;
 * turning `sites` into a symlink afterwards converges too; once the user data is moved away, the
 * next verify applies what was wanted.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { walkTree } from '@spoke/shared';
import { AgentUnderTest, MasterUnderTest, cleanup, scratch, until } from '../harness.js';

const dir = scratch('spoke-conflict-');
const master = new MasterUnderTest(dir);
const w1 = new AgentUnderTest(dir, 'w1');
const P = '/var/www/cp';
const AGENT_ENV = { SPOKE_DRIFT_INTERVAL_MS: '300' };
const mt = (rel = '') => join(master.root, P, rel);
const at = (rel = '') => join(w1.root, P, rel);

interface StatusJson {
  servers: { server: string; conflicts: { path: string; wanted: string; userData: string; advice: string }[] }[];
}

beforeAll(async () => {
  mkdirSync(mt('sites/x.example.com'), { recursive: true });
  mkdirSync(mt('sites/default'), { recursive: true });
  writeFileSync(mt('index.php'), '<?php // v1\n');
  writeFileSync(mt('sites/x.example.com/settings.php'), '<?php // x\n');
  writeFileSync(mt('sites/default/settings.php'), '<?php // default\n');
  await master.start();
  const t = await master.cli('server', 'token', 'w1');
  expect((await w1.enroll(master.listen, t.stdout.trim())).code).toBe(0);
  w1.run(AGENT_ENV);
  await until('w1 online', async () => (await master.json<{ online: boolean }>('server', 'show', 'w1')).online);
  const add = await master.task('platform', 'add', 'cp', '--path', P, '--server', 'w1');
  expect(add.t.state, add.log).toBe('succeeded');
  // the site's uploads on the web server
  mkdirSync(at('sites/x.example.com/files'), { recursive: true });
  writeFileSync(at('sites/x.example.com/files/photo.jpg'), 'user upload');
}, 60_000);

afterAll(async () => {
  await w1.daemon?.stop('SIGKILL');
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('a conflict with user data', () => {
  it('is skipped and reported per path; everything else converges; status says what to do', async () => {
    rmSync(mt('sites/x.example.com'), { recursive: true });
    writeFileSync(mt('sites/x.example.com'), 'now a file\n');
    writeFileSync(mt('index.php'), '<?php // v2\n');
    const { t, log } = await master.task('platform', 'verify', 'cp');
    expect(t.state, log).toBe('succeeded');
    expect(log).toMatch(
      /conflict: w1: sites\/x\.example\.com: the platform has a file here, but w1 holds user data in sites\/x\.example\.com\/files; kept as it is, everything else converged\. To fix: .*spoke platform verify cp/,
    );
    expect(readFileSync(at('index.php'), 'utf8')).toBe('<?php // v2\n');
    expect(readFileSync(at('sites/x.example.com/files/photo.jpg'), 'utf8')).toBe('user upload');
    expect(existsSync(at('sites/x.example.com/settings.php'))).toBe(false);

    const st = await master.json<StatusJson>('platform', 'status', 'cp');
    expect(st.servers[0]?.conflicts).toEqual([
      expect.objectContaining({
        path: 'sites/x.example.com',
        wanted: 'file',
        userData: 'sites/x.example.com/files',
        advice: expect.stringMatching(/^w1: sites\/x\.example\.com: /),
      }),
    ]);
    const human = await master.cli('platform', 'status', 'cp');
    expect(human.stdout).toMatch(/^w1\s+conflict\s/m);
    expect(human.stdout).toMatch(/^conflict: w1: sites\/x\.example\.com: the platform has a file here/m);
  });

  it('drift repair goes on: a hand edit is put back', async () => {
    writeFileSync(at('index.php'), 'edited by hand');
    await until('index.php repaired', () => readFileSync(at('index.php'), 'utf8') === '<?php // v2\n', 20_000);
  });

  it('turning sites into a symlink afterwards converges everything else too', async () => {
    mkdirSync(mt('shared'), { recursive: true });
    writeFileSync(mt('shared/README'), 'shared sites\n');
    rmSync(mt('sites'), { recursive: true });
    symlinkSync('shared', mt('sites'));
    writeFileSync(mt('index.php'), '<?php // v3\n');
    const { t, log } = await master.task('platform', 'verify', 'cp');
    expect(t.state, log).toBe('succeeded');
    expect(log).not.toMatch(/keeps what is below it/);
    expect(log).toMatch(/conflict: w1: sites: the platform has a symlink here, but w1 holds user data in sites\/x\.example\.com\/files/);
    expect(readFileSync(at('index.php'), 'utf8')).toBe('<?php // v3\n');
    expect(readFileSync(at('shared/README'), 'utf8')).toBe('shared sites\n');
    expect(readFileSync(at('sites/x.example.com/files/photo.jpg'), 'utf8')).toBe('user upload');
  });

  it('once the user data is moved away, the next verify applies what was wanted', async () => {
    rmSync(at('sites/x.example.com/files'), { recursive: true });
    const { t, log } = await master.task('platform', 'verify', 'cp');
    expect(t.state, log).toBe('succeeded');
    expect(log).not.toMatch(/conflict: /);
    const [a, b] = await Promise.all([walkTree(mt()), walkTree(at())]);
    expect(b.manifest.rootHash).toBe(a.manifest.rootHash);
    const st = await master.json<StatusJson>('platform', 'status', 'cp');
    expect(st.servers[0]?.conflicts).toEqual([]);
  });
});
