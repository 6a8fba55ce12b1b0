import { describe, expect, it } from 'vitest';
import { addAgent, expectRefused, freshNamespace } from '../testutil.js';

const existing = { kind: 'existing' as const };

describe('names', () => {
  it.each<[string, 'INVALID_NAME']>([
    ['', 'INVALID_NAME'],
    ['Web', 'INVALID_NAME'],
    ['-web', 'INVALID_NAME'],
    ['web_1!', 'INVALID_NAME'],
    ['a'.repeat(64), 'INVALID_NAME'],
  ])('cluster name %j is refused with %s', (name, code) => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'a1');
    expectRefused(db, code, () => ns.createCluster(name, ['a1']));
  });

  it('accepts the longest and shortest valid names', () => {
    const { ns } = freshNamespace();
    addAgent(ns, 'a1');
    addAgent(ns, 'a2');
    expect(ns.createCluster('a'.repeat(63), ['a1']).name).toHaveLength(63);
    expect(ns.createCluster('0', ['a2']).members).toEqual(['a2']);
  });

  it('refuses a platform with an invalid name', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'a1');
    expectRefused(db, 'INVALID_NAME', () => ns.addPlatform({ name: 'D7 Prod', path: '/var/aegir/d7', server: 'a1', source: existing }));
  });
});

describe('platform paths', () => {
  function setup() {
    const f = freshNamespace();
    addAgent(f.ns, 'a1');
    addAgent(f.ns, 'a2');
    addAgent(f.ns, 'm1');
    f.ns.createCluster('web', ['m1']);
    f.ns.addPlatform({ name: 'd7', path: '/var/aegir/platforms/d7', server: 'web', source: existing });
    return f;
  }

  it.each([
    ['relative', 'var/aegir/x'],
    ['trailing slash', '/var/aegir/x/'],
    ['double slash', '/var//aegir/x'],
    ['dot-dot', '/var/aegir/../x'],
    ['dot', '/var/./aegir/x'],
    ['root', '/'],
    ['empty', ''],
    ['control char', '/var/aegir/x\n'],
  ])('refuses a %s path with INVALID_PATH', (_why, path) => {
    const { db, ns } = setup();
    expectRefused(db, 'INVALID_PATH', () => ns.addPlatform({ name: 'p2', path, server: 'a1', source: existing }));
  });

  it('refuses the same path on another server (PLATFORM_PATH_TAKEN)', () => {
    const { db, ns } = setup();
    const e = expectRefused(db, 'PLATFORM_PATH_TAKEN', () => ns.addPlatform({ name: 'd7b', path: '/var/aegir/platforms/d7', server: 'a1', source: existing }));
    expect(e.message).toContain('d7');
  });

  it('refuses a path inside or around another platform (PLATFORM_PATH_NESTED)', () => {
    const { db, ns } = setup();
    expectRefused(db, 'PLATFORM_PATH_NESTED', () => ns.addPlatform({ name: 'inner', path: '/var/aegir/platforms/d7/sites', server: 'a1', source: existing }));
    expectRefused(db, 'PLATFORM_PATH_NESTED', () => ns.addPlatform({ name: 'outer', path: '/var/aegir/platforms', server: 'a2', source: existing }));
  });

  const hello = (roots: string[]) => ({
    facts: { hostname: 'h', os: 'linux', arch: 'x64', agentVersion: '0', roots, rootPrefix: '', cpus: 2, memoryBytes: 1 },
    services: [],
    capabilityVersion: 8,
  });

  it('refuses a path outside the roots its agent reported (PATH_OUTSIDE_ROOTS), and takes one under them', () => {
    const { db, ns } = setup();
    ns.recordHello('a1', hello(['/var/aegir', '/var/www']));
    const e = expectRefused(db, 'PATH_OUTSIDE_ROOTS', () => ns.addPlatform({ name: 'wp', path: '/srv/wp', server: 'a1', source: existing }));
    expect(e.message).toContain('outside the roots of a1 (/var/aegir, /var/www)');
    // a path equal to a root, or under one, is what the agent may write
    expect(ns.addPlatform({ name: 'www', path: '/var/www', server: 'a1', source: existing }).server).toBe('a1');
    expect(ns.addPlatform({ name: 'd8', path: '/var/aegir/platforms/d8', server: 'a1', source: existing }).server).toBe('a1');
    // a root is a directory, not a string prefix
    expectRefused(db, 'PATH_OUTSIDE_ROOTS', () => ns.addPlatform({ name: 'x', path: '/var/aegirx/p', server: 'a1', source: existing }));
  });

  it("checks each cluster member's roots; an agent that never said hello is not checked", () => {
    const { db, ns } = setup();
    addAgent(ns, 'm2', 'web');
    ns.recordHello('m1', hello(['/var/aegir', '/srv']));
    // m2 has not said hello yet: only m1's roots count
    expect(ns.addPlatform({ name: 'p1', path: '/srv/p1', server: 'web', source: existing }).server).toBe('web');
    ns.recordHello('m2', hello(['/var/aegir']));
    const e = expectRefused(db, 'PATH_OUTSIDE_ROOTS', () => ns.addPlatform({ name: 'p2', path: '/srv/p2', server: 'web', source: existing }));
    expect(e.message).toContain('roots of m2 (/var/aegir)');
    expect(ns.addPlatform({ name: 'p3', path: '/var/aegir/p3', server: 'web', source: existing }).server).toBe('web');
  });

  it('allows a sibling whose name shares a prefix', () => {
    const { ns } = setup();
    expect(ns.addPlatform({ name: 'd7x', path: '/var/aegir/platforms/d7x', server: 'a1', source: existing }).path).toBe('/var/aegir/platforms/d7x');
  });

  it('refuses a taken platform name (PLATFORM_NAME_TAKEN)', () => {
    const { db, ns } = setup();
    expectRefused(db, 'PLATFORM_NAME_TAKEN', () => ns.addPlatform({ name: 'd7', path: '/srv/other', server: 'a1', source: existing }));
  });

  it('refuses an unknown server and a cluster member', () => {
    const { db, ns } = setup();
    expectRefused(db, 'SERVER_NOT_FOUND', () => ns.addPlatform({ name: 'p', path: '/srv/p', server: 'nope', source: existing }));
    expectRefused(db, 'SERVER_IS_CLUSTER_MEMBER', () => ns.addPlatform({ name: 'p', path: '/srv/p', server: 'm1', source: existing }));
  });

  it('refuses an empty makefile and a git source without URL', () => {
    const { db, ns } = setup();
    expectRefused(db, 'INVALID_ARGUMENT', () =>
      ns.addPlatform({ name: 'p', path: '/srv/p', server: 'a1', source: { kind: 'makefile', makefile: '  ', makefileName: 'x.make' } }),
    );
    expectRefused(db, 'INVALID_ARGUMENT', () => ns.addPlatform({ name: 'p', path: '/srv/p', server: 'a1', source: { kind: 'git', url: '', ref: '' } }));
    expectRefused(db, 'INVALID_ARGUMENT', () =>
      ns.addPlatform({
        name: 'p',
        path: '/srv/p',
        server: 'a1',
        source: { kind: 'makefile', makefile: 'core = 7.x', makefileName: 'x.make', makefileDir: 'rel/dir' },
      }),
    );
  });

  it('stores makefile and git sources', () => {
    const { ns } = setup();
    ns.addPlatform({ name: 'mk', path: '/srv/mk', server: 'a1', source: { kind: 'makefile', makefile: 'core = 7.x', makefileName: 'd7.make' } });
    ns.addPlatform({ name: 'gt', path: '/srv/gt', server: 'a2', source: { kind: 'git', url: 'file:///repo', ref: 'main' } });
    expect(ns.getPlatform('mk').source).toEqual({ kind: 'makefile', makefile: 'core = 7.x', makefileName: 'd7.make' });
    expect(ns.getPlatform('gt').source).toEqual({ kind: 'git', url: 'file:///repo', ref: 'main' });
    ns.addPlatform({
      name: 'mk2',
      path: '/srv/mk2',
      server: 'a1',
      source: { kind: 'makefile', makefile: 'core = 7.x', makefileName: 'd7.make', makefileDir: '/home/op/make' },
    });
    expect(ns.getPlatform('mk2').source).toEqual({ kind: 'makefile', makefile: 'core = 7.x', makefileName: 'd7.make', makefileDir: '/home/op/make' });
    expect(ns.getServer('a1').platforms).toEqual(['mk', 'mk2']);
    expect(ns.getServer('m1').platforms).toEqual(['d7']); // a member sees its cluster's platforms
  });
});

describe('domains', () => {
  function setup() {
    const f = freshNamespace();
    addAgent(f.ns, 'a1');
    f.ns.addPlatform({ name: 'wp', path: '/var/www/wp', server: 'a1', source: existing });
    f.ns.createSite({ domain: 'example.com', platform: 'wp', aliases: ['www.example.com'] });
    return f;
  }

  it.each([
    ['Example.com'],
    ['example.com.'],
    ['-bad.example.com'],
    ['bad-.example.com'],
    ['under_score.com'],
    ['nodot'],
    ['localhost'],
    [`${'a'.repeat(64)}.com`],
    [`${'a.'.repeat(127)}com`],
    ['example.123'],
    [''],
  ])('refuses %j with INVALID_DOMAIN', (domain) => {
    const { db, ns } = setup();
    expectRefused(db, 'INVALID_DOMAIN', () => ns.createSite({ domain, platform: 'wp' }));
  });

  it('accepts a 253-character domain', () => {
    const { ns } = setup();
    const d = `${'a'.repeat(61)}.${'b'.repeat(61)}.${'c'.repeat(61)}.${'d'.repeat(61)}.org`;
    expect(d.length).toBeLessThanOrEqual(253);
    expect(ns.createSite({ domain: d, platform: 'wp' }).domain).toBe(d);
  });

  it('keeps domains unique across sites and aliases (DOMAIN_TAKEN)', () => {
    const { db, ns } = setup();
    expectRefused(db, 'DOMAIN_TAKEN', () => ns.createSite({ domain: 'example.com', platform: 'wp' }));
    expectRefused(db, 'DOMAIN_TAKEN', () => ns.createSite({ domain: 'www.example.com', platform: 'wp' }));
    expectRefused(db, 'DOMAIN_TAKEN', () => ns.createSite({ domain: 'other.com', platform: 'wp', aliases: ['example.com'] }));
    expectRefused(db, 'DOMAIN_TAKEN', () => ns.addAlias('example.com', 'www.example.com'));
    expectRefused(db, 'DOMAIN_TAKEN', () => ns.createSite({ domain: 'self.com', platform: 'wp', aliases: ['self.com'] }));
  });

  it('finds a site by its alias', () => {
    const { ns } = setup();
    expect(ns.getSite('www.example.com').domain).toBe('example.com');
  });

  it('refuses a site on an unknown platform', () => {
    const { db, ns } = setup();
    expectRefused(db, 'PLATFORM_NOT_FOUND', () => ns.createSite({ domain: 'x.com', platform: 'nope' }));
  });
});

describe('removing servers, clusters and platforms', () => {
  it('refuses to remove a server that hosts platforms', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'a1');
    ns.addPlatform({ name: 'p', path: '/srv/p', server: 'a1', source: existing });
    expectRefused(db, 'SERVER_HAS_PLATFORMS', () => ns.removeServer('a1'));
  });

  it('refuses to remove a cluster that hosts platforms', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'm1');
    ns.createCluster('web', ['m1']);
    ns.addPlatform({ name: 'p', path: '/srv/p', server: 'web', source: existing });
    expectRefused(db, 'SERVER_HAS_PLATFORMS', () => ns.removeServer('web'));
  });

  it('refuses to remove the last member of a cluster with platforms, allows it when another remains', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'm1');
    addAgent(ns, 'm2');
    ns.createCluster('web', ['m1', 'm2']);
    ns.addPlatform({ name: 'p', path: '/srv/p', server: 'web', source: existing });
    // a member serving its cluster's platforms leaves the cluster first (issue 23 item 5)
    const e = expectRefused(db, 'SERVER_HAS_PLATFORMS', () => ns.removeServer('m1'));
    expect(e.message).toBe('m1 serves platform p of cluster web; take it out first: spoke cluster remove web m1 [--delete-files], then spoke server rm m1');
    ns.removeClusterMember('web', 'm1');
    ns.removeServer('m1');
    expect(ns.getServer('web').members).toEqual(['m2']);
    expectRefused(db, 'CLUSTER_WOULD_STRAND_PLATFORMS', () => ns.removeServer('m2'));
    expectRefused(db, 'CLUSTER_WOULD_STRAND_PLATFORMS', () => ns.removeClusterMember('web', 'm2'));
  });

  it('a cluster needs at least one member', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'm1');
    expectRefused(db, 'CLUSTER_NEEDS_MEMBER', () => ns.createCluster('web', []));
    ns.createCluster('web', ['m1']);
    expectRefused(db, 'CLUSTER_NEEDS_MEMBER', () => ns.removeClusterMember('web', 'm1'));
    expectRefused(db, 'CLUSTER_NEEDS_MEMBER', () => ns.removeServer('m1'));
  });

  it('refuses bad cluster members', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'm1');
    addAgent(ns, 'm2');
    addAgent(ns, 'a1');
    ns.addPlatform({ name: 'p', path: '/srv/p', server: 'a1', source: existing });
    ns.createCluster('web', ['m1']);
    expectRefused(db, 'SERVER_NOT_FOUND', () => ns.createCluster('c2', ['ghost']));
    expectRefused(db, 'SERVER_IN_CLUSTER', () => ns.createCluster('c2', ['m1']));
    expectRefused(db, 'SERVER_IS_CLUSTER', () => ns.addClusterMember('web', 'web'));
    expectRefused(db, 'SERVER_HAS_PLATFORMS', () => ns.addClusterMember('web', 'a1'));
    expectRefused(db, 'SERVER_EXISTS', () => ns.createCluster('m2', ['m2']));
    expectRefused(db, 'CLUSTER_NOT_FOUND', () => ns.addClusterMember('nope', 'm2'));
    expectRefused(db, 'SERVER_NOT_CLUSTER', () => ns.addClusterMember('m2', 'm1'));
    expectRefused(db, 'CLUSTER_MEMBER_NOT_FOUND', () => ns.removeClusterMember('web', 'm2'));
  });

  it('removing a cluster without platforms detaches its members and revokes nothing of theirs', () => {
    const { ns } = freshNamespace();
    addAgent(ns, 'm1');
    ns.createCluster('web', ['m1']);
    ns.removeServer('web');
    expect(ns.getServer('m1').cluster).toBeNull();
    expect(ns.authenticateAgent('m1', 'fp-m1').name).toBe('m1');
  });

  it('removing an agent revokes its certificate', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'a1');
    ns.removeServer('a1');
    expectRefused(db, 'CERT_REVOKED', () => ns.authenticateAgent('a1', 'fp-a1'));
    expectRefused(db, 'SERVER_NOT_FOUND', () => ns.removeServer('a1'));
  });

  it('refuses a server holding site databases', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'a1');
    addAgent(ns, 'db1');
    ns.addPlatform({ name: 'p', path: '/srv/p', server: 'a1', source: existing });
    ns.createSite({ domain: 'x.example.com', platform: 'p', dbServer: 'db1' });
    expectRefused(db, 'SERVER_HAS_SITE_DATABASES', () => ns.removeServer('db1'));
  });

  it('a platform with sites needs --force, which removes the site rows and frees their domains', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'a1');
    ns.addPlatform({ name: 'p', path: '/srv/p', server: 'a1', source: existing });
    ns.createSite({ domain: 'x.example.com', platform: 'p', aliases: ['y.example.com'] });
    expectRefused(db, 'PLATFORM_HAS_SITES', () => ns.removePlatform('p'));
    expect(ns.removePlatform('p', true).sitesRemoved).toEqual(['x.example.com']);
    expect(ns.listSites()).toEqual([]);
    ns.addPlatform({ name: 'p2', path: '/srv/p', server: 'a1', source: existing });
    expect(ns.createSite({ domain: 'y.example.com', platform: 'p2' }).domain).toBe('y.example.com');
  });

  it('refuses an unknown platform', () => {
    const { db, ns } = freshNamespace();
    expectRefused(db, 'PLATFORM_NOT_FOUND', () => ns.removePlatform('nope'));
  });
});

describe('agent identity', () => {
  it('accepts only the current certificate of an enrolled agent', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'a1');
    expect(ns.authenticateAgent('a1', 'fp-a1').enrolled).toBe(true);
    expectRefused(db, 'CERT_UNKNOWN', () => ns.authenticateAgent('a1', 'fp-other'));
    expectRefused(db, 'CERT_UNKNOWN', () => ns.authenticateAgent('ghost', 'fp-a1'));
  });

  it('re-enrollment with replace revokes the old certificate', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'a1');
    expectRefused(db, 'SERVER_EXISTS', () => ns.recordEnrollment({ server: 'a1', cluster: null, fingerprint: 'fp-new', replace: false }));
    ns.recordEnrollment({ server: 'a1', cluster: null, fingerprint: 'fp-new', replace: true });
    expectRefused(db, 'CERT_REVOKED', () => ns.authenticateAgent('a1', 'fp-a1'));
    expect(ns.authenticateAgent('a1', 'fp-new').name).toBe('a1');
  });

  it('a cluster enrollment creates the cluster on first use', () => {
    const { ns } = freshNamespace();
    addAgent(ns, 'w1', 'web');
    addAgent(ns, 'w2', 'web');
    expect(ns.getServer('web')).toMatchObject({ kind: 'cluster', members: ['w1', 'w2'] });
    expect(ns.targets('web')).toEqual(['w1', 'w2']);
    expect(ns.targets('w1')).toEqual(['w1']);
  });
});

describe('services', () => {
  it('keeps detected and pinned apart; pins win', () => {
    const { db, ns } = freshNamespace();
    addAgent(ns, 'a1');
    ns.recordDetectedServices('a1', [
      { kind: 'http', impl: 'nginx', version: '1.22.1' },
      { kind: 'http', impl: 'apache', version: '2.4' },
      { kind: 'db', impl: 'mariadb', version: '10.11.6' },
    ]);
    expect(ns.getServer('a1').services.map((s) => `${s.kind}=${s.impl}`)).toEqual(['db=mariadb', 'http=nginx']);
    ns.pinService('a1', 'http', 'apache');
    const http = ns.getServer('a1').services.find((s) => s.kind === 'http');
    expect(http).toMatchObject({ impl: 'apache', detectedImpl: 'nginx', pinnedImpl: 'apache' });
    // a later hello does not undo the pin
    ns.recordDetectedServices('a1', [{ kind: 'http', impl: 'nginx', version: '1.22.1' }]);
    expect(ns.getServer('a1').services.find((s) => s.kind === 'http')?.impl).toBe('apache');
    expect(ns.getServer('a1').services.find((s) => s.kind === 'db')).toBeUndefined();
    expectRefused(db, 'INVALID_SERVICE', () => ns.pinService('a1', 'http', 'lighttpd'));
    expectRefused(db, 'INVALID_SERVICE', () => ns.pinService('a1', 'mail', 'postfix'));
    ns.pinService('a1', 'http', '');
    expect(ns.getServer('a1').services.find((s) => s.kind === 'http')?.impl).toBe('nginx');
  });

  it("the http pin for a server: its own, else its cluster's, else none", () => {
    const { ns } = freshNamespace();
    addAgent(ns, 'w1', 'web');
    addAgent(ns, 'w2', 'web');
    addAgent(ns, 'solo');
    expect(ns.httpPin('w1', 'web')).toBe('');
    ns.pinService('web', 'http', 'apache');
    expect(ns.httpPin('w1', 'web')).toBe('apache');
    ns.pinService('w2', 'http', 'nginx');
    expect(ns.httpPin('w2', 'web')).toBe('nginx');
    expect(ns.httpPin('solo', 'solo')).toBe('');
    expect(ns.httpPin('ghost', 'web')).toBe('apache');
    expect(ns.httpPin('ghost', 'nowhere')).toBe('');
  });

  it('a cluster offers what all its members detected', () => {
    const { ns } = freshNamespace();
    addAgent(ns, 'w1', 'web');
    addAgent(ns, 'w2', 'web');
    ns.recordDetectedServices('w1', [{ kind: 'http', impl: 'nginx', version: '1.22.1' }]);
    ns.recordDetectedServices('w2', [
      { kind: 'http', impl: 'nginx', version: '1.22.1' },
      { kind: 'db', impl: 'mariadb', version: '10' },
    ]);
    const svc = ns.getServer('web').services;
    expect(svc.find((s) => s.kind === 'http')?.impl).toBe('nginx');
    expect(svc.find((s) => s.kind === 'db')?.impl).toBe(''); // w1 has none: not a cluster-wide service
  });
});
