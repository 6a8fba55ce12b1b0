/**
 * The site tasks' step lists and undo orders, against scripted fake agents (scriptedagents.ts):
 * what the master asks the agents, in order, when everything works, and what it undoes, in
 * order, when the agent fails at call N — for every N (issue 17 item 5).
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fail } from '@spoke/shared';
import { ScriptedAgents } from '../scriptedagents.js';
import { addAgent, siteTasksHarness } from '../testutil.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** One web+db server web1, a WordPress platform wp on it, an installed site blog.test. */
function setup(agents: ScriptedAgents, onlineWaitMs = 0) {
  const h = siteTasksHarness('spoke-scripted-', { agents, onlineWaitMs });
  dirs.push(h.root);
  addAgent(h.ns, 'web1');
  h.ns.recordDetectedServices('web1', [
    { kind: 'http', impl: 'nginx', version: '1' },
    { kind: 'db', impl: 'mariadb', version: '10.11' },
  ]);
  h.ns.addPlatform({ name: 'wp', path: '/var/www/wp', server: 'web1', source: { kind: 'existing' } });
  h.ns.setRegistry('wp', JSON.stringify({ kind: 'wordpress', coreVersion: '6.1', profiles: [], modules: [], themes: [], sites: [], problems: [] }));
  mkdirSync(join(h.root, 'var/www/wp/sites'), { recursive: true });
  h.ns.createSite({
    domain: 'blog.test',
    platform: 'wp',
    dbServer: 'web1',
    status: 'installed',
    db: { name: 'blog_test', user: 'blog_test', password: 'pw' },
    salt: 'salt',
  });
  h.ns.setSiteDbAddress('blog.test', '127.0.0.1', 3306);
  h.tasks.start();
  return h;
}

/** The steps a rollback undid, in order (from its "rolling back" line), each checked as done. */
function rolledBack(lines: string[]): string[] {
  const head = lines.find((l) => l.startsWith('rolling back '));
  if (!head) return [];
  const steps = head.replace(/^rolling back \d+ step\(s\): /, '').split(', ');
  for (const s of steps)
    expect(
      lines.some((l) => l === `undid ${s}` || l === `${s}: nothing to undo`),
      `${s} undone: ${lines.join('\n')}`,
    ).toBe(true);
  return steps;
}

describe('site clone against scripted agents', () => {
  it('asks the agents in this order when everything works', async () => {
    const agents = new ScriptedAgents();
    const h = setup(agents);
    const t = await h.tasks.wait(h.sites.clone({ domain: 'blog.test', newDomain: 'copy.test' }).id);
    expect(t.state, JSON.stringify(t)).toBe('succeeded');
    expect(agents.trace()).toEqual([
      'web1 dbDump blog_test',
      'web1 dbCreate copy_test',
      'web1 dbRestore copy_test',
      'master converge wp',
      'web1 siteFilesPack blog.test',
      'web1 siteFilesUnpack copy.test',
      'web1 configureSite copy.test',
    ]);
    expect(h.ns.getSite('copy.test').status).toBe('installed');
  });

  it('fails at every call N in turn: the finished steps are undone in reverse, and nothing of the copy is left', async () => {
    const clean = new ScriptedAgents();
    const c = setup(clean);
    await c.tasks.wait(c.sites.clone({ domain: 'blog.test', newDomain: 'copy.test' }).id);
    const total = clean.calls.length;
    const copy = ['converge', 'write-files', 'restore-database', 'create-database', 'dump-database', 'reserve'];
    // per failing call: the steps rolled back (in order), and what the undos asked the agents
    const expected: Record<number, { undone: string[]; calls: string[] }> = {
      1: { undone: ['reserve'], calls: [] }, // dbDump
      2: { undone: ['dump-database', 'reserve'], calls: [] }, // dbCreate: in flight, not undone
      3: { undone: ['create-database', 'dump-database', 'reserve'], calls: ['web1 dbDrop copy_test'] }, // dbRestore
      4: { undone: copy.slice(1), calls: ['master converge wp', 'web1 dbDrop copy_test'] }, // converge
      5: { undone: copy, calls: ['master converge wp', 'web1 dbDrop copy_test'] }, // siteFilesPack
      6: { undone: copy, calls: ['master converge wp', 'web1 dbDrop copy_test'] }, // siteFilesUnpack
      7: { undone: ['update-database', 'copy-files', ...copy], calls: ['web1 removeSite copy.test', 'master converge wp', 'web1 dbDrop copy_test'] }, // configureSite
    };
    expect(Object.keys(expected).length).toBe(total);
    for (let n = 1; n <= total; n++) {
      const agents = new ScriptedAgents().failAtCall(n, fail('AGENT_COMMAND_FAILED', `scripted failure at call ${n}`));
      const h = setup(agents);
      const t = await h.tasks.wait(h.sites.clone({ domain: 'blog.test', newDomain: 'copy.test' }).id);
      const log = h.tasks.lines(t.id).map((l) => l.message);
      expect(t.state, `call ${n}`).toBe('failed');
      expect(t.errorMessage, `call ${n}`).toMatch(/; rolled back$/);
      expect(rolledBack(log), `call ${n}: ${log.join('\n')}`).toEqual(expected[n]?.undone);
      expect(
        log.some((l) => l.startsWith('UNDO FAILED')),
        `call ${n}`,
      ).toBe(false);
      expect(agents.trace().slice(n), `call ${n}`).toEqual(expected[n]?.calls);
      expect(
        h.ns.listSites().map((x) => x.domain),
        `call ${n}`,
      ).toEqual(['blog.test']);
      expect(existsSync(join(h.root, 'var/www/wp/sites/copy.test')), `call ${n}`).toBe(false);
    }
  });
});

describe('undos and their agents', () => {
  it('an undo waits for its agent (bounded), saying so in the task log, and then runs', async () => {
    const agents = new ScriptedAgents().failOn('configureSite');
    // the agent drops off as the vhost fails, and is back a moment later
    agents.on('configureSite', () => {
      agents.offline.add('web1');
      setTimeout(() => agents.offline.delete('web1'), 300);
    });
    const h = setup(agents, 60_000);
    const t = await h.tasks.wait(h.sites.clone({ domain: 'blog.test', newDomain: 'copy.test' }).id);
    const log = h.tasks.lines(t.id).map((l) => l.message);
    expect(t.errorMessage, log.join('\n')).toMatch(/; rolled back$/);
    expect(log).toContain('removeSite: waiting up to 60s for web1 to come online');
    expect(log).toContain('web1 is online');
    expect(agents.trace().slice(-3)).toEqual(['web1 removeSite copy.test', 'master converge wp', 'web1 dbDrop copy_test']);
  });

  it('an undo whose agent is still offline fails; spoke task rollback finishes it once the agent is back', async () => {
    const agents = new ScriptedAgents().failOn('configureSite');
    const h = setup(agents);
    // the agent goes away right after the failure: every undo that needs it fails
    agents.failOn('removeSite', fail('AGENT_OFFLINE', 'agent web1 is offline (last seen: scripted)'));
    const t = await h.tasks.wait(h.sites.clone({ domain: 'blog.test', newDomain: 'copy.test' }).id);
    expect(t.errorMessage).toMatch(
      new RegExp(`rollback incomplete: undo of copy-files failed \\(AGENT_OFFLINE: .*\\); finish it with: spoke task rollback ${t.id}$`),
    );
    const before = agents.calls.length;
    const r = await h.tasks.wait(h.sites.rollback.submit(t.id).id);
    expect(r.state, JSON.stringify(r)).toBe('succeeded');
    expect(r.result).toEqual({ task: t.id, undone: ['copy-files'] });
    expect(agents.trace().slice(before)).toEqual(['web1 removeSite copy.test']);
  });
});
