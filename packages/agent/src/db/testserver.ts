/**
 * A private MariaDB server for tests: its own data dir, socket and loopback port, started from
 * Debian's mariadb-server binaries (`mariadb-install-db`, `mariadbd`), stopped and removed by
 * `stop()`. Runs as root (CI and the dev boxes are root), hence `--user=root`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';

const run = promisify(execFile);

/** Where Debian puts the server and its installer. */
export const MARIADBD = ['/usr/sbin/mariadbd', '/usr/sbin/mysqld'].find((p) => existsSync(p)) ?? '/usr/sbin/mariadbd';
export const INSTALL_DB = ['/usr/bin/mariadb-install-db', '/usr/bin/mysql_install_db'].find((p) => existsSync(p)) ?? '/usr/bin/mariadb-install-db';

/** A running private server. */
export interface PrivateMariaDb {
  dir: string;
  socket: string;
  port: number;
  /** root@localhost and root@127.0.0.1 have this password. */
  rootPassword: string;
  /** Log of the server (for failure messages). */
  log(): string;
  /** Opens a connection (root unless given another account) over TCP 127.0.0.1. */
  connect(user?: string, password?: string, database?: string): Promise<mysql.Connection>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Installs a data dir under `dir` and starts mariadbd on a free loopback port with
 * --skip-name-resolve (so accounts match by address), then sets the root password.
 * Fails with the package name when the binaries are missing.
 */
export async function startMariaDb(dir: string, rootPassword: string): Promise<PrivateMariaDb> {
  if (!existsSync(MARIADBD) || !existsSync(INSTALL_DB)) {
    throw new Error(`${MARIADBD} or ${INSTALL_DB} missing: apt-get install mariadb-server mariadb-client`);
  }
  const data = join(dir, 'data');
  const socket = join(dir, 'mysqld.sock');
  mkdirSync(dir, { recursive: true });
  await run(INSTALL_DB, ['--no-defaults', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db', '--user=root'], {
    timeout: 120_000,
  });
  const port = await freePort();
  let out = '';
  const proc: ChildProcess = spawn(
    MARIADBD,
    [
      '--no-defaults',
      `--datadir=${data}`,
      `--socket=${socket}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--pid-file=${join(dir, 'mariadbd.pid')}`,
      '--skip-name-resolve',
      '--skip-log-bin',
      '--innodb-buffer-pool-size=32M',
      '--user=root',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const connect = (user = 'root', password = rootPassword, database?: string) =>
    mysql.createConnection({ host: '127.0.0.1', port, user, password, database, connectTimeout: 5000 });
  try {
    const end = Date.now() + 60_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`mariadbd exited: ${out}`);
      try {
        const c = await mysql.createConnection({ socketPath: socket, user: 'root', password: '' });
        for (const host of ['localhost', '127.0.0.1']) await c.query('ALTER USER ?@? IDENTIFIED BY ?', ['root', host, rootPassword]);
        await c.end();
        break;
      } catch (e) {
        if (Date.now() > end) throw new Error(`mariadbd did not accept connections: ${(e as Error).message}\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { dir, socket, port, rootPassword, log: () => out, connect, stop };
}
