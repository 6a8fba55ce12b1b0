import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ReloadWatch, pidFileOf, procSource, type ProcInfo, type ProcSource } from './reloadwait.js';

/** A process table the test changes between polls, and the files a pid lookup reads. */
function fakeProc(files: Record<string, string>, table: ProcInfo[]): ProcSource & { table: ProcInfo[] } {
  const me = { table, list: () => me.table.map((p) => ({ ...p })), readText: (p: string) => files[p] ?? null };
  return me;
}

const NGINX_RELOAD = ['nginx', '-s', 'reload', '-p', '/srv/ngx', '-c', '/srv/ngx/nginx.conf'];
const master = { pid: 100, ppid: 1, title: 'nginx: master process nginx -c /srv/ngx/nginx.conf' };
const worker = (pid: number, title = 'nginx: worker process') => ({ pid, ppid: 100, title });

describe('where the pid file is', () => {
  it('nginx: the pid directive of the -c config (relative: under -p), else /run/nginx.pid', () => {
    expect(pidFileOf('nginx', NGINX_RELOAD, { readText: () => 'user www-data;\npid /srv/ngx/nginx.pid;\n' })).toBe('/srv/ngx/nginx.pid');
    expect(pidFileOf('nginx', NGINX_RELOAD, { readText: () => '  pid logs/nginx.pid;' })).toBe('/srv/ngx/logs/nginx.pid');
    expect(pidFileOf('nginx', ['nginx', '-s', 'reload'], { readText: (p) => (p === '/etc/nginx/nginx.conf' ? 'pid /run/x.pid;' : null) })).toBe('/run/x.pid');
    expect(pidFileOf('nginx', ['nginx', '-s', 'reload'], { readText: () => null })).toBe('/run/nginx.pid');
  });

  it("apache: PidFile of the -f config, else Debian's /run/apache2/apache2.pid", () => {
    expect(pidFileOf('apache', ['apache2', '-k', 'graceful', '-f', '/srv/a/apache2.conf'], { readText: () => 'PidFile "/srv/a/run.pid"\n' })).toBe(
      '/srv/a/run.pid',
    );
    expect(pidFileOf('apache', ['apache2ctl', 'graceful'], { readText: () => null })).toBe('/run/apache2/apache2.pid');
  });
});

describe('a reload has taken effect', () => {
  const files = { '/srv/ngx/nginx.conf': 'pid /srv/ngx/nginx.pid;', '/srv/ngx/nginx.pid': '100\n' };

  it('nginx: once a new worker runs and every old one is shutting down or gone', () => {
    const proc = fakeProc(files, [master, worker(101), worker(102), { pid: 7, ppid: 1, title: 'other' }]);
    const w = ReloadWatch.before('nginx', NGINX_RELOAD, proc);
    expect(w?.pid).toBe(100);
    expect(w?.done()).toBe(false); // the signal is not handled yet
    proc.table = [master, worker(101), worker(102), worker(103)];
    expect(w?.done()).toBe(false); // new workers, the old ones still accepting
    proc.table = [master, worker(101, 'nginx: worker process is shutting down'), worker(103)];
    expect(w?.done()).toBe(true);
    proc.table = [master, worker(103)];
    expect(w?.done()).toBe(true);
    // a new worker that is itself shutting down is no new config serving
    proc.table = [master, worker(103, 'nginx: worker process is shutting down')];
    expect(w?.done()).toBe(false);
    // the server stopped: nothing serves the old config either
    proc.table = [];
    expect(w?.done()).toBe(true);
  });

  it('apache: once a new child runs and every old one is gone', () => {
    const a = { pid: 200, ppid: 1, title: '/usr/sbin/apache2 -k start' };
    const child = (pid: number) => ({ pid, ppid: 200, title: '/usr/sbin/apache2 -k start' });
    const proc = fakeProc({ '/run/apache2/apache2.pid': '200' }, [a, child(201)]);
    const w = ReloadWatch.before('apache', ['apache2ctl', 'graceful'], proc);
    proc.table = [a, child(201), child(202)];
    expect(w?.done()).toBe(false);
    proc.table = [a, child(202)];
    expect(w?.done()).toBe(true);
  });

  it('no pid file, an empty one, or a pid that does not run: nothing to watch', () => {
    expect(ReloadWatch.before('nginx', NGINX_RELOAD, fakeProc({}, [master]))).toBeNull();
    expect(ReloadWatch.before('nginx', NGINX_RELOAD, fakeProc({ ...files, '/srv/ngx/nginx.pid': '' }, [master]))).toBeNull();
    expect(ReloadWatch.before('nginx', NGINX_RELOAD, fakeProc(files, [worker(5)]))).toBeNull();
  });

  it('wait: polls until done and says what it waited for; bounded, a timeout is reported, not thrown', async () => {
    const proc = fakeProc(files, [master, worker(101)]);
    const w = ReloadWatch.before('nginx', NGINX_RELOAD, proc) as ReloadWatch;
    let t = 0;
    let polls = 0;
    const sleep = async (ms: number) => {
      t += ms;
      if (++polls === 3) proc.table = [master, worker(101, 'nginx: worker process is shutting down'), worker(104)];
    };
    const ok = await w.wait({ now: () => t, sleep, intervalMs: 20 });
    expect(ok).toEqual({
      ok: true,
      said: 'waited for new nginx workers up and the old ones shutting down (master pid 100): serving the new config after 60 ms',
    });
    const stuck = ReloadWatch.before('nginx', NGINX_RELOAD, fakeProc(files, [master, worker(101)])) as ReloadWatch;
    t = 0;
    const late = await stuck.wait({ now: () => t, sleep: async (ms) => void (t += ms), timeoutMs: 10_000 });
    expect(late.ok).toBe(false);
    expect(late.said).toBe(
      'waited 10 s for new nginx workers up and the old ones shutting down (master pid 100) and they were not; the reload was sent, the new config may not serve yet',
    );
  });
});

describe('procSource reads /proc as Linux lays it out', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-proc-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('pid, ppid after the last parenthesis of comm, the title from cmdline; vanished entries skipped', () => {
    mkdirSync(join(dir, '42'));
    writeFileSync(join(dir, '42', 'stat'), '42 (nginx (x) y) S 41 42 42 0 -1 4194560');
    writeFileSync(join(dir, '42', 'cmdline'), 'nginx: worker process\0\0');
    mkdirSync(join(dir, '43')); // no stat: gone while read
    mkdirSync(join(dir, 'self'));
    expect(procSource(dir).list()).toEqual([{ pid: 42, ppid: 41, title: 'nginx: worker process' }]);
    // the real /proc has this very process, child of its parent
    expect(
      procSource()
        .list()
        .find((p) => p.pid === process.pid)?.ppid,
    ).toBe(process.ppid);
  });
});
