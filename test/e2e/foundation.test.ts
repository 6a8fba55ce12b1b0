/**
 * Foundation end to end: a real master and three agents ("hosts" with separate --root prefixes)
 * driven through the real CLI. Each step builds on the previous one.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentUnderTest, MasterUnderTest, cleanup, runNode, BIN, scratch, until } from '../harness.js';

interface ServerJson {
  name: string;
  kind: 'agent' | 'cluster';
  cluster: string | null;
  members: string[];
  online: boolean;
  enrolled: boolean;
  platforms: string[];
  facts: { roots: string[]; rootPrefix: string } | null;
}
interface TaskJson {
  id: number;
  state: string;
  error: { code: string; message: string } | null;
}

const dir = scratch();
const master = new MasterUnderTest(dir);
const w1 = new AgentUnderTest(dir, 'w1');
const w2 = new AgentUnderTest(dir, 'w2');
const solo = new AgentUnderTest(dir, 'solo');

async function token(name: string, ...extra: string[]): Promise<string> {
  const r = await master.cli('server', 'token', name, ...extra);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

async function servers(): Promise<Record<string, ServerJson>> {
  const list = await master.json<ServerJson[]>('server', 'ls');
  return Object.fromEntries(list.map((s) => [s.name, s]));
}

async function allOnline(...names: string[]): Promise<boolean> {
  const s = await servers();
  return names.every((n) => s[n]?.online === true);
}

beforeAll(async () => {
  await master.start();
});

afterAll(async () => {
  await Promise.all([w1, w2, solo].map((a) => a.daemon?.stop('SIGKILL')));
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('foundation: master, enrollment, clusters, namespace, tasks', () => {
  it('enrolls two agents into cluster web with cluster tokens and one standalone agent', async () => {
    for (const a of [w1, w2]) {
      const r = await a.enroll(master.listen, await token(a.name, '--cluster', 'web', '--ttl', '10m'));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`enrolled as ${a.name} (member of cluster web)`);
    }
    const r = await solo.enroll(master.listen, await token('solo'));
    expect(r.code, r.stderr).toBe(0);
    for (const a of [w1, w2, solo]) a.run();
    await until('agents online', () => allOnline('w1', 'w2', 'solo'));
    const s = await servers();
    expect(s.web).toMatchObject({ kind: 'cluster', members: ['w1', 'w2'], online: true });
    expect(s.w1).toMatchObject({ kind: 'agent', cluster: 'web', enrolled: true });
    expect(s.solo).toMatchObject({ kind: 'agent', cluster: null });
    expect(s.w1?.facts?.rootPrefix).toBe(w1.root);
    const clusters = await master.json<ServerJson[]>('cluster', 'ls');
    expect(clusters.map((c) => c.name)).toEqual(['web']);
  });

  it('shows a table for people', async () => {
    const r = await master.cli('server', 'ls');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^NAME\s+KIND/);
    expect(r.stdout).toMatch(/web\s+cluster\s+w1,w2\s+online/);
  });

  it('refuses a used token', async () => {
    const t = await token('late');
    const other = new AgentUnderTest(dir, 'late');
    expect((await other.enroll(master.listen, t)).code).toBe(0);
    const again = new AgentUnderTest(dir, 'late2');
    const r = await again.enroll(master.listen, t);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: TOKEN_USED: /m);
    expect(Object.keys(await servers())).not.toContain('late2');
  });

  it('a platform on the cluster reserves its path across every server', async () => {
    const p = await master.json<{ name: string; server: string; status: string }>(
      'platform',
      'add',
      'd7',
      '--path',
      '/var/aegir/platforms/d7',
      '--server',
      'web',
      '--no-verify',
    );
    expect(p).toMatchObject({ name: 'd7', server: 'web', status: 'pending' });
    const r = await master.cli('platform', 'add', 'd7-copy', '--path', '/var/aegir/platforms/d7', '--server', 'solo');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: PLATFORM_PATH_TAKEN: path \/var\/aegir\/platforms\/d7 is already used by platform d7 on web\n$/);
    const nested = await master.cli('platform', 'add', 'inner', '--path', '/var/aegir/platforms/d7/sites/all', '--server', 'solo');
    expect(nested.stderr).toMatch(/^error: PLATFORM_PATH_NESTED: /);
    const onMember = await master.cli('platform', 'add', 'm', '--path', '/var/www/m', '--server', 'w1');
    expect(onMember.stderr).toMatch(/^error: SERVER_IS_CLUSTER_MEMBER: /);
    const names = (await master.json<{ name: string }[]>('platform', 'ls')).map((x) => x.name);
    expect(names).toEqual(['d7']);
    // the cluster with a platform cannot lose its last members, nor be removed
    expect((await master.cli('server', 'rm', 'web')).stderr).toMatch(/^error: SERVER_HAS_PLATFORMS: /);
  });

  it('usage errors exit 2; unknown names exit 1 with their code', async () => {
    const u = await master.cli('platform', 'add', 'x');
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/^error: USAGE: /);
    const n = await master.cli('server', 'show', 'ghost');
    expect(n.code).toBe(1);
    expect(n.stderr).toBe('error: SERVER_NOT_FOUND: no server named ghost (see: spoke server ls)\n');
  });

  it('server verify on the cluster reports each member', async () => {
    const r = await master.cli('server', 'verify', 'web');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/w1: root \/var\/aegir: writable/);
    expect(r.stdout).toMatch(/w2: root \/var\/www: writable/);
    expect(r.stdout).toMatch(/task \d+ succeeded/);
  });

  it('server verify fails naming the member that failed', async () => {
    // On w2, /var/aegir is a file: the root cannot be created or written.
    rmSync(join(w2.root, 'var/aegir'), { recursive: true, force: true });
    mkdirSync(join(w2.root, 'var'), { recursive: true });
    writeFileSync(join(w2.root, 'var/aegir'), 'not a directory');
    const r = await master.cli('server', 'verify', 'web');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: VERIFY_FAILED: verify of web failed on w2 \(root \/var\/aegir is not writable\)/m);
    expect(r.stdout).not.toMatch(/w1 \(/);
    const json = await master.cli('-o', 'json', 'server', 'verify', 'web');
    const t = JSON.parse(json.stdout) as TaskJson;
    expect(t).toMatchObject({ state: 'failed', error: { code: 'VERIFY_FAILED' } });
    rmSync(join(w2.root, 'var/aegir'));
  });

  it('--no-wait prints the task id; task ls/show/log find it', async () => {
    const r = await master.cli('server', 'verify', 'solo', '--no-wait');
    expect(r.code).toBe(0);
    const id = Number(r.stdout.trim());
    expect(id).toBeGreaterThan(0);
    const done = await until('task to finish', async () => {
      const t = await master.json<TaskJson>('task', 'show', String(id));
      return t.state === 'succeeded' ? t : undefined;
    });
    expect(done.id).toBe(id);
    const log = await master.cli('task', 'log', String(id));
    expect(log.stdout).toMatch(/solo: services: /);
    const list = await master.json<TaskJson[]>('task', 'ls', '--state', 'succeeded');
    expect(list.map((t) => t.id)).toContain(id);
  });

  it('operators can use the TLS port with an operator certificate, and only with one', async () => {
    const certDir = join(dir, 'op');
    expect((await master.cli('operator', 'cert', 'alice', '--out', certDir)).code).toBe(0);
    const ok = await runNode(BIN.spoke, ['--master', master.listen, '--cert-dir', certDir, '-o', 'json', 'server', 'ls']);
    expect(ok.code, ok.stderr).toBe(0);
    expect((JSON.parse(ok.stdout) as ServerJson[]).map((s) => s.name)).toContain('web');
    // An agent certificate is not an operator certificate.
    const agentDir = join(dir, 'agent-as-op');
    mkdirSync(agentDir);
    const fs = await import('node:fs');
    fs.copyFileSync(join(solo.stateDir, 'ca.crt'), join(agentDir, 'ca.crt'));
    fs.copyFileSync(join(solo.stateDir, 'agent.crt'), join(agentDir, 'operator.crt'));
    fs.copyFileSync(join(solo.stateDir, 'agent.key'), join(agentDir, 'operator.key'));
    const bad = await runNode(BIN.spoke, ['--master', master.listen, '--cert-dir', agentDir, 'server', 'ls']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: CERT_UNKNOWN: /);
  });

  it('master restart keeps everything and agents reconnect by themselves', async () => {
    const before = await servers();
    await master.daemon?.stop('SIGTERM');
    await until('agents to notice', () => !master.daemon?.alive);
    await master.start();
    await until('agents back online', () => allOnline('w1', 'w2', 'solo'), 30_000);
    const after = await servers();
    expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());
    expect(after.web?.platforms).toEqual(['d7']);
  });

  it('a task interrupted by a master kill is failed after restart', async () => {
    // Freeze w1 so its verify never answers while the master still thinks it online.
    w1.daemon?.proc.kill('SIGSTOP');
    const r = await master.cli('server', 'verify', 'w1', '--no-wait');
    const id = Number(r.stdout.trim());
    await until('task running', async () => (await master.json<TaskJson>('task', 'show', String(id))).state === 'running');
    await master.daemon?.stop('SIGKILL');
    await master.start();
    const t = await master.json<TaskJson>('task', 'show', String(id));
    expect(t).toMatchObject({ state: 'failed', error: { code: 'TASK_INTERRUPTED' } });
    const log = await master.cli('task', 'log', String(id));
    expect(log.stdout).toMatch(/master stopped while this task was running/);
    w1.daemon?.proc.kill('SIGCONT');
    await until('all online again', () => allOnline('w1', 'w2', 'solo'), 30_000);
  });

  it('a removed server is revoked: its agent is refused and stops', async () => {
    const r = await master.cli('server', 'rm', 'solo');
    expect(r.code, r.stderr).toBe(0);
    const code = await solo.daemon?.exited;
    expect(code).toBe(3);
    expect(solo.daemon?.out).toMatch(/CERT_REVOKED/);
    // Starting it again is refused too.
    const again = solo.run();
    expect(await again.exited).toBe(3);
    expect(Object.keys(await servers())).not.toContain('solo');
    // Its name can be enrolled again with a new token (a rebuilt host).
    const t = await token('solo');
    expect(t).toMatch(/^spoke1\./);
  });

  it('the last member of a cluster hosting platforms cannot be removed', async () => {
    expect((await master.cli('cluster', 'remove', 'web', 'w1')).code).toBe(0);
    const r = await master.cli('server', 'rm', 'w2');
    expect(r.stderr).toMatch(/^error: CLUSTER_WOULD_STRAND_PLATFORMS: /);
    expect((await master.cli('cluster', 'add', 'web', 'w1')).code).toBe(0);
    expect((await servers()).web?.members).toEqual(['w1', 'w2']);
  });
});
