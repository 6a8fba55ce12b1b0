/**
 * Clusters and agents as an operator meets them (issue 23), with a real master and real agents
 * ("hosts" with their own --root): a member added to a cluster converges by itself; drift repair
 * keeps what it removes in a quarantine listed by `platform status`, or only reports it
 * (`--drift report`); a server that missed a removal finishes it when it returns; a member leaves
 * its cluster before `server rm` and the CLI says what stays where; an offline member shows its
 * last known state and the cluster is degraded; one agent per state dir; enroll keeps an
 * existing identity; a taken port is ADDRESS_IN_USE; a trailing slash in --path is trimmed.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentUnderTest, BIN, Daemon, MasterUnderTest, cleanup, runNode, scratch, until } from '../harness.js';

const dir = scratch('spoke-fleet-');
const master = new MasterUnderTest(dir);
const w1 = new AgentUnderTest(dir, 'w1');
const w2 = new AgentUnderTest(dir, 'w2');
const w3 = new AgentUnderTest(dir, 'w3');
const solo = new AgentUnderTest(dir, 'solo');
const WP = '/var/www/wp';
const AGENT_ENV = { SPOKE_DRIFT_INTERVAL_MS: '400' };

interface StatusJson {
  servers: {
    server: string;
    online: boolean;
    inSync: boolean;
    observedRootHash: string | null;
    lastKnown: string | null;
    drift: { total: number };
    quarantine: { dir: string; files: number; paths: string[] }[];
  }[];
}

async function enrollAndRun(a: AgentUnderTest, ...tokenArgs: string[]): Promise<void> {
  const t = await master.cli('server', 'token', a.name, ...tokenArgs);
  const r = await a.enroll(master.listen, t.stdout.trim());
  expect(r.code, r.stderr).toBe(0);
  a.run(AGENT_ENV);
}

async function online(name: string): Promise<boolean> {
  return (await master.json<{ online: boolean }>('server', 'show', name)).online;
}

const agentFile = (a: AgentUnderTest, path: string) => join(a.root, path);
const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : undefined);

beforeAll(async () => {
  mkdirSync(join(master.root, WP), { recursive: true });
  writeFileSync(join(master.root, WP, 'index.php'), '<?php echo "v1";\n');
  writeFileSync(join(master.root, WP, 'wp-load.php'), '<?php\n');
  await master.start();
  await enrollAndRun(w1, '--cluster', 'web');
  await enrollAndRun(w2);
  await enrollAndRun(solo);
  await until('agents online', async () => (await online('w1')) && (await online('w2')) && (await online('solo')), 30_000);
}, 120_000);

afterAll(async () => {
  await Promise.all([w1, w2, w3, solo].map((a) => a.daemon?.stop('SIGKILL')));
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('fleet', () => {
  it('platform add trims a trailing slash in --path', async () => {
    const { t } = await master.task('platform', 'add', 'wp', '--path', `${WP}/`, '--server', 'web');
    expect(t.state).toBe('succeeded');
    expect((await master.json<{ path: string }>('platform', 'show', 'wp')).path).toBe(WP);
    expect(read(agentFile(w1, `${WP}/index.php`))).toContain('v1');
  });

  it('cluster add converges the new member by itself, and says so', async () => {
    const r = await master.cli('cluster', 'add', 'web', 'w2');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`converging w2 to wp (${WP})`);
    await until('w2 has the platform', () => read(agentFile(w2, `${WP}/index.php`))?.includes('v1'), 30_000);
    const s = await master.json<StatusJson>('platform', 'status', 'wp');
    expect(s.servers.map((x) => [x.server, x.inSync])).toEqual([
      ['w1', true],
      ['w2', true],
    ]);
  });

  it('drift repair keeps a hand-added file in a quarantine that platform status lists', async () => {
    writeFileSync(agentFile(w1, `${WP}/evil.php`), '<?php system($_GET["c"]);');
    writeFileSync(agentFile(w1, `${WP}/index.php`), '<?php echo "edited by hand";');
    await until('w1 repaired', () => !existsSync(agentFile(w1, `${WP}/evil.php`)) && read(agentFile(w1, `${WP}/index.php`))?.includes('v1'), 30_000);
    const s = await master.json<StatusJson>('platform', 'status', 'wp');
    const q = s.servers.find((x) => x.server === 'w1')?.quarantine ?? [];
    expect(q).toHaveLength(1);
    expect(q[0]?.paths).toEqual(['evil.php', 'index.php']);
    // the files, as they were, on w1 (the quarantine lives in the agent's state dir)
    expect(q[0]?.dir.startsWith(w1.stateDir)).toBe(true);
    expect(readFileSync(join(q[0]?.dir ?? '', 'evil.php'), 'utf8')).toBe('<?php system($_GET["c"]);');
    expect(readFileSync(join(q[0]?.dir ?? '', 'index.php'), 'utf8')).toBe('<?php echo "edited by hand";');
    const text = await master.cli('platform', 'status', 'wp');
    expect(text.stdout).toMatch(/quarantine on w1: \S+ — 2 file\(s\)/);
  });

  it('--drift report leaves hand edits in place and reports them once, until a verify repairs them', async () => {
    const r = await master.cli('platform', 'drift', 'wp', 'report');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('drift is reported, not repaired');
    writeFileSync(agentFile(w2, `${WP}/extra.php`), 'mine');
    const failed = await until(
      'the drift reported',
      async () => {
        const ts = await master.json<{ id: number; kind: string; state: string; error: { code: string; message: string } | null }[]>(
          'task',
          'ls',
          '--entity',
          'platform:wp',
        );
        return ts.find((t) => t.kind === 'platform.converge' && t.state === 'failed' && t.error?.message.includes('DRIFT_FOUND'));
      },
      30_000,
    );
    expect(failed.error?.message).toContain('+extra.php');
    // several drift checks later: still there, and reported once
    await new Promise((res) => setTimeout(res, 2000));
    expect(read(agentFile(w2, `${WP}/extra.php`))).toBe('mine');
    const again = await master.json<{ kind: string; state: string }[]>('task', 'ls', '--entity', 'platform:wp');
    expect(again.filter((t) => t.kind === 'platform.converge' && t.state === 'failed')).toHaveLength(1);
    const s = await master.json<StatusJson>('platform', 'status', 'wp');
    expect(s.servers.find((x) => x.server === 'w2')?.drift.total).toBe(1);
    // the operator repairs
    expect((await master.task('platform', 'verify', 'wp')).t.state).toBe('succeeded');
    expect(existsSync(agentFile(w2, `${WP}/extra.php`))).toBe(false);
    await master.cli('platform', 'drift', 'wp', 'repair');
  });

  it('an offline member shows its last known state and its cluster is degraded', async () => {
    await w2.daemon?.stop('SIGKILL');
    await until('w2 offline', async () => !(await online('w2')), 20_000);
    const s = await master.json<StatusJson>('platform', 'status', 'wp');
    const x = s.servers.find((y) => y.server === 'w2');
    expect(x).toMatchObject({ online: false, inSync: true });
    expect(x?.observedRootHash).toBeTruthy();
    expect(x?.lastKnown).toBeTruthy();
    const text = await master.cli('platform', 'status', 'wp');
    expect(text.stdout).toMatch(/w2\s+offline \(last known in sync, \d+s ago\)/);
    const ls = await master.cli('server', 'ls');
    expect(ls.stdout).toMatch(/web\s+cluster\s+w1,w2\s+degraded \(1\/2 online\)/);
    expect((await master.json<{ state: string }>('server', 'show', 'web')).state).toBe('degraded');
    w2.run(AGENT_ENV);
    await until('w2 back', () => online('w2'), 20_000);
  });

  it('server rm of a member that serves platforms is refused; cluster remove says what stays where', async () => {
    const rm = await master.cli('server', 'rm', 'w2');
    expect(rm.code).not.toBe(0);
    expect(rm.stderr).toContain(
      'SERVER_HAS_PLATFORMS: w2 serves platform wp of cluster web; take it out first: spoke cluster remove web w2 [--delete-files], then spoke server rm w2',
    );
    const r = await master.cli('cluster', 'remove', 'web', 'w2');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `w2 no longer serves wp (${WP}): Spoke removes their web server config on w2, now or when it is next online; the trees stay on w2`,
    );
    // w2 stops holding the tree (no drift reported for it any more), and the files stay
    await until('w2 forgot the tree', () => readdirSync(join(w2.stateDir, 'trees')).length === 0, 30_000);
    expect(read(agentFile(w2, `${WP}/index.php`))).toContain('v1');
    expect((await master.cli('server', 'rm', 'w2')).code).toBe(0);
  });

  it('a server that missed a platform rm finishes it when it returns', async () => {
    const P = '/var/www/solo-p';
    mkdirSync(join(master.root, P), { recursive: true });
    writeFileSync(join(master.root, P, 'index.php'), 'solo');
    expect((await master.task('platform', 'add', 'solo-p', '--path', P, '--server', 'solo')).t.state).toBe('succeeded');
    expect(read(agentFile(solo, `${P}/index.php`))).toBe('solo');
    await solo.daemon?.stop('SIGKILL');
    await until('solo offline', async () => !(await online('solo')), 20_000);
    // --delete-files says what it deletes where, and without a terminal needs --yes
    const unconfirmed = await master.cli('platform', 'rm', 'solo-p', '--offline-ok', '--delete-files');
    expect(unconfirmed.code).toBe(1);
    expect(unconfirmed.stderr).toContain(
      `error: CONFIRMATION_REQUIRED: platform rm solo-p --delete-files deletes ${P} on solo and the master's canonical tree ${join(master.root, P)} — the only copy Spoke has of this existing-tree platform; user data under sites/*/files and sites/*/private is kept. Nothing was done: add --yes to go ahead`,
    );
    expect(existsSync(join(master.root, P, 'index.php'))).toBe(true);
    const { t, log } = await master.task('platform', 'rm', 'solo-p', '--offline-ok', '--delete-files', '--yes');
    expect(t.state).toBe('succeeded');
    expect(log).toContain('when it comes back Spoke removes the config and stops holding the tree, and deletes the tree');
    solo.run(AGENT_ENV);
    await until('solo deleted the tree', () => !existsSync(agentFile(solo, P)), 30_000);
    const tasks = await master.json<{ kind: string; state: string }[]>('task', 'ls', '--entity', 'server:solo');
    expect(tasks.filter((x) => x.kind === 'server.forget').map((x) => x.state)).toEqual(['succeeded']);
    expect(readdirSync(join(solo.stateDir, 'trees'))).toEqual([]);
  });

  it('a second agent on a running agent’s state dir is refused, and so is enrolling over an identity', async () => {
    const second = new Daemon(BIN.agent, ['run', '--state-dir', solo.stateDir, '--root', solo.root], AGENT_ENV);
    expect(await second.exited).toBe(1);
    expect(second.out).toMatch(/error: STATE_DIR_LOCKED: another agent \(pid \d+\) is running on \S+; stop it first/);
    const t = await master.cli('server', 'token', 'w9');
    const busy = await runNode(BIN.agent, ['enroll', '--master', master.listen, '--token', t.stdout.trim(), '--state-dir', solo.stateDir]);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain('STATE_DIR_LOCKED: an agent');
    await solo.daemon?.stop('SIGTERM');
    const r = await runNode(BIN.agent, ['enroll', '--master', master.listen, '--token', t.stdout.trim(), '--state-dir', solo.stateDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`IDENTITY_EXISTS: ${solo.stateDir} already holds the identity of solo, enrolled with ${master.listen}`);
    expect(JSON.parse(readFileSync(join(solo.stateDir, 'agent.json'), 'utf8')).server).toBe('solo');
    // the token was not spent: --force uses it
    const forced = await runNode(BIN.agent, ['enroll', '--master', master.listen, '--token', t.stdout.trim(), '--state-dir', solo.stateDir, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(solo.stateDir, 'agent.json'), 'utf8')).server).toBe('w9');
  });

  it('operator certificates are listed and revoked, and a revoked one is refused on its next call', async () => {
    const certs = join(dir, 'alice');
    expect((await master.cli('operator', 'cert', 'alice', '--out', certs)).code).toBe(0);
    const asAlice = (...args: string[]) => runNode(BIN.spoke, ['--master', master.listen, '--cert-dir', certs, ...args]);
    expect((await asAlice('server', 'ls')).code).toBe(0);
    const ls = await master.json<{ name: string; fingerprint: string; revoked: string | null }[]>('operator', 'ls');
    expect(ls.map((c) => [c.name, c.revoked])).toEqual([['alice', null]]);
    const r = await master.cli('operator', 'revoke', 'alice');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`revoked 1 certificate(s) of alice: ${ls[0]?.fingerprint.slice(0, 16)}`);
    const refused = await asAlice('server', 'ls');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('CERT_REVOKED: the operator certificate of alice was revoked');
    // the streaming calls too (events, task logs, the site list): they checked the certificate's role only
    for (const args of [['events'], ['task', 'log', '1', '-f'], ['site', 'ls']]) {
      const r = await asAlice(...args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toContain('CERT_REVOKED');
    }
    expect((await master.cli('operator', 'ls')).stdout).toMatch(/alice\s+\S+\s+\S+\s+\S+\s+revoked/);
    const again = await master.cli('operator', 'revoke', 'bob');
    expect(again.stderr).toContain('OPERATOR_NOT_FOUND: no operator certificate was issued to bob');
  });

  it('a taken listen address is ADDRESS_IN_USE, one line, exit 1', async () => {
    const blocker = createServer();
    await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', () => res()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = await runNode(BIN.master, ['run', '--state-dir', join(dir, 'm2'), '--listen', `127.0.0.1:${port}`, '--root', join(dir, 'm2-root')]);
      expect(r.code).toBe(1);
      // apart from JSON log lines (debug in tests), one line: grpc-js's own "E No address added…" is gone
      const plain = r.stderr.split('\n').filter((l) => l && !l.startsWith('{'));
      expect(plain).toEqual([
        `error: ADDRESS_IN_USE: 127.0.0.1:${port} is already in use (another spoke-master, or another program: see ss -ltnp); stop it or choose another address`,
      ]);
    } finally {
      blocker.close();
    }
  });
});
