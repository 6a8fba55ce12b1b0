/**
 * Finds the services this host offers by asking the real binaries for their versions:
 * nginx / apache2 (http), php-fpm (php), mariadbd / mysqld (db). Never a shell string.
 */
import { execFile } from 'node:child_process';
import { access, readdir, readFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';

/** One detected service. */
export interface DetectedService {
  kind: 'http' | 'db' | 'php';
  impl: string;
  version: string;
  binary: string;
}

/** Where binaries are looked for besides $PATH (services live in sbin, often not on PATH). */
export const SERVICE_BIN_DIRS = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/sbin', '/bin'];

/** The first executable named one of `names` in `dirs`, or null. */
export async function findBinary(names: string[], dirs: string[]): Promise<string | null> {
  for (const dir of dirs) {
    for (const n of names) {
      const p = join(dir, n);
      try {
        await access(p, constants.X_OK);
        return p;
      } catch {
        /* not here */
      }
    }
  }
  return null;
}

function run(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(bin, args, { timeout: 5000, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' } }, (_err, stdout, stderr) =>
      resolve(`${stdout}\n${stderr}`),
    );
  });
}

interface Probe {
  kind: DetectedService['kind'];
  impl: string;
  names: () => Promise<string[]>;
  args: string[];
  re: RegExp;
}

async function phpFpmNames(dirs: string[]): Promise<string[]> {
  const out = new Set<string>(['php-fpm']);
  for (const d of dirs) {
    try {
      for (const f of await readdir(d)) if (/^php-fpm\d+(\.\d+)?$/.test(f)) out.add(f);
    } catch {
      /* missing dir */
    }
  }
  // Newest version first.
  return [...out].sort().reverse();
}

/** Detects services, looking for binaries in `dirs` (config.ts builds the list from $PATH). */
export async function detectServices(dirs: string[]): Promise<DetectedService[]> {
  const probes: Probe[] = [
    { kind: 'http', impl: 'nginx', names: async () => ['nginx'], args: ['-v'], re: /nginx\/([\w.-]+)/ },
    { kind: 'http', impl: 'apache', names: async () => ['apache2', 'httpd'], args: ['-v'], re: /Apache\/([\w.-]+)/ },
    { kind: 'php', impl: 'php-fpm', names: () => phpFpmNames(dirs), args: ['-v'], re: /PHP ([\w.-]+)/ },
    { kind: 'db', impl: 'mariadb', names: async () => ['mariadbd'], args: ['--version'], re: /Ver\s+([\w.-]+?)-MariaDB/i },
    { kind: 'db', impl: 'mysql', names: async () => ['mysqld'], args: ['--version'], re: /Ver\s+([\d.]+)/ },
  ];
  const found = await Promise.all(
    probes.map(async (p): Promise<DetectedService | null> => {
      const bin = await findBinary(await p.names(), dirs);
      if (!bin) return null;
      const out = await run(bin, p.args);
      const m = p.re.exec(out);
      if (p.impl === 'mysql' && /mariadb/i.test(out)) return null; // mysqld is MariaDB's compat link
      return { kind: p.kind, impl: p.impl, version: m?.[1] ?? '', binary: bin };
    }),
  );
  return found.filter((f): f is DetectedService => f !== null);
}

/** Where php-fpm's socket was found. */
export interface FpmSocket {
  /** A socket path, or HOST:PORT. */
  address: string;
  /** Where it came from (a pool file, or the run dir). */
  source: string;
  /** False when it is a socket path that does not exist (php-fpm not running). */
  exists: boolean;
}

function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** `listen` of each pool in a php-fpm pool file (`$pool` expanded; a bare port means 127.0.0.1). */
export function poolListens(text: string): { pool: string; listen: string }[] {
  const out: { pool: string; listen: string }[] = [];
  let pool = '';
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[;#].*$/, '').trim();
    const sec = /^\[([^\]]+)\]$/.exec(line);
    if (sec) {
      pool = sec[1] as string;
      continue;
    }
    const m = /^listen\s*=\s*"?([^"\s]+)"?$/.exec(line);
    if (m && pool) {
      const v = (m[1] as string).replaceAll('$pool', pool);
      out.push({ pool, listen: /^\d+$/.test(v) ? `127.0.0.1:${v}` : v });
    }
  }
  return out;
}

/**
 * Finds php-fpm's socket: the `listen` of the pools in `<etcPhp>/<version>/fpm/pool.d/*.conf`
 * (newest PHP first, pool `www` first, one that exists preferred), else a `php*-fpm.sock` in
 * `<runPhp>`. Null when there is neither.
 */
export async function detectFpmSocket(opts: { etcPhp?: string; runPhp?: string } = {}): Promise<FpmSocket | null> {
  const etcPhp = opts.etcPhp ?? '/etc/php';
  const runPhp = opts.runPhp ?? '/run/php';
  const exists = async (a: string) =>
    !a.startsWith('/') ||
    (await access(a).then(
      () => true,
      () => false,
    ));
  const found: { address: string; source: string }[] = [];
  const versions = (await readdir(etcPhp).catch(() => [] as string[]))
    .filter((v) => /^\d+(\.\d+)*$/.test(v))
    .sort(compareVersions)
    .reverse();
  for (const v of versions) {
    const dir = join(etcPhp, v, 'fpm', 'pool.d');
    const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.conf')).sort();
    const pools: { pool: string; address: string; source: string }[] = [];
    for (const f of files) {
      const text = await readFile(join(dir, f), 'utf8').catch(() => '');
      for (const p of poolListens(text)) pools.push({ pool: p.pool, address: p.listen, source: join(dir, f) });
    }
    pools.sort((a, b) => Number(b.pool === 'www') - Number(a.pool === 'www'));
    found.push(...pools);
  }
  for (const f of found) if (await exists(f.address)) return { address: f.address, source: f.source, exists: true };
  if (found[0]) return { address: found[0].address, source: found[0].source, exists: false };
  const socks = (await readdir(runPhp).catch(() => [] as string[])).filter((f) => /^php[\d.]*-fpm\.sock$/.test(f));
  socks.sort((a, b) => compareVersions(a.replace(/\D+/g, '.').replace(/^\.|\.$/g, ''), b.replace(/\D+/g, '.').replace(/^\.|\.$/g, ''))).reverse();
  if (socks[0]) return { address: join(runPhp, socks[0]), source: runPhp, exists: true };
  return null;
}
