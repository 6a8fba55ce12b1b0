/**
 * Runs Spoke's site tool (spoke-site.php, inlined into the agent) with the host's PHP command
 * line: the work drush does for a Drupal site (the installer, one-time login links, pending and
 * running database updates, the cron key) and WordPress's one-time login token, through the
 * site's own code. Debian packages no drush, and none is needed.
 *
 * The tool runs in the platform's tree (its working directory), as the web server's account when
 * the agent is root (agent.json `php.user`, default www-data) so that what Drupal writes (files,
 * compiled templates) belongs to the web server, and as the agent's own account otherwise. The
 * request — with the admin password for an install — goes over stdin, never argv; the tool's
 * answer is the last `@@SPOKE-RESULT@@` line of its output, and only the tail of anything else it
 * printed reaches an error message.
 */
import { spawn } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fail, type ErrorCode, type Logger, type RootMap } from '@spoke/shared';
import { findBinary } from '../detect.js';
import toolSource from './spoke-site.php?raw';

/** What the tool can do. */
export type SiteToolOp = 'install' | 'loginUrl' | 'updates' | 'update' | 'cronKey' | 'prepareInstall' | 'setPassword';

/** Where a composer-built Drupal platform keeps its own drush (relative to the platform root). */
export const PLATFORM_DRUSH = 'vendor/bin/drush';

/** The site a tool run is for. */
export interface SiteRef {
  /** Namespace path of the platform. */
  tree: string;
  domain: string;
  /** Registry kind: drupal6, drupal7, drupal8, wordpress. */
  kind: string;
}

/** An account to run as (uid/gid), or null for the agent's own. */
export interface RunAs {
  uid: number;
  gid: number;
  name: string;
  home: string;
}

/** What SitePhp needs. */
export interface SitePhpDeps {
  rootMap: RootMap;
  roots: readonly string[];
  binDirs: readonly string[];
  /** agent.json `php.cli` ("" = find `php`). */
  phpCli: string;
  /** agent.json `php.user`: used when the agent is root. */
  phpUser: string;
  log: Logger;
  /** The agent's uid. @default process.getuid() */
  uid?: number;
  /** The user database. @default /etc/passwd */
  passwdFile?: string;
}

/** The tool's answer (op-specific fields; see spoke-site.php). */
export type SiteToolAnswer = Record<string, unknown>;

/** The tool's own error codes and the Spoke codes they become. */
const TOOL_CODES: Record<string, ErrorCode> = {
  SITE_NOT_INSTALLED: 'SITE_NOT_INSTALLED',
  SITE_ALREADY_INSTALLED: 'SITE_ALREADY_INSTALLED',
  UNSUPPORTED: 'SITE_TOOL_UNSUPPORTED',
  SITE_PHP_FAILED: 'SITE_TOOL_FAILED',
};

const MARK = '@@SPOKE-RESULT@@';
/** Output kept from the tool (its answer is the last line; the rest is only quoted on failure). */
const MAX_OUTPUT = 4 * 1024 * 1024;

/** Finds a user's uid, gid and home in a passwd-style file (a numeric name is taken as a uid). */
export async function lookupUser(name: string, passwdFile = '/etc/passwd'): Promise<RunAs | undefined> {
  let text = '';
  try {
    text = await readFile(passwdFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [user, , uid, gid, , home] = line.split(':');
    if (user === undefined || uid === undefined || gid === undefined || !/^\d+$/.test(uid) || !/^\d+$/.test(gid)) continue;
    if (user === name || uid === name) return { uid: Number(uid), gid: Number(gid), name: user, home: home || '/' };
  }
  return undefined;
}

/** The inlined tool as `php -r` code (no opening tag). */
export function toolCode(source: string = toolSource): string {
  return source.replace(/^<\?php\s*/, '');
}

/** Runs the site tool. */
export class SitePhp {
  private readonly deps: SitePhpDeps;

  constructor(deps: SitePhpDeps) {
    this.deps = deps;
  }

  /** The PHP binary. @throws SpokeError PHP_CLI_MISSING */
  async php(): Promise<string> {
    if (this.deps.phpCli) {
      try {
        if ((await stat(this.deps.phpCli)).isFile()) return this.deps.phpCli;
      } catch {
        /* reported below */
      }
      throw fail('PHP_CLI_MISSING', `php.cli in agent.json names ${this.deps.phpCli}, which does not exist on this host`);
    }
    const found = await findBinary(['php'], [...this.deps.binDirs]);
    if (!found) throw fail('PHP_CLI_MISSING', 'no PHP command line on this host (apt-get install php-cli, or set php.cli in agent.json)');
    return found;
  }

  /** Who the tool runs as: `php.user` when the agent is root, else the agent itself (null). @throws SpokeError CONFIG_INVALID */
  async runAs(): Promise<RunAs | null> {
    const uid = this.deps.uid ?? process.getuid?.() ?? -1;
    if (uid !== 0) return null;
    const u = await lookupUser(this.deps.phpUser, this.deps.passwdFile);
    if (!u)
      throw fail('CONFIG_INVALID', `php.user ${this.deps.phpUser} does not exist on this host; create it or set php.user in agent.json to php-fpm's pool user`);
    return u;
  }

  /**
   * Runs one op for a site. `params` go to the tool as they are (never logged).
   * @throws SpokeError PATH_OUTSIDE_ROOTS, PLATFORM_NOT_FOUND (no tree here), PHP_CLI_MISSING,
   *   SITE_NOT_INSTALLED, SITE_ALREADY_INSTALLED, SITE_TOOL_UNSUPPORTED, SITE_TOOL_FAILED
   */
  async run(op: SiteToolOp, site: SiteRef, params: Record<string, unknown> = {}, opts: { timeoutMs?: number } = {}): Promise<SiteToolAnswer> {
    const root = this.deps.rootMap.confine(site.tree, this.deps.roots);
    try {
      if (!(await stat(root)).isDirectory()) throw new Error('not a directory');
    } catch {
      throw fail('PLATFORM_NOT_FOUND', `platform tree ${site.tree} is not on this host (${root}); converge the platform first`);
    }
    const php = await this.php();
    const as = await this.runAs();
    const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
    const log = this.deps.log.child({ site: site.domain, op, as: as?.name ?? 'agent' });
    const t0 = Date.now();
    const out = await spawnPhp(php, ['-d', 'display_errors=stderr', '-d', 'memory_limit=1024M', '-d', 'max_execution_time=0', '-r', toolCode()], {
      cwd: root,
      as,
      stdin: JSON.stringify({ ...params, op, kind: site.kind, domain: site.domain }),
      timeoutMs,
    });
    const ms = Date.now() - t0;
    const at = out.stdout.lastIndexOf(MARK);
    if (at < 0) {
      const why = out.signal === 'SIGKILL' ? `no answer within ${Math.round(timeoutMs / 1000)}s` : `exited with ${out.code ?? out.signal}`;
      log.warn({ ms, code: out.code, signal: out.signal }, 'site tool gave no answer');
      throw fail('SITE_TOOL_FAILED', `${site.domain}: PHP ${why} without an answer${tail(out.stderr || out.stdout)}`);
    }
    let answer: { ok?: boolean; code?: string; message?: string } & SiteToolAnswer;
    try {
      answer = JSON.parse(out.stdout.slice(at + MARK.length).split('\n')[0] ?? '') as typeof answer;
    } catch {
      throw fail('SITE_TOOL_FAILED', `${site.domain}: the site tool's answer is not JSON${tail(out.stderr)}`);
    }
    if (answer.ok !== true) {
      const code = TOOL_CODES[String(answer.code)] ?? 'SITE_TOOL_FAILED';
      log.warn({ ms, code }, 'site tool failed');
      throw fail(code, `${site.domain}: ${String(answer.message ?? 'failed')}`);
    }
    log.info({ ms }, 'site tool ran');
    const { ok: _ok, ...rest } = answer;
    return rest;
  }

  /**
   * Runs a PHP script of the platform (a path relative to its root, e.g. MediaWiki's
   * maintenance/runJobs.php) with `args`, in the tree as `php.user` (see runAs). Nothing goes over
   * stdin; the exit code and output (stdout's last 4 MiB, stderr's last 64 KiB) come back.
   * @throws SpokeError PATH_OUTSIDE_ROOTS, PLATFORM_NOT_FOUND, PHP_CLI_MISSING, CONFIG_INVALID,
   *   SITE_TOOL_FAILED (the script is missing, or PHP cannot start)
   */
  /** The platform ships its own drush (composer's `vendor/bin/drush`). */
  async hasDrush(site: SiteRef): Promise<boolean> {
    const root = this.deps.rootMap.confine(site.tree, this.deps.roots);
    try {
      return (await stat(join(root, PLATFORM_DRUSH))).isFile();
    } catch {
      return false;
    }
  }

  async runScript(site: SiteRef, script: string, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<PhpRun> {
    const root = this.deps.rootMap.confine(site.tree, this.deps.roots);
    if (script.startsWith('/') || script.split('/').includes('..')) throw fail('INVALID_ARGUMENT', `script ${script} must be a path inside the platform`);
    try {
      if (!(await stat(join(root, script))).isFile()) throw new Error('not a file');
    } catch {
      throw fail('SITE_TOOL_FAILED', `${site.domain}: ${script} is not in the platform tree ${site.tree}`);
    }
    const php = await this.php();
    const as = await this.runAs();
    return spawnPhp(php, scriptArgs(script, args), { cwd: root, as, stdin: '', timeoutMs: opts.timeoutMs ?? 10 * 60_000 });
  }
}

/** The last line or two of a process's output, for an error message. */
export function tail(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim();
  if (!t) return '';
  return `: ${t.length > 400 ? `...${t.slice(-400)}` : t}`;
}

/** What a PHP process left. */
export interface PhpRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** The PHP command line of a platform script: no time limit, errors to stderr. */
export function scriptArgs(script: string, args: readonly string[]): string[] {
  return ['-d', 'display_errors=stderr', '-d', 'max_execution_time=0', script, ...args];
}

/** Runs PHP as `as` (or the agent) in `cwd`; SIGKILL after `timeoutMs`. @throws SpokeError SITE_TOOL_FAILED (cannot start) */
function spawnPhp(php: string, args: string[], o: { cwd: string; as: RunAs | null; stdin: string; timeoutMs: number }): Promise<PhpRun> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(php, args, {
      cwd: o.cwd,
      env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: o.as?.home ?? homedir(), LANG: 'C.UTF-8' },
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(o.as ? { uid: o.as.uid, gid: o.as.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout = (stdout + d).slice(-MAX_OUTPUT);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-64 * 1024);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(fail('SITE_TOOL_FAILED', `cannot run ${php}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(o.stdin);
  });
}
