/** The agent's command handlers over fake components: domain in, domain out. */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { RootMap, silentLogger } from '@spoke/shared';
import { commandHandlers, type CommandContext, type CommandDeps } from './handlers.js';

const unused = () => {
  throw new Error('not used by this test');
};

function deps(over: Partial<CommandDeps> = {}): CommandDeps {
  return {
    log: silentLogger(),
    roots: ['/var/www'],
    rootMap: new RootMap(''),
    detect: async () => [],
    trees: {} as CommandDeps['trees'],
    web: { configurePlatform: unused, configureSite: unused, removeSite: unused, removePlatform: unused, settingsToWebGroup: unused },
    installer: { install: unused },
    sitePhp: { run: unused },
    cron: { run: unused },
    ...over,
  };
}

const ctx: CommandContext = { progress: () => undefined, upload: unused, download: unused };

describe('command handlers', () => {
  it('ping answers null', async () => {
    expect(await commandHandlers(deps()).ping({}, ctx)).toBeNull();
  });

  it('a database command on an agent without a db section says how to add one', async () => {
    await expect(commandHandlers(deps()).dbCreate({ database: 'd', user: 'u', password: 'p', hosts: ['w1'] }, ctx)).rejects.toMatchObject({
      code: 'DB_NOT_CONFIGURED',
      message: expect.stringContaining('add a db section to its agent.json'),
    });
  });

  it('dbCreate reports the hosts and where web servers reach the database', async () => {
    const db = {
      createSiteDb: async () => ({ database: 'd', user: 'u', hosts: ['10.0.0.1'], added: ['10.0.0.1'], removed: [] }),
      siteAddress: () => ({ host: 'db.example.com', port: 3307 }),
    } as unknown as NonNullable<CommandDeps['db']>;
    expect(await commandHandlers(deps({ db })).dbCreate({ database: 'd', user: 'u', password: 'p', hosts: ['w1'] }, ctx)).toEqual({
      hosts: ['10.0.0.1'],
      added: ['10.0.0.1'],
      removed: [],
      siteHost: 'db.example.com',
      sitePort: 3307,
    });
  });

  it('dbDump uploads the dump on the dump channel and reports its bytes', async () => {
    const channels: string[] = [];
    const db = { dumpSiteDb: async () => Readable.from(['-- dump']) } as unknown as NonNullable<CommandDeps['db']>;
    const r = await commandHandlers(deps({ db })).dbDump({ database: 'd' }, { ...ctx, upload: async (_s, ch) => (channels.push(ch), 7) });
    expect(r).toEqual({ bytes: 7 });
    expect(channels).toEqual(['dump']);
  });

  it('a WordPress login link needs the hash of its token; the site tool gets op, site and a bounded ttl', async () => {
    const h = commandHandlers(deps());
    await expect(
      h.siteTool({ tree: '/var/www/wp', domain: 'a.example.com', kind: 'wordpress', op: 'loginUrl', tokenHash: '', ttlSeconds: 0 }, ctx),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    const calls: unknown[] = [];
    const sitePhp = {
      run: async (...a: unknown[]) => {
        calls.push(a.slice(0, 3));
        return { url: '', user: 'admin', pending: [{ module: 'm', update: '1', description: 'd' }] };
      },
    } as unknown as CommandDeps['sitePhp'];
    const r = await commandHandlers(deps({ sitePhp })).siteTool(
      { tree: '/var/www/wp', domain: 'a.example.com', kind: 'wordpress', op: 'loginUrl', tokenHash: 'a'.repeat(64), ttlSeconds: 999_999 },
      ctx,
    );
    expect(r).toEqual({ url: '', user: 'admin', pending: [{ module: 'm', update: '1', description: 'd' }], ran: [] });
    expect(calls).toEqual([['loginUrl', { tree: '/var/www/wp', domain: 'a.example.com', kind: 'wordpress' }, { token: 'a'.repeat(64), ttl: 86_400 }]]);
  });

  it('converge gives the settings files to the web group after the apply', async () => {
    const order: string[] = [];
    const report = {
      inSync: true,
      rootHash: 'r',
      added: 0,
      changed: 0,
      removed: 0,
      filesFetched: 0,
      bytesFetched: 0,
      filesReused: 0,
      bytesReused: 0,
      ms: 0,
      drift: { changed: [], added: [], removed: [], total: 0 },
      conflicts: [],
      wantedRootHash: '',
    };
    const trees = { converge: async () => (order.push('converge'), report) } as unknown as CommandDeps['trees'];
    const web = {
      ...deps().web,
      settingsToWebGroup: async (_t: string, files: readonly string[]) => (order.push(`group ${files.join(',')}`), { fixed: [], problems: [] }),
    };
    const r = await commandHandlers(deps({ trees, web })).converge(
      { tree: '/var/www/d7', rootHash: 'r', excludes: [], label: 'd7', webGroupFiles: ['sites/a/settings.php'] },
      ctx,
    );
    expect(r).toBe(report);
    expect(order).toEqual(['converge', 'group sites/a/settings.php']);
  });

  it('acmeChallenge puts or removes the challenge file through the certificate store (capability 12)', async () => {
    const calls: unknown[][] = [];
    const tls = { challenge: (token: string, keyAuthorization: string, remove: boolean) => (calls.push([token, keyAuthorization, remove]), `/acme/${token}`) };
    expect(await commandHandlers(deps({ tls })).acmeChallenge({ token: 'tok', keyAuthorization: 'tok.th', remove: false }, ctx)).toEqual({ path: '/acme/tok' });
    expect(calls).toEqual([['tok', 'tok.th', false]]);
    await expect(commandHandlers(deps()).acmeChallenge({ token: 'tok', keyAuthorization: 'tok.th', remove: true }, ctx)).rejects.toMatchObject({
      code: 'INTERNAL',
    });
  });

  it('configureSite hands the certificate to the web config as the master sent it', async () => {
    let got: unknown;
    const web = {
      ...deps().web,
      configureSite: async (c: unknown) => ((got = c), { impl: 'nginx', path: '/x', changed: true, tested: true, reloaded: true, fixed: [], problems: [] }),
    };
    const tls = { certPem: 'C', keyPem: 'K', redirect: true, hsts: false };
    const req = {
      domain: 'a.example.com',
      platform: 'wp',
      tree: '/var/www/wp',
      kind: 'wordpress',
      aliases: [],
      redirectAliases: false,
      enabled: true,
      webGroupFiles: [],
      pinnedImpl: '',
      tls,
    };
    await commandHandlers(deps({ web })).configureSite(req, ctx);
    expect(got).toMatchObject({ tls });
  });
});
