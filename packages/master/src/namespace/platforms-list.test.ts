/**
 * What the reconcile loop reads on every pass (issue 20): the platforms with their sites from one
 * query (equal to `getPlatform` of each), without them when asked, and every observed hash at once.
 */
import { describe, expect, it } from 'vitest';
import { addAgent, freshNamespace } from '../testutil.js';

describe('Namespace platform lists', () => {
  it('lists platforms with their own sites, or without sites, and every observed hash at once', () => {
    const { ns } = freshNamespace();
    addAgent(ns, 'w1');
    addAgent(ns, 'w2');
    ns.addPlatform({ name: 'a', path: '/var/www/a', server: 'w1', source: { kind: 'existing' } });
    ns.addPlatform({ name: 'b', path: '/var/www/b', server: 'w2', source: { kind: 'existing' } });
    ns.addPlatform({ name: 'c', path: '/var/www/c', server: 'w2', source: { kind: 'existing' } });
    ns.createSite({ domain: 'z.example.com', platform: 'a' });
    ns.createSite({ domain: 'y.example.com', platform: 'a' });
    ns.createSite({ domain: 'x.example.com', platform: 'b' });
    const all = ns.listPlatforms();
    expect(all.map((p) => [p.name, p.sites])).toEqual([
      ['a', ['y.example.com', 'z.example.com']],
      ['b', ['x.example.com']],
      ['c', []],
    ]);
    expect(all).toEqual(all.map((p) => ns.getPlatform(p.name)));
    expect(ns.listPlatforms({ sites: false })).toEqual(all.map((p) => ({ ...p, sites: [] })));

    ns.recordObserved('w1', '/var/www/a', 'a'.repeat(64));
    ns.recordObserved('w2', '/var/www/b', 'b'.repeat(64));
    const seen = ns.observedAll();
    expect(seen.get('w1\0/var/www/a')).toBe(ns.observed('w1', '/var/www/a'));
    expect(seen.get('w2\0/var/www/b')).toBe('b'.repeat(64));
    expect(seen.has('w2\0/var/www/c')).toBe(false);
  });
});
