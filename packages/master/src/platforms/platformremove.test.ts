/**
 * platform.remove against a scripted hub: the refusals, the order of site deletes, offline
 * servers (AGENT_OFFLINE, nothing removed; --offline-ok), an agent failure (platform stays) and
 * --delete-files on the master's canonical tree (user data kept).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RootMap, fail, silentLogger } from '@spoke/shared';
import type { AgentHub } from '../servers/hub.js';
import type { AgentCommand } from '@spoke/shared';
import type { PlatformSync } from './converge.js';
import { TaskEngine } from '../tasks/engine.js';
import { TreeStore } from './trees.js';
import { addAgent, freshNamespace } from '../testutil.js';
import { SiteTasks } from '../sites/tasks.js';
import { PlatformRemover } from './platformremove.js';

const dirs: string[] = [];
const engines: TaskEngine[] = [];
afterEach(async () => {
  for (const e of engines.splice(0)) await e.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(opts: { online?: string[]; fails?: Record<string, Error> } = {}) {
  const f = freshNamespace();
  const root = mkdtempSync(join(tmpdir(), 'spoke-platformrm-'));
  dirs.push(root);
  const tasks = new TaskEngine({ db: f.db, clock: () => f.now.ms, log: silentLogger() });
  engines.push(tasks);
  const trees = new TreeStore({ db: f.db, rootMap: new RootMap(join(root, 'master')), log: silentLogger(), watch: false });
  const calls: { server: string; cmd: AgentCommand }[] = [];
  const online = new Set(opts.online ?? ['w1', 'w2']);
  const hub = {
    isOnline: (s: string) => online.has(s),
    awaitReconnect: async () => undefined,
    call: async (server: string, cmd: AgentCommand) => {
      calls.push({ server, cmd });
      const e = opts.fails?.[server];
      if (e) throw e;
      return { configRemoved: true, reloaded: true, configPath: `/etc/nginx/conf.d/spoke-platform-p.conf`, treeRemoved: false, kept: [], problems: [] };
    },
  } as unknown as AgentHub;
  const sites = new SiteTasks({ ns: f.ns, hub, tasks, trees, sync: {} as PlatformSync, db: f.db, trashDir: join(root, 'trash') });
  const remover = new PlatformRemover({ ns: f.ns, hub, tasks, trees, sites, log: silentLogger(), trashDir: join(root, 'trash', 'platforms') });
  for (const s of ['w1', 'w2']) addAgent(f.ns, s, 'c');
  f.ns.addPlatform({ name: 'p', path: '/var/www/p', server: 'c', source: { kind: 'existing' } });
  f.ns.recordObserved('w1', '/var/www/p', 'abc');
  const canonical = join(root, 'master/var/www/p');
  mkdirSync(join(canonical, 'sites/default'), { recursive: true });
  writeFileSync(join(canonical, 'index.php'), '<?php');
  tasks.start();
  return { ...f, tasks, remover, calls, canonical, root };
}

const input = (over: Partial<{ force: boolean; deleteFiles: boolean; offlineOk: boolean }> = {}) => ({
  name: 'p',
  force: false,
  deleteFiles: false,
  offlineOk: false,
  ...over,
});
const log = (tasks: TaskEngine, id: number) => tasks.lines(id).map((l) => `${l.level} ${l.message}`);

describe('platform.remove', () => {
  it('refuses a platform with sites without --force, queueing nothing; with --force queues each site delete (backed up) first', async () => {
    const { ns, remover, tasks } = setup();
    ns.createSite({ domain: 'a.test', platform: 'p', status: 'installed' } as never);
    expect(() => remover.submit(input())).toThrow(expect.objectContaining({ code: 'PLATFORM_HAS_SITES' }));
    expect(tasks.list()).toEqual([]);
    expect(() => remover.submit({ ...input(), name: 'nope' })).toThrow(expect.objectContaining({ code: 'PLATFORM_NOT_FOUND' }));
    await tasks.stop();
    const t = remover.submit(input({ force: true }));
    const all = tasks.list().reverse();
    expect(all.map((x) => [x.kind, x.entity])).toEqual([
      ['site.delete', 'site:a.test'],
      ['platform.remove', 'platform:p'],
    ]);
    expect(all[0]?.params).toMatchObject({ domain: 'a.test', platform: 'p', noBackup: false });
    expect(t.params).toMatchObject({ platform: 'p', force: true, siteTasks: [all[0]?.id] });
  });

  it('an offline member fails it with AGENT_OFFLINE before anything is touched', async () => {
    const { remover, tasks, calls, ns, canonical } = setup({ online: ['w1'] });
    const t = await tasks.wait(remover.submit(input({ deleteFiles: true })).id);
    expect([t.state, t.errorCode, t.errorMessage]).toEqual([
      'failed',
      'AGENT_OFFLINE',
      'w2 is offline and would keep serving platform p; nothing was removed (bring it back and run platform rm again, or add --offline-ok)',
    ]);
    expect(calls).toEqual([]);
    expect(ns.getPlatform('p').name).toBe('p');
    expect(ns.observed('w1', '/var/www/p')).toBe('abc');
    expect(existsSync(join(canonical, 'index.php'))).toBe(true);
  });

  it('--offline-ok goes on without the offline member and says it still has the config', async () => {
    const { remover, tasks, calls, ns } = setup({ online: ['w1'] });
    const t = await tasks.wait(remover.submit(input({ offlineOk: true })).id);
    expect(t.state).toBe('succeeded');
    expect(calls.map((c) => c.server)).toEqual(['w1']);
    expect(log(tasks, t.id)).toContain(
      'warn w2: offline; w2 still has the web server config spoke-platform-p.conf and the tree /var/www/p (remove them by hand)',
    );
    expect(log(tasks, t.id)).toContain('info platform p removed; w2 still has its config (offline)');
    expect(() => ns.getPlatform('p')).toThrow(expect.objectContaining({ code: 'PLATFORM_NOT_FOUND' }));
    expect(t.result).toMatchObject({ skipped: ['w2'] });
  });

  it("sends ForgetPlatform to every member; an agent failure fails it with the agent's code and the platform stays", async () => {
    const { remover, tasks, calls, ns } = setup({ fails: { w2: fail('WEBSERVER_CONFIG_INVALID', 'w2: nginx -t rejected the config without platform p') } });
    const t = await tasks.wait(remover.submit(input()).id);
    expect(calls.map((c) => c.cmd)).toEqual([
      { type: 'forgetPlatform', platform: 'p', tree: '/var/www/p', pinnedImpl: '', removeTree: false },
      { type: 'forgetPlatform', platform: 'p', tree: '/var/www/p', pinnedImpl: '', removeTree: false },
    ]);
    expect([t.state, t.errorCode, t.errorMessage]).toEqual([
      'failed',
      'WEBSERVER_CONFIG_INVALID',
      'w2: nginx -t rejected the config without platform p; platform p stays registered (run platform rm again)',
    ]);
    expect(ns.getPlatform('p').name).toBe('p');
    expect(ns.observed('w1', '/var/www/p')).toBeNull();
  });

  it('without --delete-files the canonical tree stays; with it the tree goes through the trash, user data kept', async () => {
    const a = setup();
    const t = await a.tasks.wait(a.remover.submit(input()).id);
    expect(t.state).toBe('succeeded');
    expect(existsSync(join(a.canonical, 'index.php'))).toBe(true);
    expect(log(a.tasks, t.id)).toContain(
      'info w1: removed /etc/nginx/conf.d/spoke-platform-p.conf and reloaded; stopped holding the tree; tree /var/www/p left in place',
    );

    const b = setup();
    mkdirSync(join(b.canonical, 'sites/default/files'), { recursive: true });
    writeFileSync(join(b.canonical, 'sites/default/files/photo.jpg'), 'jpg');
    const t2 = await b.tasks.wait(b.remover.submit(input({ deleteFiles: true })).id);
    expect(t2.state).toBe('succeeded');
    expect(b.calls.every((c) => c.cmd.type === 'forgetPlatform' && c.cmd.removeTree)).toBe(true);
    expect(readdirSync(b.canonical)).toEqual(['sites']);
    expect(readFileSync(join(b.canonical, 'sites/default/files/photo.jpg'), 'utf8')).toBe('jpg');
    expect(log(b.tasks, t2.id).some((l) => /^warn master: kept user data in .*: sites\/default\/files/.test(l))).toBe(true);
    expect(readdirSync(join(b.root, 'trash', 'platforms'))).toEqual([]);

    const c = setup();
    const t3 = await c.tasks.wait(c.remover.submit(input({ deleteFiles: true })).id);
    expect(t3.state).toBe('succeeded');
    expect(existsSync(c.canonical)).toBe(false);
    expect(t3.result).toMatchObject({ canonicalDeleted: true });
  });
});
