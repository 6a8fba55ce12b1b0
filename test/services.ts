/**
 * Real Debian services for end-to-end tests, each started privately on loopback inside a scratch
 * dir: nginx (its own prefix, config and port), php-fpm (its own pool and socket), and Debian's
 * WordPress tree as a test platform. Requests to nginx go over node:http so the Host header can be
 * set (fetch cannot). The agent-side glue (enrolling an agent with these services in its
 * agent.json) is here too. MariaDB: packages/agent/src/db/testserver.ts.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import type { HttpSettings } from '@spoke/agent/testkit';
import { cleanup, type AgentUnderTest, type MasterUnderTest, until } from './harness.js';

export const NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => existsSync(p));
/** The newest php-fpm binary Debian installed (php-fpm8.2 …), if any. */
export const PHP_FPM = readdirSync('/usr/sbin')
  .filter((f) => /^php-fpm[\d.]+$/.test(f))
  .sort()
  .reverse()
  .map((f) => join('/usr/sbin', f))[0];
export const WORDPRESS = '/usr/share/wordpress';
export const ROOT_USER = process.getuid?.() === 0;

/** The name of a group id (from /etc/group; the number itself when there is none). */
export function groupName(gid: number): string {
  const line = readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((l) => l.split(':')[2] === String(gid));
  return line?.split(':')[0] ?? String(gid);
}

/** The id of a group name (from /etc/group; NaN when there is none). */
export function gidOf(name: string): number {
  const line = readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((l) => l.split(':')[0] === name);
  return Number(line?.split(':')[2]);
}

/** The group nginx and php-fpm run as: www-data when we are root, else our own group. */
export const WEB_GROUP = ROOT_USER ? 'www-data' : groupName(process.getgid?.() ?? 0);

/** A loopback TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** Stops a child process with SIGTERM and waits until it is gone. */
export async function stopProcess(p: ChildProcess | undefined): Promise<void> {
  if (p && p.exitCode === null && p.signalCode === null) {
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await gone;
  }
}

/** What an HTTP GET returned. */
export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A GET to 127.0.0.1:`port` with the given Host header. */
export function httpGet(port: number, host: string, path = '/', timeoutMs = 20_000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { Host: host }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** A private nginx: prefix `prefix`, vhost configs included from `confDir`, one loopback port. */
export interface PrivateNginx {
  prefix: string;
  confDir: string;
  port: number;
  pidFile: string;
  /** The prefix, config and error log options every nginx command against it needs. */
  args: string[];
  testCommand: string[];
  reloadCommand: string[];
  /** What nginx wrote to stdout and stderr. */
  out(): string;
  /** A GET with the given Host header. */
  get(host: string, path?: string): Promise<Reply>;
  /** nginx applies a reload asynchronously: waits until `host` answers as `ok` wants. */
  served(what: string, host: string, path: string, ok: (r: Reply) => boolean): Promise<Reply>;
  /** The `http` section of agent.json that drives this nginx. */
  agentHttp(templatesDir: string, webGroup?: string): Omit<HttpSettings, 'configured'>;
  stop(): Promise<void>;
}

export interface NginxOptions {
  /** Named in the start-up wait ("nginx of w1 to start"). */
  name?: string;
  /** A default server answering every name no vhost claims with this text/plain body. */
  defaultServerBody?: string;
  /** Timeout of each GET (ms). */
  getTimeoutMs?: number;
}

/** Starts nginx with prefix `prefix` (created) and waits until it runs; as www-data when root. */
export async function startNginx(prefix: string, opts: NginxOptions = {}): Promise<PrivateNginx> {
  const bin = NGINX;
  if (!bin) throw new Error('nginx is not installed: apt-get install nginx-light (scripts/test-all.sh does)');
  const port = await freePort();
  const confDir = join(prefix, 'spoke.d');
  const pidFile = join(prefix, 'nginx.pid');
  const args = ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')];
  mkdirSync(confDir, { recursive: true });
  mkdirSync(join(prefix, 'tmp'), { recursive: true });
  const mime = existsSync('/etc/nginx/mime.types') ? 'include /etc/nginx/mime.types;' : '';
  const body = opts.defaultServerBody?.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  writeFileSync(
    join(prefix, 'nginx.conf'),
    [
      ROOT_USER ? 'user www-data www-data;' : '',
      'worker_processes 1;',
      `pid ${pidFile};`,
      `error_log ${prefix}/error.log;`,
      'events { worker_connections 64; }',
      'http {',
      `  ${mime}`,
      '  default_type application/octet-stream;',
      `  access_log ${prefix}/access.log;`,
      ...['client_body', 'fastcgi', 'proxy', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${prefix}/tmp/${t};`),
      ...(body === undefined ? [] : [`  server { listen 127.0.0.1:${port} default_server; server_name _; default_type text/plain; return 200 "${body}"; }`]),
      `  include ${confDir}/*.conf;`,
      '}',
      '',
    ].join('\n'),
  );
  let out = '';
  const p = spawn(bin, [...args, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  await until(
    `nginx${opts.name ? ` of ${opts.name}` : ''} to start`,
    () => existsSync(pidFile) || (p.exitCode != null ? Promise.reject(new Error(out)) : false),
  );
  const get = (host: string, path = '/') => httpGet(port, host, path, opts.getTimeoutMs);
  return {
    prefix,
    confDir,
    port,
    pidFile,
    args,
    testCommand: [bin, '-t', ...args],
    reloadCommand: [bin, '-s', 'reload', ...args],
    out: () => out,
    get,
    served: async (what, host, path, ok) => {
      let last: Reply | undefined;
      try {
        return await until(what, async () => {
          const r = await get(host, path).catch(() => undefined);
          last = r ?? last;
          return r && ok(r) ? r : undefined;
        });
      } catch (e) {
        throw new Error(`${(e as Error).message} (last: ${last?.status} ${last?.body.slice(0, 200)})`);
      }
    },
    agentHttp: (templatesDir, webGroup = WEB_GROUP) => ({
      impl: 'nginx',
      confDir,
      listen: [`127.0.0.1:${port}`],
      testCommand: [bin, '-t', ...args],
      reloadCommand: [bin, '-s', 'reload', ...args],
      webGroup,
      templatesDir,
    }),
    stop: () => stopProcess(p),
  };
}

/** A private php-fpm pool listening on a unix socket. */
export interface PrivatePhpFpm {
  socket: string;
  /** php-fpm's own log (errors and, with catchWorkersOutput, the workers' stderr). */
  log(): string;
  stop(): Promise<void>;
}

export interface PhpFpmOptions {
  /** pm.max_children of the static pool (1 unless given). */
  children?: number;
  /** catch_workers_output = yes. */
  catchWorkersOutput?: boolean;
  /** Loads mysqlnd and mysqli (php-fpm runs with -n: no php.ini, no conf.d) and hides errors from pages. */
  mysqli?: boolean;
  /** Loads what Drupal 7 and 8+ need (mysqlnd and DRUPAL_EXTENSIONS; packages php-mysql, php-gd, php-xml, php-mbstring). */
  drupal?: boolean;
  /** More shared extensions to load, in order (e.g. DRUPAL_EXTENSIONS). */
  extensions?: string[];
  /** The MariaDB socket `localhost` means to mysqli and pdo_mysql (what Debian's php.ini defaults do for /run/mysqld/mysqld.sock). */
  mysqlSocket?: string;
}

/** What Drupal 7/8+ needs of PHP beyond what is built in (after mysqlnd). */
export const DRUPAL_EXTENSIONS = [
  'pdo',
  'pdo_mysql',
  'ctype',
  'dom',
  'gd',
  'mbstring',
  'simplexml',
  'tokenizer',
  'xml',
  'xmlreader',
  'xmlwriter',
  'fileinfo',
  'iconv',
  'posix',
];

/** Where the php-fpm of `dir` listens (also when it is not installed and never started). */
export const phpFpmSocket = (dir: string) => join(dir, 'php-fpm.sock');

/** Starts php-fpm with its config, pid, log and socket in `dir`; as www-data when root. */
export async function startPhpFpm(dir: string, opts: PhpFpmOptions = {}): Promise<PrivatePhpFpm> {
  const bin = PHP_FPM;
  if (!bin) throw new Error(`php-fpm is not installed: apt-get install php-fpm${opts.mysqli ? ' php-mysql' : ''}`);
  const socket = phpFpmSocket(dir);
  const logFile = join(dir, 'php-fpm.log');
  writeFileSync(
    join(dir, 'php-fpm.conf'),
    [
      '[global]',
      `pid = ${dir}/php-fpm.pid`,
      `error_log = ${logFile}`,
      'daemonize = no',
      '[www]',
      ...(ROOT_USER ? ['user = www-data', 'group = www-data', 'listen.owner = www-data', 'listen.group = www-data'] : []),
      `listen = ${socket}`,
      'listen.mode = 0660',
      'pm = static',
      `pm.max_children = ${opts.children ?? 1}`,
      ...(opts.catchWorkersOutput ? ['catch_workers_output = yes'] : []),
      '',
    ].join('\n'),
  );
  const names = [
    ...(opts.mysqli || opts.drupal ? ['mysqlnd'] : []),
    ...(opts.mysqli ? ['mysqli'] : []),
    ...(opts.drupal ? DRUPAL_EXTENSIONS : []),
    ...(opts.extensions ?? []),
  ];
  const ext = [...new Set(names)].flatMap((e) => ['-d', `extension=${e}`]);
  if (names.length) ext.push('-d', 'display_errors=0', '-d', 'memory_limit=256M');
  if (opts.mysqlSocket) ext.push('-d', `mysqli.default_socket=${opts.mysqlSocket}`, '-d', `pdo_mysql.default_socket=${opts.mysqlSocket}`);
  const p = spawn(bin, ['-n', ...ext, '-F', '-y', join(dir, 'php-fpm.conf')], { stdio: 'ignore' });
  await until('php-fpm to listen', () => existsSync(socket));
  return {
    socket,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    stop: () => stopProcess(p),
  };
}

export interface WordPressOptions {
  /** The test theme's directory name. @default spoke-test */
  theme?: string;
  /** The home page lists the posts' titles (<h2 class="post">) below the site title. */
  listPosts?: boolean;
}

/**
 * Copies Debian's WordPress tree to `target` (its parent created) with the test's own minimal
 * theme, whatever theme packages the machine has: the home page must show the title
 * (<h1 id="site-title">). The copy's wp-content is made a real directory (never written through a
 * link into the packages' dirs), the themes the packages put there are left out (with
 * wordpress-theme-twentytwentythree installed, a Recommends of wordpress, WordPress picked that
 * block theme and its markup), and a must-use plugin makes the test theme WordPress's default.
 */
export function prepareWordPress(target: string, opts: WordPressOptions = {}, source = WORDPRESS): void {
  mkdirSync(dirname(target), { recursive: true });
  execFileSync('cp', ['-a', source, target]);
  const content = join(target, 'wp-content');
  if (lstatSync(content).isSymbolicLink()) {
    rmSync(content);
    execFileSync('cp', ['-aL', join(source, 'wp-content'), content]);
  }
  rmSync(join(content, 'themes'), { recursive: true, force: true });
  const name = opts.theme ?? 'spoke-test';
  const theme = join(content, 'themes', name);
  mkdirSync(theme, { recursive: true });
  mkdirSync(join(content, 'mu-plugins'), { recursive: true });
  writeFileSync(join(content, 'mu-plugins', 'spoke-test-theme.php'), `<?php\ndefine('WP_DEFAULT_THEME', '${name}');\n`);
  writeFileSync(join(theme, 'style.css'), '/*\nTheme Name: Spoke Test\n*/\n');
  const posts = opts.listPosts ? '<?php while (have_posts()) { the_post(); echo "<h2 class=\\"post\\">" . get_the_title() . "</h2>"; } ?>' : '';
  writeFileSync(
    join(theme, 'index.php'),
    `<html><head><title><?php bloginfo("name"); ?></title></head><body><h1 id="site-title"><?php bloginfo("name"); ?></h1>${posts}</body></html>\n`,
  );
}

/**
 * Tears a site test stack down: the agents and the master killed, then the services stopped
 * (each may be undefined when the set-up failed half-way), then the scratch dir removed.
 */
export async function stopStack(o: {
  agents: ReadonlyArray<{ daemon?: { stop(signal: NodeJS.Signals): Promise<unknown> } }>;
  master: { daemon?: { stop(signal: NodeJS.Signals): Promise<unknown> } };
  services: ReadonlyArray<{ stop(): Promise<unknown> } | undefined>;
  dir: string;
}): Promise<void> {
  for (const a of o.agents) await a.daemon?.stop('SIGKILL');
  await o.master.daemon?.stop('SIGKILL');
  for (const svc of o.services) await svc?.stop();
  cleanup(o.dir);
}

/**
 * agent.json settings of one host that is both web and db server: our nginx and php-fpm, and a
 * private MariaDB reached over 127.0.0.1 (the site accounts granted for 127.0.0.1).
 */
export function webAndDbSettings(o: {
  nginx: PrivateNginx;
  templates: string;
  fpm: PrivatePhpFpm;
  db: { port: number };
  rootPassword: string;
  server: string;
}): Record<string, unknown> {
  return {
    http: o.nginx.agentHttp(o.templates),
    php: { fpmSocket: o.fpm.socket },
    db: { host: '127.0.0.1', port: o.db.port, adminUser: 'root', adminPassword: o.rootPassword, grantHosts: { [o.server]: ['127.0.0.1'] } },
  };
}

/**
 * Enrolls `agent` with `master` (`tokenArgs`: e.g. `--cluster web`), merges `settings` (http,
 * php, db …) into its agent.json (kept 0600), runs it and waits until the master sees it online.
 */
export async function enrollAgent(master: MasterUnderTest, agent: AgentUnderTest, settings: Record<string, unknown>, tokenArgs: string[] = []): Promise<void> {
  const t = await master.cli('server', 'token', agent.name, ...tokenArgs);
  const r = await agent.enroll(master.listen, t.stdout.trim());
  if (r.code !== 0) throw new Error(`enrolling ${agent.name} exited ${r.code}: ${r.stderr}`);
  const cfgFile = join(agent.stateDir, 'agent.json');
  const cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  writeFileSync(cfgFile, JSON.stringify({ ...cfg, ...settings }, null, 2));
  chmodSync(cfgFile, 0o600);
  agent.run();
  await until(`${agent.name} online`, async () => (await master.json<{ online: boolean }>('server', 'show', agent.name)).online);
}
