/**
 * Helpers shared by the agent's unit tests (not exported from the package).
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isSpokeError } from '@spoke/shared';

/** The SpokeError code `fn` throws, 'no error' when it returns; other errors are rethrown. */
export function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isSpokeError(e)) return e.code;
    throw e;
  }
  return 'no error';
}

/** A script in `dir` that appends its name to `dir`/ran.log, prints `out` on stderr and exits with `exitCode`. */
export function recordingScript(dir: string, name: string, exitCode: number, out = ''): string {
  const p = join(dir, `${name}.sh`);
  writeFileSync(p, `#!/bin/sh\necho ${name} >> ${join(dir, 'ran.log')}\nprintf '%s\\n' '${out}' >&2\nexit ${exitCode}\n`);
  chmodSync(p, 0o755);
  return p;
}

/** The names of the recording scripts that ran in `dir`, in order. */
export function scriptsRan(dir: string): string[] {
  return existsSync(join(dir, 'ran.log')) ? readFileSync(join(dir, 'ran.log'), 'utf8').trim().split('\n') : [];
}

export const NGINX_BIN = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => existsSync(p));

/**
 * `nginx -t` on a private config with prefix `prefix`: the http block includes `prefix`/conf.d/*.conf,
 * where `confs` (file name → text) are written first.
 */
export function nginxTest(prefix: string, confs: Record<string, string>): SpawnSyncReturns<string> {
  if (!NGINX_BIN) throw new Error('nginx is not installed: apt-get install nginx-light');
  const p = prefix;
  mkdirSync(join(p, 'conf.d'), { recursive: true });
  for (const [name, text] of Object.entries(confs)) writeFileSync(join(p, 'conf.d', name), text);
  writeFileSync(
    join(p, 'nginx.conf'),
    `pid ${p}/nginx.pid;\nerror_log ${p}/error.log;\nevents {}\nhttp {\n  access_log off;\n  client_body_temp_path ${p}/tmp;\n  fastcgi_temp_path ${p}/tmp;\n  proxy_temp_path ${p}/tmp;\n  uwsgi_temp_path ${p}/tmp;\n  scgi_temp_path ${p}/tmp;\n  include ${p}/conf.d/*.conf;\n}\n`,
  );
  return spawnSync(NGINX_BIN, ['-t', '-p', p, '-c', join(p, 'nginx.conf'), '-e', join(p, 'error.log')], { encoding: 'utf8' });
}
