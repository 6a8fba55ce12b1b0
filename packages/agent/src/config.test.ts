import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isSpokeError } from '@spoke/shared';
import { expectCode } from '@spoke/shared/testkit';
import { compileAgentOptions, parseWebSettings, type AgentConfigFile } from './config.js';

describe('agent.json http and php sections', () => {
  it('defaults: detect the web server, listen on 80, group www-data, detect php-fpm', () => {
    expect(parseWebSettings({})).toEqual({
      http: {
        impl: '',
        confDir: '',
        listen: ['80'],
        testCommand: null,
        reloadCommand: null,
        webGroup: 'www-data',
        templatesDir: '',
        httpsListen: ['443'],
        acmeDir: '',
        configured: false,
      },
      fpmSocket: '',
      phpCli: '',
      phpUser: 'www-data',
    });
  });

  it('takes every setting', () => {
    const r = parseWebSettings({
      http: {
        impl: 'nginx',
        confDir: '/srv/nginx/spoke.d',
        listen: '127.0.0.1:8080',
        testCommand: ['nginx', '-t', '-p', '/srv/nginx', '-c', '/srv/nginx/nginx.conf'],
        reloadCommand: ['systemctl', 'reload', 'nginx'],
        webGroup: 'nginx',
        templatesDir: '/etc/spoke/templates',
        httpsListen: ['127.0.0.1:8443', '[::1]:8443'],
        acmeDir: '/srv/acme',
      },
      php: { fpmSocket: '127.0.0.1:9000', cli: '/usr/bin/php8.2', user: 'web' },
    });
    expect(r.phpCli).toBe('/usr/bin/php8.2');
    expect(r.phpUser).toBe('web');
    expect(r.http).toMatchObject({ impl: 'nginx', listen: ['127.0.0.1:8080'], reloadCommand: ['systemctl', 'reload', 'nginx'], configured: true });
    expect(r.http).toMatchObject({ httpsListen: ['127.0.0.1:8443', '[::1]:8443'], acmeDir: '/srv/acme' });
    expect(parseWebSettings({ http: { httpsListen: '8443' } }).http.httpsListen).toEqual(['8443']);
    expect(r.fpmSocket).toBe('127.0.0.1:9000');
    expect(parseWebSettings({ http: {} }).http.configured).toBe(true);
  });

  it('deploy/examples/agent.json is valid', () => {
    const example = JSON.parse(readFileSync(join(import.meta.dirname, '../../../deploy/examples/agent.json'), 'utf8')) as AgentConfigFile;
    expect(parseWebSettings(example).http).toMatchObject({ impl: 'nginx', listen: ['80'], webGroup: 'www-data', configured: true });
  });

  it.each([
    [{ http: { impl: 'lighttpd' } }, /http\.impl must be nginx, apache or none/],
    [{ http: { confdir: '/x' } }, /http\.confdir is not a known setting/],
    [{ http: { confDir: 'relative' } }, /http\.confDir is not valid/],
    [{ http: { confDir: '/etc/nginx/a b' } }, /http\.confDir is not valid/],
    [{ http: { listen: [] } }, /http\.listen must be/],
    [{ http: { listen: ['80; evil'] } }, /http\.listen is not valid/],
    [{ http: { httpsListen: [] } }, /http\.httpsListen must be/],
    [{ http: { httpsListen: ['443 ssl'] } }, /http\.httpsListen is not valid/],
    [{ http: { acmeDir: 'relative' } }, /http\.acmeDir is not valid/],
    [{ http: { testCommand: 'nginx -t' } }, /http\.testCommand must be a non-empty array/],
    [{ http: { reloadCommand: [] } }, /http\.reloadCommand must be a non-empty array/],
    [{ http: { webGroup: 'www data' } }, /http\.webGroup is not a group name/],
    [{ http: [] }, /http must be an object/],
    [{ php: { fpmSocket: 'unix:/run/php.sock' } }, /php\.fpmSocket is not valid/],
    [{ php: { socket: '/run/php.sock' } }, /php\.socket is not a known setting/],
    [{ php: { cli: 'php' } }, /php\.cli is not valid/],
    [{ php: { user: 'www data' } }, /php\.user is not a user name/],
  ])('refuses %j', (cfg, re) => {
    expect(expectCode(() => parseWebSettings(cfg as Pick<AgentConfigFile, 'http' | 'php'>), 'CONFIG_INVALID').message).toMatch(re);
  });
});

describe('compileAgentOptions: agent.json and the environment by schema', () => {
  function stateDir(cfg: unknown): string {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-agentcfg-'));
    writeFileSync(join(dir, 'agent.json'), JSON.stringify(cfg));
    writeFileSync(join(dir, 'agent.crt'), '');
    writeFileSync(join(dir, 'agent.key'), '');
    return dir;
  }
  const good = { master: '127.0.0.1:7443', server: 'w1' };
  const compileRefusal = (cfg: unknown, env: Record<string, string> = {}): string => {
    const dir = stateDir(cfg);
    try {
      compileAgentOptions({ stateDir: dir }, env);
    } catch (e) {
      if (isSpokeError(e, 'CONFIG_INVALID')) return e.message;
      throw e;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return 'accepted';
  };

  it('takes the environment settings, and their defaults when unset', () => {
    const dir = stateDir(good);
    try {
      expect(compileAgentOptions({ stateDir: dir }, {})).toMatchObject({
        backoffInitialMs: 500,
        backoffMaxMs: 15_000,
        driftIntervalMs: 60_000,
        logLevel: 'info',
      });
      const o = compileAgentOptions(
        { stateDir: dir },
        { SPOKE_BACKOFF_MAX_MS: '2000', SPOKE_DRIFT_INTERVAL_MS: '3600000', SPOKE_FETCH_BATCH: '3', SPOKE_LOG_LEVEL: 'debug' },
      );
      expect(o).toMatchObject({ backoffMaxMs: 2000, driftIntervalMs: 3_600_000, fetchBatch: 3, logLevel: 'debug' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [{ SPOKE_BACKOFF_MAX_MS: 'soon' }, 'SPOKE_BACKOFF_MAX_MS must be a whole number of at least 1 (got "soon")'],
    [{ SPOKE_DRIFT_INTERVAL_MS: '0' }, 'SPOKE_DRIFT_INTERVAL_MS must be a whole number of at least 1 (got "0")'],
    [{ SPOKE_LOG_LEVEL: 'verbose' }, 'SPOKE_LOG_LEVEL must be one of'],
  ])('refuses a bad environment setting %j instead of using its default', (env, msg) => {
    expect(compileRefusal(good, env)).toContain(msg);
  });

  it.each([
    [{ server: 'w1' }, 'agent.json: master is missing'],
    [{ ...good, roots: '/var/www' }, 'agent.json: roots must be an array'],
    [{ ...good, cluster: 7 }, 'agent.json: cluster must be a string'],
    [{ ...good, http: { listen: '80', impl: 'caddy' } }, 'agent.json: http.impl must be nginx, apache or none (got "caddy")'],
    [{ ...good, php: { fpm: '/run/php.sock' } }, 'agent.json: php.fpm is not a known setting (known: fpmSocket, cli, user)'],
    [{ ...good, db: { port: 'x' } }, 'agent.json: db.port must be a port number 1-65535'],
  ])('refuses agent.json %j with the field named', (cfg, msg) => {
    expect(compileRefusal(cfg)).toBe(msg);
  });
});
