import { describe, expect, it } from 'vitest';
import { silentLogger } from '@spoke/shared';
import { addAgent, expectRefused, freshNamespace } from '../testutil.js';
import type { TaskContext } from '../tasks/engine.js';
import type { TaskInfo } from '../types.js';
import { DEFAULT_REDIRECT_OLD_FOR_S, FormerNameSweeper, dropExpiredFormerNames, redirectingNames } from './formernames.js';

const existing = { kind: 'existing' as const };
const DAY = 86_400_000;

/** blog.example (alias www.blog.example) renamed to news.example, its old name redirecting for a day. */
function renamed() {
  const f = freshNamespace();
  addAgent(f.ns, 'web1');
  f.ns.addPlatform({ name: 'wp', path: '/var/www/wp', server: 'web1', source: existing });
  f.ns.addPlatform({ name: 'wp2', path: '/var/www/wp2', server: 'web1', source: existing });
  const facts = (n: string) => ({ name: n, user: n, password: 'p'.repeat(32) });
  f.ns.createSite({ domain: 'blog.example', platform: 'wp', dbServer: 'web1', aliases: ['www.blog.example'], status: 'installed', db: facts('blog_example') });
  f.ns.createSite({ domain: 'news.example', platform: 'wp2', dbServer: 'web1', status: 'installing', db: facts('news_example') });
  const move = (from: string, to: string, untilMs?: number) =>
    f.ns.relocateSite(from, {
      domain: to,
      platform: 'wp2',
      dbServer: 'web1',
      db: facts(to.replace('.', '_')),
      dbHost: 'localhost',
      dbPort: 3306,
      salt: 's',
      ...(untilMs === undefined ? {} : { redirectOldUntilMs: untilMs }),
    });
  move('blog.example', 'news.example', f.now.ms + DAY);
  return { ...f, move, facts };
}

const ctxLog = () => {
  const lines: string[] = [];
  return { lines, ctx: { log: (m: string) => lines.push(m) } as unknown as TaskContext };
};

describe('a renamed site keeps its old name as a redirect for a grace period', () => {
  it('the old name is a former name until its time, not an alias; the site is found by its new name only', () => {
    const { ns, now } = renamed();
    const s = ns.getSite('news.example');
    expect(s.aliases).toEqual(['www.blog.example']);
    expect(s.formerNames).toEqual([{ name: 'blog.example', untilMs: now.ms + DAY }]);
    expect(redirectingNames(s, now.ms)).toEqual(['blog.example']);
    expect(redirectingNames(s, now.ms + DAY)).toEqual([]);
    expect(() => ns.getSite('blog.example')).toThrow('no site named blog.example: it is the old name of site news.example (see: spoke site show news.example)');
    expect(DEFAULT_REDIRECT_OLD_FOR_S).toBe(30 * 86_400);
  });

  it('nobody takes the old name while it redirects: site, alias, rename; the error says until when and how to free it', () => {
    const { db, ns, now } = renamed();
    const e = expectRefused(db, 'DOMAIN_TAKEN', () => ns.createSite({ domain: 'blog.example', platform: 'wp' }));
    expect(e.message).toBe(
      'blog.example is the old name of site news.example and answers a 301 to it until 2023-11-15T22:13:20.000Z; release it early with: spoke site alias rm news.example blog.example',
    );
    expectRefused(db, 'DOMAIN_TAKEN', () => ns.checkNewSite({ domain: 'blog.example', platform: 'wp' }));
    expectRefused(db, 'DOMAIN_TAKEN', () => ns.addAlias('news.example', 'blog.example'));
    // past its time but not swept yet: still taken (the vhost redirects until the sweep's verify), said so
    now.ms += DAY;
    expect(expectRefused(db, 'DOMAIN_TAKEN', () => ns.createSite({ domain: 'blog.example', platform: 'wp' })).message).toBe(
      'blog.example is the old name of site news.example; its redirect ended at 2023-11-15T22:13:20.000Z and is removed within a minute (or now: spoke site alias rm news.example blog.example)',
    );
  });

  it('alias rm releases it (the name is free at once); a rename with no grace keeps nothing', () => {
    const { ns } = renamed();
    ns.removeAlias('news.example', 'blog.example');
    expect(ns.getSite('news.example').formerNames).toBeUndefined();
    expect(ns.createSite({ domain: 'blog.example', platform: 'wp' }).domain).toBe('blog.example');
    ns.deleteSite('blog.example');
    const f = renamed();
    f.ns.createSite({ domain: 'third.example', platform: 'wp2', dbServer: 'web1', status: 'installing', db: f.facts('third_example') });
    f.move('news.example', 'third.example', 0);
    // news.example is free; the older name moved with the site
    expect(f.ns.getSite('third.example').formerNames).toEqual([{ name: 'blog.example', untilMs: f.now.ms + DAY }]);
    expect(f.ns.createSite({ domain: 'news.example', platform: 'wp' }).domain).toBe('news.example');
  });

  it('a verify after the grace drops the name; before it, nothing', () => {
    const { ns, now } = renamed();
    const early = ctxLog();
    expect(dropExpiredFormerNames(ns, early.ctx, 'news.example', now.ms + DAY - 1)).toEqual([]);
    expect(ns.getSite('news.example').formerNames).toHaveLength(1);
    const late = ctxLog();
    expect(dropExpiredFormerNames(ns, late.ctx, 'news.example', now.ms + DAY)).toEqual(['blog.example']);
    expect(late.lines).toEqual(['blog.example, the old name of news.example, no longer redirects (its grace ended); the name is free']);
    expect(ns.getSite('news.example').formerNames).toBeUndefined();
  });

  it('the sweeper drops expired names and queues one verify per site; nothing before their time', () => {
    const { ns, now } = renamed();
    const queued: string[] = [];
    const sweeper = new FormerNameSweeper({
      ns,
      verify: (d) => {
        queued.push(d);
        return { id: queued.length } as TaskInfo;
      },
      clock: () => now.ms,
      log: silentLogger(),
    });
    expect(sweeper.tick()).toEqual([]);
    now.ms += DAY;
    expect(sweeper.tick()).toEqual(['news.example']);
    expect(queued).toEqual(['news.example']);
    expect(ns.getSite('news.example').formerNames).toBeUndefined();
    expect(sweeper.tick()).toEqual([]);
    // a site whose verify cannot be queued: the name is dropped all the same
    const f = renamed();
    f.now.ms += 2 * DAY;
    const failing = new FormerNameSweeper({
      ns: f.ns,
      verify: () => {
        throw new Error('busy');
      },
      clock: () => f.now.ms,
      log: silentLogger(),
    });
    expect(failing.tick()).toEqual([]);
    expect(f.ns.expiredFormerNames(f.now.ms)).toEqual([]);
  });
});
