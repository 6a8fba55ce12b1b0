/**
 * Finds the services this host offers by asking the real binaries for their versions:
 * nginx / apache2 (http), php-fpm (php), mariadbd / mysqld (db). Never a shell string.
 */
import { execFile } from 'node:child_process';
import { access, readdir } from 'node:fs/promises';
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

async function findBinary(names: string[], dirs: string[]): Promise<string | null> {
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
