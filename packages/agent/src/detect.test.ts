import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { detectFpmSocket, poolListens } from './detect.js';

const base = mkdtempSync(join(tmpdir(), 'spoke-detect-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

describe('php-fpm socket detection', () => {
  it('reads listen per pool, expanding $pool and bare ports', () => {
    expect(
      poolListens(
        '; comment\n[global]\n[www]\nuser = www-data\nlisten = /run/php/php8.2-fpm.sock\nlisten.owner = www-data\n[api]\nlisten = /run/php/$pool.sock ; inline\n[tcp]\nlisten = 9001\n',
      ),
    ).toEqual([
      { pool: 'www', listen: '/run/php/php8.2-fpm.sock' },
      { pool: 'api', listen: '/run/php/api.sock' },
      { pool: 'tcp', listen: '127.0.0.1:9001' },
    ]);
  });

  it('prefers the newest PHP, pool www, and a socket that exists; falls back to the run dir', async () => {
    const etc = join(base, 'etc-php');
    const run = join(base, 'run-php');
    mkdirSync(join(etc, '7.4/fpm/pool.d'), { recursive: true });
    mkdirSync(join(etc, '8.2/fpm/pool.d'), { recursive: true });
    mkdirSync(run, { recursive: true });
    writeFileSync(join(etc, '7.4/fpm/pool.d/www.conf'), `[www]\nlisten = ${run}/php7.4-fpm.sock\n`);
    writeFileSync(join(etc, '8.2/fpm/pool.d/a.conf'), `[a]\nlisten = ${run}/a.sock\n`);
    writeFileSync(join(etc, '8.2/fpm/pool.d/www.conf'), `[www]\nlisten = ${run}/php8.2-fpm.sock\n`);
    // nothing running: the newest www pool, marked missing
    expect(await detectFpmSocket({ etcPhp: etc, runPhp: run })).toEqual({
      address: `${run}/php8.2-fpm.sock`,
      source: join(etc, '8.2/fpm/pool.d/www.conf'),
      exists: false,
    });
    // only PHP 7.4 runs: that one
    writeFileSync(join(run, 'php7.4-fpm.sock'), '');
    expect(await detectFpmSocket({ etcPhp: etc, runPhp: run })).toMatchObject({ address: `${run}/php7.4-fpm.sock`, exists: true });
    // no pool files: the newest socket in the run dir
    writeFileSync(join(run, 'php8.3-fpm.sock'), '');
    writeFileSync(join(run, 'php-fpm.sock'), '');
    expect(await detectFpmSocket({ etcPhp: join(base, 'none'), runPhp: run })).toEqual({ address: `${run}/php8.3-fpm.sock`, source: run, exists: true });
    expect(await detectFpmSocket({ etcPhp: join(base, 'none'), runPhp: join(base, 'none') })).toBeNull();
  });
});
