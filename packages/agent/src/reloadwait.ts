/**
 * "Reloaded" means the new config serves. `nginx -s reload` and `apache2ctl graceful` return as
 * soon as the signal is sent; the master process then reads the config, starts new workers and
 * tells the old ones to stop accepting. A request sent in between is answered from the old
 * config (a new site's name falls through to the default server: nginx's welcome page).
 *
 * So before the reload the agent notes the server's master process (from its pid file) and its
 * children; after it, it watches `/proc` until the reload has taken effect:
 * - nginx: a child that was not there before runs (a new worker), and every child from before
 *   has exited or is titled `… is shutting down` (an old worker closes its listening sockets
 *   before it retitles itself, so it accepts nothing new);
 * - apache: a child that was not there before runs, and every child from before has exited
 *   (graceful: old children finish their request and go).
 * A master that is gone (the server stopped) has nothing left to wait for. The wait is bounded
 * (RELOAD_WAIT_MS); running out of time is reported as a problem, never a failure: the config
 * was tested and the reload was sent.
 *
 * Where the pid file is: nginx reads its `pid` directive from the main config (`-c FILE` of the
 * reload command, else /etc/nginx/nginx.conf; a relative path is under `-p PREFIX`, else
 * /usr/share/nginx), default /run/nginx.pid; apache from `PidFile` in `-f FILE`, else Debian's
 * /run/apache2/apache2.pid. Without a readable pid (not running, or an unusual setup) nothing is
 * waited for, and the outcome says so.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { HttpImpl } from './webtemplate.js';

/** How long the agent waits for a reload to take effect. */
export const RELOAD_WAIT_MS = 10_000;

/** A process as /proc shows it. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  /** The process title (cmdline, NULs as spaces). */
  title: string;
}

/** Where processes are read from (the real /proc, or a test's copy). */
export interface ProcSource {
  /** Every process (those that vanish while read are left out). */
  list(): ProcInfo[];
  /** Reads a file (the pid file, the main config); null when it cannot. */
  readText(path: string): string | null;
}

/** The real /proc (or `dir` laid out like it). */
export function procSource(dir = '/proc'): ProcSource {
  return {
    list() {
      const out: ProcInfo[] = [];
      for (const name of readdirSync(dir)) {
        if (!/^\d+$/.test(name)) continue;
        try {
          const stat = readFileSync(join(dir, name, 'stat'), 'utf8');
          // pid (comm) state ppid …: comm may hold spaces and parentheses, so read after the last ')'
          const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          const title = readFileSync(join(dir, name, 'cmdline'), 'utf8')
            .replace(/\0+$/, '')
            .replace(/\0/g, ' ');
          out.push({ pid: Number(name), ppid: Number(rest[1]), title });
        } catch {
          // gone while being read
        }
      }
      return out;
    },
    readText(path) {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return null;
      }
    },
  };
}

/** The value after `flag` in an argv ("" when absent). */
function argAfter(argv: readonly string[], flag: string): string {
  const i = argv.indexOf(flag);
  return i >= 0 ? (argv[i + 1] ?? '') : '';
}

/** The pid file of the web server a reload command talks to (see the module comment). */
export function pidFileOf(impl: HttpImpl, reload: readonly string[], proc: Pick<ProcSource, 'readText'>): string {
  if (impl === 'nginx') {
    const conf = argAfter(reload, '-c') || '/etc/nginx/nginx.conf';
    const m = /^\s*pid\s+([^;\s]+)\s*;/m.exec(proc.readText(conf) ?? '');
    if (!m) return '/run/nginx.pid';
    const p = m[1] as string;
    return isAbsolute(p) ? p : join(argAfter(reload, '-p') || '/usr/share/nginx', p);
  }
  const conf = argAfter(reload, '-f');
  const m = conf ? /^\s*PidFile\s+"?([^"\s]+)"?/m.exec(proc.readText(conf) ?? '') : null;
  if (!m) return '/run/apache2/apache2.pid';
  const p = m[1] as string;
  return isAbsolute(p) ? p : join(argAfter(reload, '-d') || '/etc/apache2', p);
}

/** What a reload wait found. */
export interface ReloadWaitOutcome {
  /** The reload took effect (or there was nothing to wait for). */
  ok: boolean;
  /** One line for the task log: what was waited for and what happened. */
  said: string;
}

/** The server as it was before a reload: its master and that master's children. */
export class ReloadWatch {
  private constructor(
    private readonly impl: HttpImpl,
    private readonly proc: ProcSource,
    readonly pid: number,
    private readonly before: ReadonlySet<number>,
  ) {}

  /** Notes the master and its children before a reload; null when no running master is found. */
  static before(impl: HttpImpl, reload: readonly string[], proc: ProcSource = procSource()): ReloadWatch | null {
    const pid = Number((proc.readText(pidFileOf(impl, reload, proc)) ?? '').trim());
    if (!Number.isInteger(pid) || pid <= 0) return null;
    const all = proc.list();
    if (!all.some((p) => p.pid === pid)) return null;
    return new ReloadWatch(impl, proc, pid, new Set(all.filter((p) => p.ppid === pid).map((p) => p.pid)));
  }

  /** True once the reload has taken effect (see the module comment). */
  done(): boolean {
    const all = this.proc.list();
    if (!all.some((p) => p.pid === this.pid)) return true;
    const kids = all.filter((p) => p.ppid === this.pid);
    const fresh = kids.filter((p) => !this.before.has(p.pid) && !shuttingDown(p));
    const old = kids.filter((p) => this.before.has(p.pid));
    if (fresh.length === 0) return false;
    return this.impl === 'nginx' ? old.every(shuttingDown) : old.length === 0;
  }

  /**
   * Polls `done` every `intervalMs` until it holds or `timeoutMs` passed.
   * @default timeoutMs RELOAD_WAIT_MS, intervalMs 20
   */
  async wait(opts: { timeoutMs?: number; intervalMs?: number; now?: () => number; sleep?: (ms: number) => Promise<void> } = {}): Promise<ReloadWaitOutcome> {
    const timeoutMs = opts.timeoutMs ?? RELOAD_WAIT_MS;
    const now = opts.now ?? Date.now;
    const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const what = this.impl === 'nginx' ? 'new nginx workers up and the old ones shutting down' : 'new apache children up and the old ones gone';
    const start = now();
    for (;;) {
      if (this.done()) return { ok: true, said: `waited for ${what} (master pid ${this.pid}): serving the new config after ${now() - start} ms` };
      if (now() - start >= timeoutMs) {
        return {
          ok: false,
          said: `waited ${Math.round(timeoutMs / 1000)} s for ${what} (master pid ${this.pid}) and they were not; the reload was sent, the new config may not serve yet`,
        };
      }
      await sleep(opts.intervalMs ?? 20);
    }
  }
}

function shuttingDown(p: ProcInfo): boolean {
  return p.title.includes('shutting down');
}
