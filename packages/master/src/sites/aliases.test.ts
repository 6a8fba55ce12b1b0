import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { isSpokeError } from '@spoke/shared';
import {
  ALIAS_ENV,
  DEFAULT_SSH_USER,
  DRUSHRC_FILE,
  GENERATED_MARK,
  aliasName,
  checkSshUser,
  phpLiteral,
  siteAliases,
  staleAliasFiles,
  writeAliasFiles,
  yamlString,
  type AliasFile,
  type AliasFormat,
  type AliasPlatform,
  type AliasServer,
  type AliasSite,
} from './aliases.js';

const PHP = '/usr/bin/php';
const tmpRoots: string[] = [];
afterAll(() => {
  for (const d of tmpRoots) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'spoke-aliases-'));
  tmpRoots.push(d);
  return d;
}

const agent = (name: string, hostname: string, online = true, rootPrefix = ''): AliasServer => ({
  name,
  kind: 'agent',
  members: [],
  online,
  hostname,
  rootPrefix,
});
const cluster = (name: string, members: string[]): AliasServer => ({ name, kind: 'cluster', members, online: false, hostname: '', rootPrefix: '' });
const platform = (name: string, server: string, path: string, kind: string | null = 'drupal8'): AliasPlatform => ({ name, server, path, kind });
const site = (domain: string, plat: string, status = 'installed'): AliasSite => ({ domain, platform: plat, status });

/** A namespace with every case: local, remote, cluster, the skipped kinds and states. */
const NS = {
  servers: [
    agent('master', 'box.example.net'),
    agent('web-1', 'web-1.example.net'),
    agent('c-b', 'c-b.example.net'),
    agent('c-a', 'c-a.example.net', false),
    cluster('web', ['c-b', 'c-a']),
    agent('new', ''),
  ],
  platforms: [
    platform('d10', 'master', '/var/aegir/platforms/d10'),
    platform('d7', 'web-1', '/var/aegir/platforms/d7', 'drupal7'),
    platform('d6c', 'web', '/var/aegir/platforms/d6', 'drupal6'),
    platform('wp', 'web-1', '/var/www/wp', 'wordpress'),
    platform('fresh', 'web-1', '/var/www/fresh', null),
    platform('nowhere', 'new', '/var/www/nowhere'),
  ],
  sites: [
    site('local.example.com', 'd10'),
    site('remote.example.com', 'd7', 'disabled'),
    site('shop.example.org', 'd6c'),
    site('blog.example.com', 'wp'),
    site('half.example.com', 'd10', 'installing'),
    site('broken.example.com', 'd7', 'failed'),
    site('gone.example.com', 'd7', 'deleting'),
    site('early.example.com', 'fresh'),
    site('lost.example.com', 'nowhere'),
  ],
};

const gen = (format: AliasFormat, opts: { sshUser?: string; localServer?: string | null } = {}, ns = NS) =>
  siteAliases(ns, { format, sshUser: opts.sshUser, localServer: opts.localServer === undefined ? 'master' : opts.localServer });

/** Symfony's YAML component as Debian packages it: the parser drush 9+ reads alias files with. */
const SYMFONY_YAML = '/usr/share/php/Symfony/Component/Yaml/autoload.php';

/** Parses YAML `files` (name → content) with Symfony's parser; returns name → value. */
function symfonyYaml(files: Record<string, string>): unknown {
  if (!existsSync(SYMFONY_YAML)) throw new Error(`${SYMFONY_YAML} is missing: apt-get install php-symfony-yaml`);
  const d = tmp();
  for (const [name, content] of Object.entries(files)) writeFileSync(join(d, name), content);
  const script = `require ${JSON.stringify(SYMFONY_YAML)}; $o = []; foreach (array_slice($argv, 1) as $f) $o[basename($f)] = Symfony\\Component\\Yaml\\Yaml::parseFile($f); echo json_encode($o);`;
  return JSON.parse(execFileSync(PHP, ['-r', script, ...Object.keys(files).map((n) => join(d, n))], { encoding: 'utf8' }));
}

/** Runs PHP on `file` and returns its $aliases as JSON. */
function phpAliases(file: string): unknown {
  const lint = execFileSync(PHP, ['-l', file], { encoding: 'utf8' });
  expect(lint).toContain('No syntax errors detected');
  return JSON.parse(execFileSync(PHP, ['-r', 'include $argv[1]; echo json_encode($aliases);', file], { encoding: 'utf8' }));
}

describe('aliasName', () => {
  it.each([
    ['example.com', 'example_com'],
    ['blog.example.com', 'blog_example_com'],
    ['my-site.example.co.uk', 'my-site_example_co_uk'],
    ['a.b-c.com', 'a_b-c_com'],
    ['a-b.c.com', 'a-b_c_com'],
  ])('%s → %s, a name drush 9+ parses as one site name', (domain, name) => {
    expect(aliasName(domain)).toBe(name);
    // consolidation/site-alias SiteAliasName::ALIAS_NAME_REGEX, one part
    expect(name).toMatch(/^[a-zA-Z0-9_-]+$/);
  });
});

describe('siteAliases: which sites, where', () => {
  it('yaml: local sites have no host, remote ones host and user, clusters their first online member', () => {
    const set = gen('yaml');
    expect(set.entries).toEqual([
      { alias: '@local_example_com', domain: 'local.example.com', root: '/var/aegir/platforms/d10', host: null, server: 'master' },
      { alias: '@remote_example_com', domain: 'remote.example.com', root: '/var/aegir/platforms/d7', host: 'web-1.example.net', server: 'web-1' },
      // c-a sorts first but is offline
      { alias: '@shop_example_org', domain: 'shop.example.org', root: '/var/aegir/platforms/d6', host: 'c-b.example.net', server: 'c-b' },
    ]);
    expect(set.files.map((f) => f.name)).toEqual(['local_example_com.site.yml', 'remote_example_com.site.yml', 'shop_example_org.site.yml']);
    expect(Object.fromEntries(set.skipped.map((s) => [s.domain, s.reason]))).toEqual({
      'blog.example.com': 'not a Drupal site (platform wp is wordpress); drush cannot bootstrap it',
      'broken.example.com': 'status failed (only installed and disabled sites get aliases)',
      'early.example.com': 'platform fresh has not been verified yet, so its kind is unknown (spoke platform verify fresh)',
      'gone.example.com': 'status deleting (only installed and disabled sites get aliases)',
      'half.example.com': 'status installing (only installed and disabled sites get aliases)',
      'lost.example.com': 'server new has not reported its host name yet (its agent never connected)',
    });
  });

  it('yaml files parse to one live environment with root, uri and, for remote sites, host and user', () => {
    const set = gen('yaml', { sshUser: 'aegir' });
    const parsed = Object.fromEntries(set.files.map((f) => [f.name, parseYaml(f.content) as unknown]));
    expect(parsed).toEqual({
      'local_example_com.site.yml': { [ALIAS_ENV]: { root: '/var/aegir/platforms/d10', uri: 'http://local.example.com' } },
      'remote_example_com.site.yml': {
        [ALIAS_ENV]: { root: '/var/aegir/platforms/d7', uri: 'http://remote.example.com', host: 'web-1.example.net', user: 'aegir' },
      },
      'shop_example_org.site.yml': { [ALIAS_ENV]: { root: '/var/aegir/platforms/d6', uri: 'http://shop.example.org', host: 'c-b.example.net', user: 'aegir' } },
    });
    // the stdout document: one YAML document, file name → the same content
    expect(parseYaml(set.document)).toEqual(parsed);
    for (const f of set.files) expect(f.content.split('\n')[0]).toContain(GENERATED_MARK);
    // the cluster's choice is explained in its file
    expect(set.files[2]?.content).toContain(
      '# cluster web: reached through c-b, its first online member by name (every member serves the same tree; members: c-a, c-b)',
    );
  });

  it('drushrc: valid PHP whose $aliases are named by domain with remote-host and remote-user', () => {
    const set = gen('drushrc');
    expect(set.files.map((f) => f.name)).toEqual([DRUSHRC_FILE]);
    expect(set.document).toBe(set.files[0]?.content);
    expect(set.entries.map((e) => e.alias)).toEqual(['@local.example.com', '@remote.example.com', '@shop.example.org']);
    const d = tmp();
    writeFileSync(join(d, DRUSHRC_FILE), set.document);
    expect(phpAliases(join(d, DRUSHRC_FILE))).toEqual({
      'local.example.com': { root: '/var/aegir/platforms/d10', uri: 'local.example.com' },
      'remote.example.com': { root: '/var/aegir/platforms/d7', uri: 'remote.example.com', 'remote-host': 'web-1.example.net', 'remote-user': DEFAULT_SSH_USER },
      'shop.example.org': { root: '/var/aegir/platforms/d6', uri: 'shop.example.org', 'remote-host': 'c-b.example.net', 'remote-user': DEFAULT_SSH_USER },
    });
  });

  it('no sites: an empty mapping, and a drushrc file with an empty $aliases', () => {
    const empty = { servers: NS.servers, platforms: NS.platforms, sites: [] };
    const y = gen('yaml', {}, empty);
    expect(y.files).toEqual([]);
    expect(parseYaml(y.document)).toEqual({});
    const d = tmp();
    writeFileSync(join(d, DRUSHRC_FILE), gen('drushrc', {}, empty).document);
    expect(phpAliases(join(d, DRUSHRC_FILE))).toEqual([]);
  });

  it('over TCP (no local server) the one-box server is remote too', () => {
    const set = gen('yaml', { localServer: null });
    expect(set.entries[0]).toMatchObject({ domain: 'local.example.com', host: 'box.example.net', server: 'master' });
    expect(parseYaml(set.files[0]?.content as string)).toEqual({
      live: { root: '/var/aegir/platforms/d10', uri: 'http://local.example.com', host: 'box.example.net', user: 'root' },
    });
  });

  it.each([
    // [members (name, hostname, online), expected server or skip reason, note]
    [
      [
        ['b', 'b.h', true],
        ['a', 'a.h', true],
      ],
      'a',
      'cluster web: reached through a, its first online member by name (every member serves the same tree; members: a, b)',
    ],
    [
      [
        ['b', 'b.h', true],
        ['a', 'a.h', false],
      ],
      'b',
      'cluster web: reached through b, its first online member by name (every member serves the same tree; members: a, b)',
    ],
    [
      [
        ['b', 'b.h', false],
        ['a', '', false],
      ],
      'b',
      'cluster web: reached through b, its first member by name with a known host, as no member was online (members: a, b)',
    ],
    [
      [
        ['b', '', false],
        ['a', '', false],
      ],
      null,
      'no member of cluster web has reported its host name yet (start an agent of the cluster)',
    ],
  ] as [[string, string, boolean][], string | null, string][])('cluster members %j → %s', (members, expected, note) => {
    const ns = {
      servers: [
        ...members.map(([n, h, on]) => agent(n, h, on)),
        cluster(
          'web',
          members.map(([n]) => n),
        ),
      ],
      platforms: [platform('p', 'web', '/srv/p')],
      sites: [site('x.example.com', 'p')],
    };
    const set = gen('yaml', {}, ns);
    if (expected === null) {
      expect(set.entries).toEqual([]);
      expect(set.skipped).toEqual([{ domain: 'x.example.com', reason: note }]);
      return;
    }
    expect(set.entries.map((e) => [e.server, e.host])).toEqual([[expected, `${expected}.h`]]);
    expect(set.files[0]?.content).toContain(`# ${note}\n`);
    // the order members are listed in does not matter
    const again = gen('yaml', {}, { ...ns, servers: [...ns.servers].reverse() });
    expect(again.files).toEqual(set.files);
  });

  it("root is the publish path under the agent's --root prefix", () => {
    const ns = { servers: [agent('w', 'w.h', true, '/tmp/hosts/w')], platforms: [platform('p', 'w', '/var/www/p')], sites: [site('x.example.com', 'p')] };
    expect(gen('yaml', {}, ns).entries[0]?.root).toBe('/tmp/hosts/w/var/www/p');
  });

  it('a host name ssh cannot use is left out with the reason', () => {
    const ns = { servers: [agent('w', '-oProxyCommand=evil')], platforms: [platform('p', 'w', '/srv/p')], sites: [site('x.example.com', 'p')] };
    const set = gen('yaml', {}, ns);
    expect(set.entries).toEqual([]);
    expect(set.skipped[0]?.reason).toBe('server w reported the host name "-oProxyCommand=evil", which ssh cannot use');
  });

  it('is deterministic: the same namespace in any order gives the same bytes', () => {
    const shuffled = { servers: [...NS.servers].reverse(), platforms: [...NS.platforms].reverse(), sites: [...NS.sites].reverse() };
    for (const f of ['yaml', 'drushrc'] as const) expect(gen(f, {}, shuffled)).toEqual(gen(f));
  });
});

describe('escaping', () => {
  const NASTY = [
    `/srv/it's "quoted" \\ back\\slash`,
    '/srv/new\nline\ttab',
    '/srv/php ?> end <?php again $x {$y}',
    '/srv/yaml: # not a comment - [a, b] {c: d} & * ! | > % @ `',
    '/srv/unicode é 中文 \u0085 \u2028 \u009f \u007f',
  ];

  it.each(NASTY)('a path %j survives YAML and PHP exactly', (path) => {
    const ns = { servers: [agent('w', 'w.example.net')], platforms: [platform('p', 'w', path)], sites: [site('x.example.com', 'p')] };
    const y = gen('yaml', {}, ns);
    expect((parseYaml(y.files[0]?.content as string) as { live: { root: string } }).live.root).toBe(path);
    expect((parseYaml(y.document) as Record<string, { live: { root: string } }>)['x_example_com.site.yml']?.live.root).toBe(path);
    const d = tmp();
    writeFileSync(join(d, DRUSHRC_FILE), gen('drushrc', {}, ns).document);
    expect((phpAliases(join(d, DRUSHRC_FILE)) as Record<string, { root: string }>)['x.example.com']?.root).toBe(path);
  });

  it("drush 9+'s own parser (Symfony Yaml) reads every file and the printed document exactly", () => {
    const ns = {
      servers: [agent('w', 'w.example.net'), agent('c1', 'c1.example.net'), cluster('web', ['c1'])],
      platforms: NASTY.map((p, i) => platform(`p${i}`, i % 2 ? 'web' : 'w', p)),
      sites: NASTY.map((_, i) => site(`s${i}.example.com`, `p${i}`)),
    };
    const set = gen('yaml', {}, ns);
    const expected = Object.fromEntries(
      NASTY.map((p, i) => [
        `s${i}_example_com.site.yml`,
        { live: { root: p, uri: `http://s${i}.example.com`, host: i % 2 ? 'c1.example.net' : 'w.example.net', user: 'root' } },
      ]),
    );
    expect(symfonyYaml(Object.fromEntries(set.files.map((f) => [f.name, f.content])))).toEqual(expected);
    expect((symfonyYaml({ 'doc.yml': set.document }) as Record<string, unknown>)['doc.yml']).toEqual(expected);
  });

  it("yamlString escapes what YAML may not carry raw; phpLiteral escapes only \\ and '", () => {
    expect(yamlString('a"b\\c\n')).toBe('"a\\"b\\\\c\\n"');
    expect(yamlString('\u0085\u2028\ufeff\u007f')).toBe('"\\u0085\\u2028\\ufeff\\u007f"');
    expect(phpLiteral(`it's a \\ $x "y"`)).toBe(`'it\\'s a \\\\ $x "y"'`);
  });

  it('ssh user: an account name, never an option', () => {
    for (const ok of ['root', 'aegir', 'deploy_1', 'web.admin', 'a-b']) expect(() => checkSshUser(ok)).not.toThrow();
    for (const bad of ['', '-oProxyCommand=x', '.hidden', 'two words', "o'brien", 'x'.repeat(33), 'a@b']) {
      let caught: unknown;
      try {
        checkSshUser(bad);
      } catch (e) {
        caught = e;
      }
      expect(isSpokeError(caught, 'INVALID_ARGUMENT'), bad).toBe(true);
      expect(() => gen('yaml', { sshUser: bad })).toThrow(/--ssh-user must be an account name/);
    }
  });
});

describe('writeAliasFiles', () => {
  const FILES: AliasFile[] = [
    { name: 'a_example_com.site.yml', content: `# ${GENERATED_MARK}\nlive: {}\n` },
    { name: 'b_example_com.site.yml', content: `# ${GENERATED_MARK}\nlive: {}\n` },
  ];
  const listing = (d: string) => readdirSync(d).sort();
  const refused = (fn: () => unknown): string => {
    try {
      fn();
    } catch (e) {
      if (!isSpokeError(e, 'OUTPUT_NOT_WRITABLE')) throw e;
      expect(e.message).not.toContain('\n');
      return e.message;
    }
    throw new Error('expected OUTPUT_NOT_WRITABLE');
  };

  it('writes every file with mode 0644 whatever the umask, replacing older ones, and leaves no temp file', () => {
    const d = tmp();
    writeFileSync(join(d, 'a_example_com.site.yml'), 'old', { mode: 0o600 });
    const old = process.umask(0o077);
    let written: string[];
    try {
      written = writeAliasFiles(d, FILES);
    } finally {
      process.umask(old);
    }
    expect(written).toEqual(FILES.map((f) => join(d, f.name)));
    expect(listing(d)).toEqual(FILES.map((f) => f.name));
    for (const f of FILES) {
      expect(readFileSync(join(d, f.name), 'utf8')).toBe(f.content);
      expect(statSync(join(d, f.name)).mode & 0o777).toBe(0o644);
    }
  });

  it('a missing directory or a file in its place: OUTPUT_NOT_WRITABLE, nothing created', () => {
    const d = tmp();
    expect(refused(() => writeAliasFiles(join(d, 'nope'), FILES))).toBe(
      `cannot write drush aliases to ${join(d, 'nope')}: no such directory (create it first)`,
    );
    writeFileSync(join(d, 'file'), 'x');
    expect(refused(() => writeAliasFiles(join(d, 'file'), FILES))).toBe(`cannot write drush aliases to ${join(d, 'file')}: it is not a directory`);
    expect(listing(d)).toEqual(['file']);
  });

  it('a target that is a directory or a symlink: refused before any file is written, the link kept', () => {
    const d = tmp();
    mkdirSync(join(d, 'b_example_com.site.yml'));
    expect(refused(() => writeAliasFiles(d, FILES))).toContain(`${join(d, 'b_example_com.site.yml')} exists and is not a regular file`);
    expect(listing(d)).toEqual(['b_example_com.site.yml']);
    const e = tmp();
    writeFileSync(join(e, 'mine.yml'), 'mine');
    symlinkSync(join(e, 'mine.yml'), join(e, 'a_example_com.site.yml'));
    refused(() => writeAliasFiles(e, FILES));
    expect(listing(e)).toEqual(['a_example_com.site.yml', 'mine.yml']);
    expect(lstatSync(join(e, 'a_example_com.site.yml')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(e, 'a_example_com.site.yml'))).toBe(join(e, 'mine.yml'));
    expect(readFileSync(join(e, 'mine.yml'), 'utf8')).toBe('mine');
  });

  it('staleAliasFiles: earlier generated files of sites gone are reported, never removed; hand-made files are not ours', () => {
    const d = tmp();
    writeAliasFiles(d, FILES);
    writeFileSync(join(d, 'gone_example_com.site.yml'), `# drush 9+ site alias @gone_example_com, ${GENERATED_MARK};\nlive: {}\n`);
    writeFileSync(join(d, 'mine.site.yml'), 'live:\n  root: /x\n');
    writeFileSync(join(d, 'notes.txt'), GENERATED_MARK);
    const now = writeAliasFiles(d, FILES.slice(0, 1));
    expect(staleAliasFiles(d, now)).toEqual([join(d, 'b_example_com.site.yml'), join(d, 'gone_example_com.site.yml')]);
    expect(listing(d)).toEqual(['a_example_com.site.yml', 'b_example_com.site.yml', 'gone_example_com.site.yml', 'mine.site.yml', 'notes.txt']);
  });
});
