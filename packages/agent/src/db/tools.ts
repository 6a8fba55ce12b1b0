/**
 * The server's own client tools (mariadb-dump / mysqldump, mariadb / mysql) run as child
 * processes with an argument vector, never a shell string. The admin credentials reach them in
 * a temporary option file (mode 0600 in a 0700 directory), never on the command line.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fail } from '@spoke/shared';
import type { DbSettings } from './settings.js';

/** Client programs by role, in order of preference per impl. */
const PROGRAMS = {
  dump: { mariadb: ['mariadb-dump', 'mysqldump'], mysql: ['mysqldump', 'mariadb-dump'] },
  client: { mariadb: ['mariadb', 'mysql'], mysql: ['mysql', 'mariadb'] },
} as const;

/**
 * Finds the dump or client program in `binDirs`.
 * @throws SpokeError DB_CLIENT_MISSING
 */
export function findProgram(role: 'dump' | 'client', impl: DbSettings['impl'], binDirs: string[]): string {
  const names = PROGRAMS[role][impl];
  for (const name of names) {
    for (const dir of binDirs) {
      const p = join(dir, name);
      try {
        accessSync(p, constants.X_OK);
        return p;
      } catch {
        // not here
      }
    }
  }
  const pkg = impl === 'mysql' ? 'mysql-client' : 'mariadb-client';
  throw fail('DB_CLIENT_MISSING', `none of ${names.join(', ')} found in ${binDirs.join(':')}; install ${pkg}`);
}

/** A value for an option file: double-quoted, with `\` and `"` escaped. */
export function optionValue(v: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) throw fail('CONFIG_INVALID', 'a db setting contains a control character or newline');
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** The `[client]` option file text for the admin account. */
export function clientOptions(s: DbSettings): string {
  const lines = ['[client]', `user=${optionValue(s.adminUser)}`];
  if (s.adminPassword) lines.push(`password=${optionValue(s.adminPassword)}`);
  if (s.socket) lines.push(`socket=${optionValue(s.socket)}`, 'protocol=socket');
  else lines.push(`host=${optionValue(s.host)}`, `port=${s.port}`, 'protocol=tcp');
  return `${lines.join('\n')}\n`;
}

/** A private scratch dir (0700) holding the option file; `remove` deletes it. */
export interface Scratch {
  dir: string;
  optionFile: string;
  remove(): Promise<void>;
}

/** Creates the scratch dir under `tmpDir` and writes the option file into it (0600). */
export async function makeScratch(tmpDir: string, s: DbSettings): Promise<Scratch> {
  await mkdir(tmpDir, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(tmpDir, 'db-'));
  const optionFile = join(dir, 'client.cnf');
  await writeFile(optionFile, clientOptions(s), { mode: 0o600 });
  return { dir, optionFile, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Arguments that make a tool read only our option file: `--defaults-file` (not
 * `--defaults-extra-file`, which would let /etc/mysql or root's ~/.my.cnf override the account).
 */
export function defaultsArgs(optionFile: string): string[] {
  return [`--defaults-file=${optionFile}`];
}

/** The dump arguments after the option file (the database name follows). */
export const DUMP_ARGS = ['--single-transaction', '--routines', '--triggers', '--hex-blob', '--default-character-set=utf8mb4'];

/** The restore client arguments after the option file (the database name follows). */
export const RESTORE_ARGS = ['--batch', '--default-character-set=utf8mb4', '--one-database'];

/** Keeps the last few KiB of a child's stderr for the error message. */
export class StderrTail {
  private text = '';
  push(d: Buffer): void {
    this.text = (this.text + d.toString('utf8')).slice(-4096);
  }
  /** The last non-empty line. */
  lastLine(): string {
    const lines = this.text
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    return lines[lines.length - 1] ?? '';
  }
}

/**
 * Spawns a tool with an argument vector (no shell) and a minimal environment (no HOME, no
 * MYSQL_PWD, so nothing but our option file configures it).
 */
export function spawnTool(program: string, args: string[]): ChildProcessWithoutNullStreams {
  return spawn(program, args, { stdio: ['pipe', 'pipe', 'pipe'], shell: false, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' } });
}
