/**
 * The operator API checks a platform's source itself instead of trusting the CLI (issue 16,
 * item 6): AddPlatform sent straight to a real master's socket with an unspecified source kind,
 * or a git URL or ref that git would read as an option, is refused and registers nothing; and a
 * master started again sweeps the staging dirs an interrupted build left (item 10).
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { fromServiceError, silentLogger, wire } from '@spoke/shared';
import { compileMasterOptions } from '../options.js';
import { startMaster } from '../master.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-api-source-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const K = wire.PlatformSourceKind;
const blank = { makefile: '', makefileName: '', makefileDir: '', gitUrl: '', gitRef: '' };

function call<Res>(fn: (cb: (e: ServiceError | null, r?: Res) => void) => void): Promise<Res> {
  return new Promise((ok, ko) => fn((e, r) => (e ? ko(fromServiceError(e)) : ok(r as Res))));
}

describe('AddPlatform over the socket', () => {
  it('refuses source kind 0 and git URLs or refs starting with "-", registering nothing', async () => {
    const opts = compileMasterOptions({ stateDir: join(dir, 'state'), listen: '127.0.0.1:0', root: join(dir, 'root'), buildEnv: {} });
    const master = await startMaster(opts, { log: silentLogger() });
    const api = new wire.OperatorClient(`unix://${opts.socket}`, credentials.createInsecure());
    try {
      master.core.ns.recordEnrollment({ server: 'web', cluster: null, fingerprint: 'fp-web', replace: false });
      const add = (name: string, source: wire.PlatformSource) =>
        call<wire.AddPlatformResponse>((cb) =>
          api.addPlatform(
            { name, path: `/var/aegir/platforms/${name}`, server: 'web', source, live: false, excludes: [], noVerify: true, drift: '' },
            new Metadata(),
            cb,
          ),
        );
      const cases: [string, wire.PlatformSource, string, RegExp][] = [
        [
          'kind0',
          { ...blank, kind: K.PLATFORM_SOURCE_KIND_UNSPECIFIED },
          'INVALID_ARGUMENT',
          /^platform source kind 0 is not one of existing, makefile or git$/,
        ],
        ['nourl', { ...blank, kind: K.PLATFORM_SOURCE_KIND_GIT }, 'INVALID_ARGUMENT', /^a git platform needs a repository URL$/],
        [
          'dashurl',
          { ...blank, kind: K.PLATFORM_SOURCE_KIND_GIT, gitUrl: '--upload-pack=touch /tmp/pwned' },
          'CONFIG_INVALID',
          /^repository "--upload-pack=touch \/tmp\/pwned" must be a URL/,
        ],
        [
          'dashref',
          { ...blank, kind: K.PLATFORM_SOURCE_KIND_GIT, gitUrl: 'https://git.example.com/x.git', gitRef: '--orphan=x' },
          'CONFIG_INVALID',
          /^git platform: git ref "--orphan=x" is not valid$/,
        ],
      ];
      for (const [name, source, code, message] of cases) {
        await expect(add(name, source), name).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
      }
      const list = await call<wire.PlatformList>((cb) => api.listPlatforms({}, new Metadata(), cb));
      expect(list.platforms).toEqual([]);
    } finally {
      api.close();
      await master.stop();
    }
  });
});

describe('master start', () => {
  it('removes the staging dirs an interrupted build left beside a registered platform', async () => {
    const opts = compileMasterOptions({ stateDir: join(dir, 'state2'), listen: '127.0.0.1:0', root: join(dir, 'root2'), buildEnv: {} });
    let master = await startMaster(opts, { log: silentLogger() });
    master.core.ns.recordEnrollment({ server: 'web', cluster: null, fingerprint: 'fp-web2', replace: false });
    await master.core.addPlatform(
      { name: 'd7', path: '/var/aegir/platforms/d7', server: 'web', source: { kind: 'git', url: 'https://git.example.com/d7.git', ref: '' } },
      false,
    );
    await master.stop();
    const parent = join(opts.root, 'var/aegir/platforms');
    mkdirSync(join(parent, '.spoke-build-d7-0123abcd', 'tree', 'sites'), { recursive: true });
    mkdirSync(join(parent, 'unrelated'), { recursive: true });
    master = await startMaster(opts, { log: silentLogger() });
    try {
      expect(readdirSync(parent)).toEqual(['unrelated']);
    } finally {
      await master.stop();
    }
  });
});
