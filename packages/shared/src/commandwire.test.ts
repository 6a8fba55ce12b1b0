import { describe, expect, it } from 'vitest';
import { CommandResult, MasterCommand } from './gen/spoke/v1/agent.js';
import { COMMAND_CAPABILITY, type AgentCommand, type AgentCommandResults, type AgentCommandType } from './commands.js';
import { commandFromWire, commandToWire, resultFromWire, resultToWire } from './commandwire.js';
import { isSpokeError } from './errors.js';

const drift = { changed: ['a'], added: ['b', 'c'], removed: [], total: 3 };
const conflicts = [{ path: 'sites/x', wanted: 'file', userData: 'sites/x/files' }];
const kept = { id: 'q1', atMs: 1_700_000_000_000, dir: '/s/quarantine/q1', files: 2, bytes: 30, paths: ['index.php', 'x.txt'], skipped: 1 };

/** One command of each kind, every field set to something other than its wire default. */
const COMMANDS: { [K in AgentCommandType]: Extract<AgentCommand, { type: K }> } = {
  verifyServer: { type: 'verifyServer', minFreeBytes: 5_000_000_000 },
  ping: { type: 'ping' },
  converge: {
    type: 'converge',
    tree: '/var/www/d7',
    rootHash: 'r1',
    excludes: ['x/'],
    label: 'platform d7',
    webGroupFiles: ['sites/a/settings.php'],
    recheck: true,
    reportDrift: true,
    stream: true,
  },
  treeStatus: { type: 'treeStatus', tree: '/var/www/d7', excludes: ['y'] },
  configurePlatform: { type: 'configurePlatform', platform: 'd7', tree: '/var/www/d7', kind: 'drupal7', pinnedImpl: 'nginx' },
  dbCreate: { type: 'dbCreate', database: 'db1', user: 'u1', password: 'pw', hosts: ['w1', 'w2'] },
  dbDrop: { type: 'dbDrop', database: 'db1', user: 'u1', hosts: ['w1'] },
  dbGrants: { type: 'dbGrants', database: 'db1', user: 'u1', password: 'pw', hosts: ['w3'] },
  dbDump: { type: 'dbDump', database: 'db1' },
  dbRestore: { type: 'dbRestore', database: 'db2' },
  configureSite: {
    type: 'configureSite',
    domain: 'a.example.com',
    platform: 'd7',
    tree: '/var/www/d7',
    kind: 'drupal7',
    aliases: ['b.example.com'],
    redirectAliases: true,
    enabled: true,
    webGroupFiles: ['sites/a.example.com/settings.php'],
    pinnedImpl: 'apache',
    tls: { certPem: 'CERT', keyPem: 'KEY', redirect: true, hsts: true },
    redirectNames: ['old.example.com'],
  },
  removeSite: { type: 'removeSite', domain: 'a.example.com', tree: '/var/www/d7', deleteFiles: true, pinnedImpl: 'nginx' },
  installSite: {
    type: 'installSite',
    domain: 'a.example.com',
    kind: 'drupal8',
    title: 'A',
    adminUser: 'admin',
    adminEmail: 'admin@example.com',
    adminPassword: 'secret',
    tree: '/var/www/d10',
    profile: 'standard',
    locale: 'fr',
  },
  siteTool: { type: 'siteTool', tree: '/var/www/wp', domain: 'a.example.com', kind: 'wordpress', op: 'loginUrl', tokenHash: 'f'.repeat(64), ttlSeconds: 600 },
  siteCron: { type: 'siteCron', tree: '/var/www/d7', domain: 'a.example.com', kind: 'drupal7' },
  siteFilesPack: { type: 'siteFilesPack', tree: '/var/www/d7', domain: 'a.example.com' },
  siteFilesUnpack: { type: 'siteFilesUnpack', tree: '/var/www/d7', domain: 'a.example.com', replace: true },
  forgetPlatform: { type: 'forgetPlatform', platform: 'd7', tree: '/var/www/d7', pinnedImpl: '', removeTree: true },
  acmeChallenge: { type: 'acmeChallenge', token: 'tok_en-1', keyAuthorization: 'tok_en-1.thumb', remove: true },
};

/** One result of each kind, every field set. */
const RESULTS: AgentCommandResults = {
  verifyServer: {
    services: [{ kind: 'http', impl: 'nginx', version: '1.22', binary: '/usr/sbin/nginx' }],
    roots: [{ path: '/var/www', hostPath: '/tmp/r/var/www', writable: true, freeBytes: 10, totalBytes: 20, error: '' }],
    facts: { hostname: 'w1', os: 'Linux 6', arch: 'x64', agentVersion: '0.1.0', roots: ['/var/www'], rootPrefix: '/tmp/r', cpus: 2, memoryBytes: 4096 },
  },
  ping: null,
  converge: {
    inSync: false,
    rootHash: 'r2',
    added: 1,
    changed: 2,
    removed: 3,
    filesFetched: 4,
    bytesFetched: 5,
    filesReused: 6,
    bytesReused: 7,
    ms: 8,
    drift,
    conflicts,
    streamed: true,
    wantedRootHash: 'r1',
    quarantined: kept,
  },
  treeStatus: { committedRootHash: 'r1', actualRootHash: 'r2', exists: true, drift, conflicts, quarantine: [kept] },
  configurePlatform: {
    impl: 'nginx',
    path: '/etc/nginx/x.conf',
    changed: true,
    tested: true,
    reloaded: true,
    fixed: ['sites/default'],
    problems: ['p'],
    reloadWait: 'waited for new nginx workers',
  },
  dbCreate: { hosts: ['w1', 'w2'], added: ['w1', 'w2'], removed: [], siteHost: 'db.example.com', sitePort: 3307 },
  dbDrop: { databaseExisted: true, usersDropped: ['w1'] },
  dbGrants: { hosts: ['w3'], added: ['w3'], removed: ['w1'], siteHost: 'db', sitePort: 3306 },
  dbDump: { bytes: 1234 },
  dbRestore: { bytes: 4321 },
  configureSite: { impl: 'apache', path: '/etc/apache2/a.conf', changed: false, tested: true, reloaded: false, fixed: [], problems: [], reloadWait: '' },
  removeSite: { impl: 'nginx', path: '/etc/nginx/a.conf', removed: true, reloaded: true, deleted: ['sites/a/files'], problems: ['q'], reloadWait: 'w' },
  installSite: { ran: true, reason: '', url: 'http://a.example.com/', profile: 'standard' },
  siteTool: {
    url: 'http://a/user/reset/1',
    user: 'admin',
    pending: [{ module: 'system', update: '10100', description: 'd' }],
    ran: [{ module: 'node', update: 'post_x', description: 'e' }],
  },
  siteCron: { method: 'GET /cron/… via 127.0.0.1:80', status: 204, message: 'ok', ms: 12 },
  siteFilesPack: { bytes: 10, entries: 2, skipped: ['files/s: socket'] },
  siteFilesUnpack: { bytes: 10, entries: 2, replaced: ['files', 'private'] },
  forgetPlatform: { configRemoved: true, reloaded: true, configPath: '/etc/nginx/d7.conf', treeRemoved: false, kept: ['sites/a/files'], problems: [] },
  acmeChallenge: { path: '/var/lib/spoke-agent/acme-challenge/tok_en-1' },
};

const types = Object.keys(COMMANDS) as AgentCommandType[];

/** Through protobuf bytes, as the stream carries it. */
const overTheWire = {
  command: (m: MasterCommand) => MasterCommand.decode(MasterCommand.encode(m).finish()),
  result: (r: CommandResult) => CommandResult.decode(CommandResult.encode(r).finish()),
};

describe('agent command codecs', () => {
  it('every command is a case of the proto, with a capability', () => {
    // (a proto case without a command is a compile error in commandwire.ts)
    for (const t of types) {
      const back = MasterCommand.fromJSON({ id: 'x', [t]: {} });
      expect(back.command?.$case, t).toBe(t);
    }
    expect(Object.keys(COMMAND_CAPABILITY).sort()).toEqual([...types].sort());
  });

  it.each(types)('%s reaches the agent as the master sent it', (t) => {
    const sent = COMMANDS[t];
    const got = commandFromWire(overTheWire.command(commandToWire('id-1', sent)));
    expect(got).toEqual(sent);
  });

  it.each(types)('the result of %s reaches the master as the agent sent it', (t) => {
    const wireResult = overTheWire.result({ id: 'id-1', ok: true, errorCode: '', errorMessage: '', result: resultToWire(t, RESULTS[t]) });
    expect(resultFromWire(t, wireResult)).toEqual(RESULTS[t]);
  });

  it('fills what an optional field left out with the wire default', () => {
    const got = commandFromWire(overTheWire.command(commandToWire('id', { type: 'converge', tree: '/t', rootHash: 'r', excludes: [], label: 'l' })));
    expect(got).toEqual({
      type: 'converge',
      tree: '/t',
      rootHash: 'r',
      excludes: [],
      label: 'l',
      webGroupFiles: [],
      recheck: false,
      reportDrift: false,
      stream: false,
    });
    const tool = commandFromWire(overTheWire.command(commandToWire('id', { type: 'siteTool', tree: '/t', domain: 'a.b', kind: 'drupal8', op: 'updates' })));
    expect(tool).toEqual({ type: 'siteTool', tree: '/t', domain: 'a.b', kind: 'drupal8', op: 'updates', tokenHash: '', ttlSeconds: 0 });
    const { tls: _tls, ...plain } = COMMANDS.configureSite;
    const site = commandFromWire(overTheWire.command(commandToWire('id', plain)));
    expect(site).toEqual({ ...plain, tls: null });
    // a master before capability 14 sends no redirect-only names
    const { redirectNames: _r, ...older } = plain;
    expect(commandFromWire(overTheWire.command(commandToWire('id', older)))).toEqual({ ...older, tls: null, redirectNames: [] });
    // an agent that does not wait after a reload says nothing of it
    const { reloadWait: _w, ...quiet } = RESULTS.configurePlatform;
    const q = resultFromWire(
      'configurePlatform',
      overTheWire.result({ id: 'i', ok: true, errorCode: '', errorMessage: '', result: resultToWire('configurePlatform', quiet) }),
    );
    expect(q.reloadWait).toBe('');
  });

  it('a drift or facts an older agent left out read as empty', () => {
    const r = resultFromWire('treeStatus', {
      id: 'i',
      ok: true,
      errorCode: '',
      errorMessage: '',
      result: { $case: 'treeStatus', value: { committedRootHash: '', actualRootHash: '', exists: false, drift: undefined, conflicts: [], quarantine: [] } },
    });
    expect(r.drift).toEqual({ changed: [], added: [], removed: [], total: 0 });
    // a converge that kept nothing (or an agent below capability 13) has no quarantined entry
    const c = resultFromWire(
      'converge',
      overTheWire.result({
        id: 'i',
        ok: true,
        errorCode: '',
        errorMessage: '',
        result: resultToWire('converge', { ...RESULTS.converge, quarantined: undefined }),
      }),
    );
    expect('quarantined' in c).toBe(false);
    const v = resultFromWire(
      'verifyServer',
      overTheWire.result({
        id: 'i',
        ok: true,
        errorCode: '',
        errorMessage: '',
        result: resultToWire('verifyServer', { services: [], roots: [], facts: null }),
      }),
    );
    expect(v.facts).toBeNull();
  });

  it('a welcome or a command this build does not know is no command', () => {
    expect(
      commandFromWire({ id: 'w', command: { $case: 'welcome', value: { server: 'w1', cluster: '', capabilityVersion: 11, heartbeatIntervalMs: 1000 } } }),
    ).toBeUndefined();
    // a newer master's command: its oneof case is unknown here, so it decodes as none
    expect(commandFromWire(MasterCommand.decode(Buffer.from([0x0a, 0x01, 0x78, 0xfa, 0x07, 0x00])))).toBeUndefined();
  });

  it('refuses a site tool op it does not know', () => {
    const msg: MasterCommand = {
      id: 'i',
      command: { $case: 'siteTool', value: { tree: '/t', domain: 'a.b', kind: 'drupal8', op: 0, tokenHash: '', ttlSeconds: 0 } },
    };
    let err: unknown;
    try {
      commandFromWire(msg);
    } catch (e) {
      err = e;
    }
    expect(isSpokeError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toContain('unknown site tool op 0');
  });

  it('refuses a result for another command', () => {
    const wrong: CommandResult = { id: 'i', ok: true, errorCode: '', errorMessage: '', result: resultToWire('dbDump', { bytes: 1 }) };
    expect(() => resultFromWire('dbRestore', wrong)).toThrow(/agent answered dbRestore with dbDump/);
    expect(() => resultFromWire('ping', { ...wrong, result: undefined })).toThrow(/agent answered ping with nothing/);
  });
});
