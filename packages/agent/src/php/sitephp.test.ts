import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RootMap, silentLogger } from '@spoke/shared';
import { findBinary } from '../detect.js';
import { lookupUser, SitePhp, toolCode } from './sitephp.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-sitephp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const BIN = ['/usr/bin', '/usr/local/bin'];
const php = await findBinary(['php'], BIN);

function tool(over: Partial<ConstructorParameters<typeof SitePhp>[0]> = {}): SitePhp {
  return new SitePhp({
    rootMap: new RootMap(dir),
    roots: ['/var/www'],
    binDirs: BIN,
    phpCli: '',
    phpUser: 'www-data',
    log: silentLogger(),
    uid: 1000,
    ...over,
  });
}

describe('SitePhp', () => {
  it('finds users in a passwd file', async () => {
    const f = join(dir, 'passwd');
    writeFileSync(f, 'root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nbroken:x:y:z::/:\n');
    expect(await lookupUser('www-data', f)).toEqual({ uid: 33, gid: 33, name: 'www-data', home: '/var/www' });
    expect(await lookupUser('33', f)).toMatchObject({ name: 'www-data' });
    expect(await lookupUser('broken', f)).toBeUndefined();
    expect(await lookupUser('nobody-here', f)).toBeUndefined();
    expect(await lookupUser('x', join(dir, 'none'))).toBeUndefined();
  });

  it('runs as php.user only when the agent is root; a missing one is a config error', async () => {
    const f = join(dir, 'passwd2');
    writeFileSync(f, 'www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n');
    expect(await tool({ uid: 1000, passwdFile: f }).runAs()).toBeNull();
    expect(await tool({ uid: 0, passwdFile: f }).runAs()).toMatchObject({ uid: 33, gid: 33 });
    await expect(tool({ uid: 0, passwdFile: f, phpUser: 'nginx' }).runAs()).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(/^php\.user nginx does not exist on this host/),
    });
  });

  it('the inlined tool is PHP code without its opening tag', () => {
    expect(toolCode('<?php\necho 1;')).toBe('echo 1;');
    expect(toolCode()).toMatch(/^\/\*\*/);
  });

  it('refuses a tree outside the roots, a missing tree and a missing PHP, before running anything', async () => {
    await expect(tool().run('updates', { tree: '/etc', domain: 'a.test', kind: 'drupal7' })).rejects.toMatchObject({ code: 'PATH_OUTSIDE_ROOTS' });
    await expect(tool().run('updates', { tree: '/var/www/none', domain: 'a.test', kind: 'drupal7' })).rejects.toMatchObject({ code: 'PLATFORM_NOT_FOUND' });
    mkdirSync(join(dir, 'var/www/p'), { recursive: true });
    await expect(tool({ phpCli: '/nonexistent/php' }).run('updates', { tree: '/var/www/p', domain: 'a.test', kind: 'drupal7' })).rejects.toMatchObject({
      code: 'PHP_CLI_MISSING',
    });
    await expect(tool({ binDirs: ['/nonexistent'] }).run('updates', { tree: '/var/www/p', domain: 'a.test', kind: 'drupal7' })).rejects.toMatchObject({
      code: 'PHP_CLI_MISSING',
    });
  });

  it.skipIf(!php)('with the real PHP: an op a kind has not is SITE_TOOL_UNSUPPORTED; a tree that is not Drupal fails with what PHP said', async () => {
    mkdirSync(join(dir, 'var/www/p/includes'), { recursive: true });
    await expect(tool().run('update', { tree: '/var/www/p', domain: 'a.test', kind: 'wordpress' })).rejects.toMatchObject({
      code: 'SITE_TOOL_UNSUPPORTED',
      message: 'a.test: no update for a wordpress site',
    });
    const e = (await tool()
      .run('updates', { tree: '/var/www/p', domain: 'a.test', kind: 'drupal7' })
      .catch((x: unknown) => x)) as { code: string; message: string };
    expect(e.code).toBe('SITE_TOOL_FAILED');
    expect(e.message).toMatch(/^a\.test: Error: Failed opening required '.*\/var\/www\/p\/includes\/bootstrap\.inc'/);
  });

  it.skipIf(!php)('Drupal 6 is refused naming its version and the PHP version of the host', async () => {
    mkdirSync(join(dir, 'var/www/d6/modules/system'), { recursive: true });
    writeFileSync(join(dir, 'var/www/d6/modules/system/system.module'), "<?php\ndefine('VERSION', '6.38');\n");
    const e = (await tool()
      .run('install', { tree: '/var/www/d6', domain: 'a.test', kind: 'drupal6' }, { adminPassword: 'x' })
      .catch((x: unknown) => x)) as { code: string; message: string };
    expect(e.code).toBe('SITE_TOOL_UNSUPPORTED');
    expect(e.message).toMatch(
      /^a\.test: Drupal 6\.38 core runs on PHP 5 only and this host runs PHP 8\.\d+\.\d+; move the site to a Drupal 7 or newer platform$/,
    );
  });
});
