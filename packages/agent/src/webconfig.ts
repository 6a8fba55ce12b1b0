/**
 * The agent's web server config for platforms and sites: render the config (webtemplate.ts),
 * write it under the config dir only when it changed, test it with the server's own check
 * (`nginx -t`, `apache2ctl configtest`) and only then reload. A failing test puts the previous
 * file back (or removes the new one), so the running server and its next reload keep working.
 * Afterwards the platform's sites/ dirs get the web group (sitesperms.ts). A site's vhost goes
 * the same way (`spoke-site-<domain>.conf`), and the site's files dirs are created beside it
 * (sitefiles.ts).
 *
 * Which web server: agent.json `http.impl`, else the impl an operator pinned on the master, else
 * detection (nginx, then apache). An agent started with `--root` (a host simulated inside a
 * directory) manages a web server only when agent.json has an `http` section: the machine's own
 * nginx is not that host's.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, realpath, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  checkDomain,
  checkName,
  fail,
  isSpokeError,
  type ConfigurePlatformRequest,
  type ConfigureSiteRequest,
  type Logger,
  type PlatformConfigReport,
  type RemoveSiteRequest,
  type RootMap,
  type SiteConfigReport,
  type SiteRemoveReport,
} from '@spoke/shared';
import type { HttpSettings } from './config.js';
import { findBinary, type DetectedService, type FpmSocket } from './detect.js';
import { writeAtomic } from './converge/fsutil.js';
import { checkRelativePath, deleteSiteFiles, ensureSiteDirs, giveToWebGroup } from './sitefiles.js';
import { describeUserFiles, giveUserFilesToWebServer, type UserFilesOwner } from './siteowner.js';
import { fixSitesPermissions, type SitesPermDeps } from './sitesperms.js';
import { renderPlatformConfig, renderSiteConfig, type HttpImpl } from './webtemplate.js';
import { DEFAULT_ACME_DIR, type SiteTlsStore } from './tls/sitetls.js';
import { ReloadWatch, pidFileOf, procSource, type ProcSource } from './reloadwait.js';

/** What removing a platform's config did. */
export interface PlatformRemoveReport {
  impl: HttpImpl;
  /** The config file (host path). */
  path: string;
  /** The file existed and was removed (false: already gone). */
  removed: boolean;
  reloaded: boolean;
  problems: string[];
}

/** How a command ended: exit code (null when it could not start or was killed) and its output. */
export interface CommandOutcome {
  code: number | null;
  output: string;
  /** Why it did not run or finish (ENOENT, timeout, signal). */
  error?: string;
}

/** Runs an argv (never a shell string). */
export type CommandRunner = (argv: readonly string[]) => Promise<CommandOutcome>;

/** Runs commands with a fixed PATH and the C locale, 60 s at most. */
export function commandRunner(binDirs: readonly string[], timeoutMs = 60_000): CommandRunner {
  return (argv) =>
    new Promise((resolve) => {
      const [bin, ...args] = argv;
      execFile(
        bin as string,
        args,
        { timeout: timeoutMs, env: { PATH: binDirs.join(':'), LANG: 'C', LC_ALL: 'C' }, maxBuffer: 4 * 1024 * 1024 },
        (err, stdout, stderr) => {
          const output = `${stderr}\n${stdout}`.trim();
          if (!err) return resolve({ code: 0, output });
          const e = err as NodeJS.ErrnoException & { code?: string | number; signal?: string; killed?: boolean };
          if (typeof e.code === 'number') return resolve({ code: e.code, output });
          resolve({ code: null, output, error: e.killed ? `timed out after ${Math.round(timeoutMs / 1000)}s` : (e.signal ?? String(e.code ?? e.message)) });
        },
      );
    });
}

/**
 * The lines of a web server's output that say what is wrong (nginx `[emerg]`, apache `AH…` and
 * syntax errors), as one line.
 */
export function serverMessage(output: string): string {
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/test failed|test is successful|syntax is ok/i.test(l));
  const key = lines.filter((l) => /\[(emerg|alert|crit|error)\]|\bAH\d{5}\b|syntax error|invalid command|\berror\b/i.test(l));
  const text = (key.length ? key : lines).slice(0, 3).join(' | ');
  return text.length > 600 ? `${text.slice(0, 597)}...` : text || 'no output';
}

/** What `nginx -s reload` says when no nginx runs: its pid file is empty or missing. */
const NOT_RUNNING = /invalid PID number|\.pid" failed \(2: /;

/** Defaults per web server, for a Debian host. */
const DEFAULTS: Record<HttpImpl, { confDir: string; test: string[]; reload: string[] }> = {
  nginx: { confDir: '/etc/nginx/conf.d', test: ['nginx', '-t'], reload: ['nginx', '-s', 'reload'] },
  apache: { confDir: '/etc/apache2/sites-enabled', test: ['apache2ctl', 'configtest'], reload: ['apache2ctl', 'graceful'] },
};

/** Where php requests go when neither agent.json nor detection names a socket (Debian's alternative). */
const FALLBACK_FPM_SOCKET = '/run/php/php-fpm.sock';

/** What WebConfig needs. */
export interface WebConfigDeps {
  http: HttpSettings;
  /** php-fpm socket or HOST:PORT from agent.json ("" = detect). */
  fpmSocket: string;
  roots: string[];
  rootMap: RootMap;
  binDirs: readonly string[];
  detect: () => Promise<DetectedService[]>;
  detectFpm: () => Promise<FpmSocket | null>;
  run: CommandRunner;
  log: Logger;
  perms?: SitesPermDeps;
  /** Who a site's user files belong to (agent.json `php.user`). @default { user: 'www-data' } */
  userFiles?: Omit<UserFilesOwner, 'webGroup'>;
  /** Site certificates and the ACME challenge dir. @default none: a site with tls is refused */
  tls?: SiteTlsStore;
  /** Where a reload's effect is watched (reloadwait.ts). @default the real /proc, RELOAD_WAIT_MS */
  reloadWait?: { proc?: ProcSource; timeoutMs?: number };
}

interface Service {
  impl: HttpImpl;
  confDir: string;
  test: string[];
  reload: string[];
  problems: string[];
}

/** Configures the web server for platforms; one operation at a time (the config test sees every file). */
export class WebConfig {
  private readonly deps: WebConfigDeps;
  private queue: Promise<unknown> = Promise.resolve();
  /** A reload failed after a tested write: the next configure reloads even when nothing changed. */
  private reloadPending = false;

  constructor(deps: WebConfigDeps) {
    this.deps = deps;
  }

  /**
   * Renders, writes, tests and reloads the platform's config, then fixes sites/ permissions.
   * @throws SpokeError NO_HTTP_SERVICE, UNSAFE_CONFIG_VALUE, TEMPLATE_INVALID, CONFIG_INVALID,
   *   WEBSERVER_CONFIG_INVALID (previous file restored), WEBSERVER_RELOAD_FAILED, PATH_OUTSIDE_ROOTS
   */
  configurePlatform(req: ConfigurePlatformRequest): Promise<PlatformConfigReport> {
    return this.serial(() => this.configure(req));
  }

  /**
   * Renders, writes, tests and reloads a site's vhost (`spoke-site-<domain>.conf`; the
   * maintenance page when disabled), creates `sites/<domain>/files` and `private` in the platform
   * tree, and gives the listed settings files to the web group.
   * @throws SpokeError NO_HTTP_SERVICE, INVALID_DOMAIN, INVALID_PATH, UNSAFE_CONFIG_VALUE,
   *   TEMPLATE_INVALID, CONFIG_INVALID, WEBSERVER_CONFIG_INVALID (previous file restored),
   *   WEBSERVER_RELOAD_FAILED, PATH_OUTSIDE_ROOTS
   */
  configureSite(req: ConfigureSiteRequest): Promise<SiteConfigReport> {
    return this.serial(() => this.configureSiteNow(req));
  }

  /**
   * Removes a site's vhost (test, reload; the file is put back when the test fails) and, with
   * deleteFiles, its files dirs. What is already gone is fine.
   * @throws SpokeError NO_HTTP_SERVICE, INVALID_DOMAIN, CONFIG_INVALID, WEBSERVER_CONFIG_INVALID,
   *   WEBSERVER_RELOAD_FAILED, PATH_OUTSIDE_ROOTS
   */
  removeSite(req: RemoveSiteRequest): Promise<SiteRemoveReport> {
    return this.serial(() => this.removeSiteNow(req));
  }

  /**
   * Removes the platform's config (`spoke-platform-<platform>.conf`): test, reload; the file is put
   * back when the test fails. Already gone: nothing runs (removed false).
   * @throws SpokeError NO_HTTP_SERVICE, INVALID_NAME, CONFIG_INVALID, WEBSERVER_CONFIG_INVALID,
   *   WEBSERVER_RELOAD_FAILED
   */
  removePlatform(req: { platform: string; pinnedImpl: string }): Promise<PlatformRemoveReport> {
    return this.serial(async () => {
      checkName(req.platform, 'platform name');
      const svc = await this.service(req.pinnedImpl);
      const file = join(svc.confDir, `spoke-platform-${req.platform}.conf`);
      const problems = [...svc.problems];
      const r = await this.apply(svc, file, null, `platform ${req.platform}`, this.deps.log.child({ platform: req.platform, file }), problems);
      return { impl: svc.impl, path: file, removed: r.changed, reloaded: r.reloaded, problems };
    });
  }

  /** Runs one operation after the previous one (the config test sees every file). */
  private serial<T>(op: () => Promise<T>): Promise<T> {
    const next = this.queue.then(op, op);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Which web server this agent manages, with its dirs and commands.
   * @throws SpokeError NO_HTTP_SERVICE
   */
  async service(pinnedImpl: string): Promise<Service> {
    const h = this.deps.http;
    if (h.impl === 'none') throw fail('NO_HTTP_SERVICE', 'agent.json sets http.impl to none: this agent does not manage a web server');
    if (!h.configured && this.deps.rootMap.prefix) {
      throw fail(
        'NO_HTTP_SERVICE',
        `this agent runs with --root ${this.deps.rootMap.prefix} (a simulated host) and agent.json has no http section; add one to manage a web server`,
      );
    }
    const problems: string[] = [];
    const pin = pinnedImpl === 'nginx' || pinnedImpl === 'apache' ? pinnedImpl : '';
    if (pinnedImpl && !pin) problems.push(`the master pins http impl ${JSON.stringify(pinnedImpl)}, which this agent does not know; ignored`);
    let impl: HttpImpl | '' = h.impl;
    if (impl && pin && impl !== pin) problems.push(`the master pins ${pin} for this server but agent.json sets http.impl ${impl}; using ${impl}`);
    if (!impl) impl = pin;
    if (!impl) {
      const found = (await this.deps.detect()).filter((s) => s.kind === 'http').map((s) => s.impl);
      impl = found.includes('nginx') ? 'nginx' : found.includes('apache') ? 'apache' : '';
    }
    if (!impl) {
      throw fail('NO_HTTP_SERVICE', 'no nginx or apache on this host (looked in PATH and the sbin dirs); install one, or set http.impl in agent.json');
    }
    const d = DEFAULTS[impl];
    return { impl, confDir: h.confDir || d.confDir, test: h.testCommand ?? d.test, reload: h.reloadCommand ?? d.reload, problems };
  }

  /** Resolves a command's program; CONFIG_INVALID when it is not installed. */
  private async program(argv: string[], key: string): Promise<string[]> {
    const [bin, ...args] = argv as [string, ...string[]];
    if (bin.includes('/')) return argv;
    const found = await findBinary([bin], [...this.deps.binDirs]);
    if (!found) {
      throw fail('CONFIG_INVALID', `${key}: ${bin} is not installed (looked in ${this.deps.binDirs.join(':')}); install it or set ${key} in agent.json`);
    }
    return [found, ...args];
  }

  private async fpm(problems: string[]): Promise<string> {
    if (this.deps.fpmSocket) return this.deps.fpmSocket;
    const s = await this.deps.detectFpm();
    if (!s) {
      problems.push(`no php-fpm pool or socket found; PHP requests go to ${FALLBACK_FPM_SOCKET} (set php.fpmSocket in agent.json)`);
      return FALLBACK_FPM_SOCKET;
    }
    if (!s.exists) problems.push(`php-fpm socket ${s.address} (from ${s.source}) does not exist: is php-fpm running? PHP requests fail until it is`);
    return s.address;
  }

  private async configure(req: ConfigurePlatformRequest): Promise<PlatformConfigReport> {
    // The name becomes part of a file name: the namespace rule, checked again here.
    checkName(req.platform, 'platform name');
    if (req.kind) checkName(req.kind, 'platform kind');
    const svc = await this.service(req.pinnedImpl);
    const problems = [...svc.problems];
    const root = this.deps.rootMap.confine(req.tree, this.deps.roots);
    const rendered = await renderPlatformConfig(
      {
        impl: svc.impl,
        platform: req.platform,
        kind: req.kind || 'generic',
        tree: req.tree,
        root,
        listen: this.deps.http.listen,
        fpm: await this.fpm(problems),
      },
      this.deps.http.templatesDir,
    );
    const file = join(svc.confDir, `spoke-platform-${req.platform}.conf`);
    const log = this.deps.log.child({ platform: req.platform, file });
    const report: PlatformConfigReport = { impl: svc.impl, path: file, changed: false, tested: false, reloaded: false, fixed: [], problems };
    Object.assign(report, await this.apply(svc, file, rendered, `platform ${req.platform}`, log, problems));
    const perms = await fixSitesPermissions(root, this.deps.http.webGroup, this.deps.perms);
    report.fixed.push(...perms.fixed);
    report.problems.push(...perms.problems);
    if (perms.fixed.length) log.info({ fixed: perms.fixed }, 'sites permissions fixed');
    return report;
  }

  /**
   * Gives a tree's settings files to the web group (mode 0640) after a converge rewrote them as
   * the agent's own. Missing files and other problems are reported, never thrown: the converge
   * itself succeeded.
   * @throws SpokeError PATH_OUTSIDE_ROOTS, INVALID_PATH
   */
  async settingsToWebGroup(tree: string, files: readonly string[]): Promise<{ fixed: string[]; problems: string[] }> {
    const root = this.deps.rootMap.confine(tree, this.deps.roots);
    return giveToWebGroup(root, files, this.deps.http.webGroup, this.deps.perms);
  }

  private async configureSiteNow(req: ConfigureSiteRequest): Promise<SiteConfigReport> {
    checkDomain(req.domain);
    checkName(req.platform, 'platform name');
    if (req.kind) checkName(req.kind, 'platform kind');
    req.webGroupFiles.forEach(checkRelativePath);
    const svc = await this.service(req.pinnedImpl);
    const problems = [...svc.problems];
    const root = this.deps.rootMap.confine(req.tree, this.deps.roots);
    const tls = this.deps.tls;
    if (req.tls && !tls) throw fail('INTERNAL', 'this agent has no certificate store');
    // The new pair is written beside the one in use; the vhost names it only once tested.
    const pair = req.tls && tls ? tls.write(req.domain, req.tls.certPem, req.tls.keyPem) : null;
    tls?.ensureAcmeDir();
    const rendered = await renderSiteConfig(
      {
        acmeDir: tls?.acmeDir ?? this.deps.rootMap.toHost(DEFAULT_ACME_DIR),
        https:
          req.tls && pair
            ? { listen: this.deps.http.httpsListen ?? ['443'], cert: pair.cert, key: pair.key, redirect: req.tls.redirect, hsts: req.tls.hsts }
            : null,
        impl: svc.impl,
        domain: req.domain,
        aliases: req.aliases,
        redirectAliases: req.redirectAliases,
        redirectNames: req.redirectNames ?? [],
        enabled: req.enabled,
        platform: req.platform,
        kind: req.kind || 'generic',
        tree: req.tree,
        root,
        listen: this.deps.http.listen,
        fpm: await this.fpm(problems),
      },
      this.deps.http.templatesDir,
    );
    const file = join(svc.confDir, `spoke-site-${req.domain}.conf`);
    const log = this.deps.log.child({ site: req.domain, file });
    const report: SiteConfigReport = { impl: svc.impl, path: file, changed: false, tested: false, reloaded: false, fixed: [], problems };
    Object.assign(report, await this.apply(svc, file, rendered, `site ${req.domain}`, log, problems));
    // The vhost in place names this pair (or none): older pairs are no longer read.
    const pruned = tls?.prune(req.domain, pair) ?? [];
    if (pruned.length) log.info({ removed: pruned.length }, 'old certificate files removed');
    const dirs = await ensureSiteDirs(root, req.domain, this.deps.http.webGroup, this.deps.perms);
    const files = await giveToWebGroup(root, req.webGroupFiles, this.deps.http.webGroup, this.deps.perms);
    // Drift under files/ and private/ (a file chown'd to root, a dir without g+w) is repaired
    // here, so `site verify` makes uploads work again.
    const real = await realpath(root).catch(() => null);
    const owned =
      real === null ? null : await giveUserFilesToWebServer(real, req.domain, { user: 'www-data', ...this.deps.userFiles, webGroup: this.deps.http.webGroup });
    report.fixed.push(...dirs.fixed, ...files.fixed);
    if (owned?.changed) report.fixed.push(describeUserFiles(req.domain, owned));
    report.problems.push(...dirs.problems, ...files.problems, ...(owned?.problems ?? []));
    if (report.fixed.length) log.info({ fixed: report.fixed }, 'site dirs and files fixed');
    return report;
  }

  private async removeSiteNow(req: RemoveSiteRequest): Promise<SiteRemoveReport> {
    checkDomain(req.domain);
    const svc = await this.service(req.pinnedImpl);
    const root = this.deps.rootMap.confine(req.tree, this.deps.roots);
    const file = join(svc.confDir, `spoke-site-${req.domain}.conf`);
    const log = this.deps.log.child({ site: req.domain, file });
    const problems = [...svc.problems];
    const r = await this.apply(svc, file, null, `site ${req.domain}`, log, problems);
    this.deps.tls?.prune(req.domain, null);
    const report: SiteRemoveReport = { impl: svc.impl, path: file, removed: r.changed, reloaded: r.reloaded, reloadWait: r.reloadWait, deleted: [], problems };
    if (req.deleteFiles) {
      const d = await deleteSiteFiles(root, req.domain);
      report.deleted.push(...d.deleted);
      report.problems.push(...d.problems);
      if (d.deleted.length) log.info({ deleted: d.deleted }, 'site files deleted');
    }
    return report;
  }

  /**
   * Puts `rendered` into `file` (null: removes it) when that changes it, tests the web server's
   * config and reloads; a failed test puts the previous state back. Nothing changed: nothing
   * runs, unless an earlier reload failed (then it reloads). A web server that is not running
   * has nothing to reload: that goes into `problems`, not an error (see reload).
   */
  private async apply(
    svc: Service,
    file: string,
    rendered: { text: string; source: string } | null,
    what: string,
    log: Logger,
    problems: string[],
  ): Promise<{ changed: boolean; tested: boolean; reloaded: boolean; reloadWait: string }> {
    const state = { changed: false, tested: false, reloaded: false, reloadWait: '' };
    const previous = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null;
      throw fail('CONFIG_INVALID', `cannot read ${file}: ${e.code ?? e.message}`);
    });
    if (previous === (rendered?.text ?? null)) {
      if (this.reloadPending) await this.reload(await this.program(svc.reload, 'http.reloadCommand'), svc, file, state, problems);
      return state;
    }
    const test = await this.program(svc.test, 'http.testCommand');
    const reload = await this.program(svc.reload, 'http.reloadCommand');
    if (rendered) {
      await mkdir(svc.confDir, { recursive: true });
      writeAtomic(file, rendered.text, true, 0o644);
    } else {
      await rm(file, { force: true });
    }
    state.changed = true;
    let outcome: CommandOutcome;
    try {
      outcome = await this.deps.run(test);
    } catch (e) {
      await this.restore(file, previous);
      throw e;
    }
    if (outcome.code !== 0) {
      await this.restore(file, previous);
      const why = outcome.error ? `${outcome.error}: ` : '';
      log.warn({ output: outcome.output }, 'config test failed; previous config restored');
      const doing = rendered ? `the config of ${what} (from ${rendered.source})` : `the config without ${what} (${file} removed)`;
      throw fail(
        'WEBSERVER_CONFIG_INVALID',
        `${svc.test.join(' ')} rejected ${doing}: ${why}${serverMessage(outcome.output)}; ${
          previous === null ? 'the new file was removed' : 'the previous file was restored'
        }, the web server keeps its running config`,
      );
    }
    state.tested = true;
    await this.reload(reload, svc, file, state, problems);
    if (!state.reloaded) return state;
    log.info(
      { source: rendered?.source ?? 'removed' },
      rendered ? `${what} config written, tested and reloaded` : `${what} config removed, tested and reloaded`,
    );
    return state;
  }

  /**
   * Reloads the web server (state.reloaded). One that is not running (nginx: no pid) has no
   * running config to replace: the files on disk, tested, are what it loads when it starts, so
   * that is a problem to report, not a failure — and `platform rm` must not be stuck behind it.
   * @throws SpokeError WEBSERVER_RELOAD_FAILED (any other failure; the next operation reloads)
   */
  private async reload(argv: string[], svc: Service, file: string, state: { reloaded: boolean; reloadWait: string }, problems: string[]): Promise<void> {
    const proc = this.deps.reloadWait?.proc ?? procSource();
    const watch = ReloadWatch.before(svc.impl, argv, proc);
    const r = await this.deps.run(argv);
    if (r.code !== 0 && NOT_RUNNING.test(r.output)) {
      this.reloadPending = false;
      problems.push(
        `${svc.impl} is not running, so nothing was reloaded; the tested config in ${svc.confDir} loads when it starts (systemctl start ${svc.impl === 'apache' ? 'apache2' : svc.impl})`,
      );
      this.deps.log.warn({ output: r.output }, `${svc.impl} is not running; config written and tested, not reloaded`);
      return;
    }
    if (r.code !== 0) {
      this.reloadPending = true;
      throw fail(
        'WEBSERVER_RELOAD_FAILED',
        `${svc.reload.join(' ')} failed: ${r.error ? `${r.error}: ` : ''}${serverMessage(r.output)}; the tested config stays in ${file} and loads at the next reload or start`,
      );
    }
    this.reloadPending = false;
    state.reloaded = true;
    // "reloaded" only once the new config serves (reloadwait.ts)
    if (!watch) {
      state.reloadWait = `no running ${svc.impl} master found from ${pidFileOf(svc.impl, argv, proc)}: nothing to wait for`;
      return;
    }
    const w = await watch.wait({ timeoutMs: this.deps.reloadWait?.timeoutMs });
    this.deps.log[w.ok ? 'debug' : 'warn']({ pid: watch.pid }, w.said);
    if (w.ok) state.reloadWait = w.said;
    else problems.push(w.said);
  }

  /** Puts the previous content back (or removes the new file); WEBSERVER_CONFIG_INVALID naming the file if even that fails. */
  private async restore(file: string, previous: string | null): Promise<void> {
    try {
      if (previous === null) await rm(file, { force: true });
      else writeAtomic(file, previous, true, 0o644);
    } catch (e) {
      this.deps.log.error({ file, err: (e as Error).message }, 'could not restore the previous web server config');
      if (isSpokeError(e)) throw e;
      throw fail(
        'WEBSERVER_CONFIG_INVALID',
        `could not restore ${file} after a failed config test: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
}
