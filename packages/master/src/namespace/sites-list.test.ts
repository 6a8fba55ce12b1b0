/**
 * `listSites` reads every alias and every platform's server in one query each (issue 20: two
 * queries per site made `site ls` of 100,000 sites take seconds); what it returns is what
 * `getSite` returns for each site, with or without a platform filter. One site's aliases are
 * read through the index of migration 11.
 */
import { describe, expect, it } from 'vitest';
import { addAgent, freshNamespace } from '../testutil.js';

describe('Namespace.listSites', () => {
  it('lists every site with its own aliases (sorted) and its platform’s server', () => {
    const { ns } = freshNamespace();
    addAgent(ns, 'w1');
    addAgent(ns, 'w2');
    ns.addPlatform({ name: 'a', path: '/var/www/a', server: 'w1', source: { kind: 'existing' } });
    ns.addPlatform({ name: 'b', path: '/var/www/b', server: 'w2', source: { kind: 'existing' } });
    ns.createSite({ domain: 'one.example.com', platform: 'a', aliases: ['zz.example.com', 'aa.example.com'] });
    ns.createSite({ domain: 'two.example.com', platform: 'b', aliases: ['mm.example.com'] });
    ns.createSite({ domain: 'three.example.com', platform: 'b' });
    const all = ns.listSites();
    expect(all.map((s) => [s.domain, s.server, s.aliases])).toEqual([
      ['one.example.com', 'w1', ['aa.example.com', 'zz.example.com']],
      ['three.example.com', 'w2', []],
      ['two.example.com', 'w2', ['mm.example.com']],
    ]);
    expect(all).toEqual(all.map((s) => ns.getSite(s.domain)));
    expect(ns.listSites('b')).toEqual([ns.getSite('three.example.com'), ns.getSite('two.example.com')]);
  });

  it('reads one site’s aliases through an index, not by scanning every domain (migration 11)', () => {
    const { db } = freshNamespace();
    const plan = db.prepare("EXPLAIN QUERY PLAN SELECT name FROM domains WHERE site = 'x.example.com' AND is_alias = 1 ORDER BY name").all() as {
      detail: string;
    }[];
    expect(plan.map((p) => p.detail).join('\n')).toMatch(/USING (COVERING )?INDEX domains_site/);
  });

  it('reads each platform’s kind from its registry in SQL: none, unreadable or without a kind is empty', () => {
    const { ns, db } = freshNamespace();
    addAgent(ns, 'w1');
    for (const name of ['wp', 'd7', 'none', 'bad', 'nokind']) ns.addPlatform({ name, path: `/var/www/${name}`, server: 'w1', source: { kind: 'existing' } });
    ns.setRegistry('wp', JSON.stringify({ kind: 'wordpress', coreVersion: '6.1' }));
    ns.setRegistry('d7', JSON.stringify({ kind: 'drupal7', modules: Array.from({ length: 500 }, (_, i) => ({ name: `m${i}` })) }));
    ns.setRegistry('nokind', JSON.stringify({ coreVersion: '1' }));
    db.prepare("UPDATE platforms SET registry_json = '{not json' WHERE name = 'bad'").run();
    expect(Object.fromEntries(ns.platformKinds())).toEqual({ wp: 'wordpress', d7: 'drupal7', none: '', bad: '', nokind: '' });
  });

  it('pages: every site once, in domain order, each page as listSites has it; a platform filter pages its own sites', () => {
    const { ns } = freshNamespace();
    addAgent(ns, 'w1');
    ns.addPlatform({ name: 'a', path: '/var/www/a', server: 'w1', source: { kind: 'existing' } });
    ns.addPlatform({ name: 'b', path: '/var/www/b', server: 'w1', source: { kind: 'existing' } });
    for (let i = 0; i < 23; i++)
      ns.createSite({ domain: `s${String(i).padStart(2, '0')}.test`, platform: i % 3 ? 'a' : 'b', aliases: i % 4 ? [] : [`alias-${i}.test`] });
    const pages = [...ns.sitePages(undefined, 5)];
    expect(pages.map((p) => p.length)).toEqual([5, 5, 5, 5, 3]);
    expect(pages.flat()).toEqual(ns.listSites());
    expect(pages.flat().map((s) => s.domain)).toEqual([...pages.flat().map((s) => s.domain)].sort());
    const b = [...ns.sitePages('b', 4)];
    expect(b.map((p) => p.length)).toEqual([4, 4]);
    expect(b.flat()).toEqual(ns.listSites('b'));
    expect([...ns.sitePages(undefined, 23)].map((p) => p.length)).toEqual([23]); // a full last page, then an empty read: no empty page
    expect([...ns.sitePages('none', 5)]).toEqual([]);
  });

  it('cronSites: a platform’s installed sites with an interval, in slices by row', () => {
    const { ns } = freshNamespace();
    addAgent(ns, 'w1');
    for (const name of ['wp', 'd7', 'raw']) ns.addPlatform({ name, path: `/var/www/${name}`, server: 'w1', source: { kind: 'existing' } });
    ns.setRegistry('wp', JSON.stringify({ kind: 'wordpress' }));
    ns.setRegistry('d7', JSON.stringify({ kind: 'drupal7' }));
    const site = (domain: string, platform: string, status: 'installed' | 'disabled' = 'installed') => ns.createSite({ domain, platform, status });
    site('a.test', 'wp');
    site('b.test', 'd7');
    site('c.test', 'raw');
    site('d.test', 'wp', 'disabled');
    site('e.test', 'd7');
    ns.setSiteCronInterval('e.test', 0);
    site('f.test', 'd7');
    expect(ns.cronSites('wp', 'wordpress').map((s) => [s.domain, s.kind, s.platform])).toEqual([['a.test', 'wordpress', 'wp']]);
    expect(ns.cronSites('d7', 'drupal7').map((s) => s.domain)).toEqual(['b.test', 'f.test']);
    const first = ns.cronSites('d7', 'drupal7', { after: 0, limit: 1 });
    expect(first.map((s) => s.domain)).toEqual(['b.test']);
    expect(ns.cronSites('d7', 'drupal7', { after: first[0]?.row ?? 0, limit: 1 }).map((s) => s.domain)).toEqual(['f.test']);
    expect(ns.cronSites('raw', '')).toHaveLength(1); // the caller picks the platforms; this one is only read when asked
  });
});
