/**
 * The cron scheduler over a real in-memory store and namespace, with a fake clock and a recording
 * agent hub (what each web server answers is set per test): which sites start on which tick, the
 * concurrency cap, one server per run (members taking turns on a cluster), the bounded history,
 * failures in a row, and the refusals of `site cron`. No wall-clock sleeps: time is the fake
 * clock, and the timer test uses vitest's fake timers.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger, fail, silentLogger, type AgentCommand, type Logger, type SiteCronReport } from '@spoke/shared';
import type { CallOptions } from '../servers/hub.js';
import { addAgent, expectRefused, freshNamespace, snapshot } from '../testutil.js';
import { cronOffsetMs } from './cron.js';
import { CronScheduler, type CronHub } from './cronrunner.js';
import { CronStore } from './cronstore.js';

const H = 3_600_000;

interface Call {
  server: string;
  cmd: AgentCommand;
  resolve(r: SiteCronReport): void;
  reject(e: Error): void;
}

/** A hub whose agents answer when the test says (or at once with `auto`). */
class FakeHub implements CronHub {
  online = new Set<string>();
  calls: Call[] = [];
  auto: ((server: string, cmd: AgentCommand) => SiteCronReport | Error) | null = () => ({
    method: 'GET /cron/… via 127.0.0.1:80',
    status: 204,
    message: '204',
    ms: 5,
  });
  isOnline(server: string): boolean {
    return this.online.has(server);
  }
  call<K extends AgentCommand['type']>(server: string, cmd: Extract<AgentCommand, { type: K }>, _opts?: CallOptions): Promise<never> {
    return new Promise((resolve, reject) => {
      const c: Call = { server, cmd, resolve: resolve as unknown as (r: SiteCronReport) => void, reject };
      this.calls.push(c);
      const a = this.auto?.(server, cmd);
      if (a instanceof Error) reject(a);
      else if (a) resolve(a as never);
    });
  }
}

const flush = () => new Promise((r) => setImmediate(r));

function setup(opts: { concurrency?: number; sites?: string[]; cluster?: boolean; kind?: string; log?: Logger; slice?: number } = {}) {
  const f = freshNamespace();
  const start = Math.ceil(f.now.ms / H) * H; // an hour boundary: the sites are installed then
  f.now.ms = start;
  addAgent(f.ns, 'w1');
  addAgent(f.ns, 'm1');
  addAgent(f.ns, 'm2');
  addAgent(f.ns, 'm3');
  f.ns.createCluster('web', ['m1', 'm2', 'm3']);
  f.ns.addPlatform({ name: 'd7', path: '/var/aegir/d7', server: opts.cluster ? 'web' : 'w1', source: { kind: 'existing' } });
  f.ns.setRegistry('d7', JSON.stringify({ kind: opts.kind ?? 'drupal7' }));
  for (const d of opts.sites ?? ['a.test']) {
    f.ns.createSite({ domain: d, platform: 'd7', status: 'installed' });
    f.ns.setSiteStatus(d, 'installed', { installedMs: f.now.ms });
  }
  const hub = new FakeHub();
  hub.online = new Set(['w1', 'm1', 'm2', 'm3']);
  const runs = new CronStore({ db: f.db });
  const busy = new Set<string>();
  const cron = new CronScheduler({
    ns: f.ns,
    hub,
    runs,
    clock: () => f.now.ms,
    log: opts.log ?? silentLogger(),
    concurrency: opts.concurrency,
    busySites: () => busy,
    slice: opts.slice,
  });
  return { ...f, hub, runs, cron, start, busy };
}

/** The first ms at which `domain`'s hourly slot has come, after `from`. */
const slotAfter = (domain: string, from: number) => from + cronOffsetMs(domain, H);

afterEach(() => {
  vi.useRealTimers();
});

describe('the cron scheduler (fake clock)', () => {
  it('starts a site at its slot, once, on one server, and records the run; again an hour later', async () => {
    const { cron, hub, now, start, runs } = setup();
    now.ms = slotAfter('a.test', start) - 1;
    expect(await cron.tick()).toEqual([]);
    now.ms += 1;
    expect(await cron.tick()).toEqual(['a.test']);
    await flush();
    expect(hub.calls.map((c) => [c.server, c.cmd])).toEqual([['w1', { type: 'siteCron', tree: '/var/aegir/d7', domain: 'a.test', kind: 'drupal7' }]]);
    expect(runs.list('a.test')).toMatchObject([
      { ok: true, server: 'w1', trigger: 'schedule', startedMs: now.ms, failures: 0, message: 'GET /cron/… via 127.0.0.1:80: 204' },
    ]);
    now.ms += 10_000;
    expect(await cron.tick()).toEqual([]);
    now.ms += H - 10_000;
    expect(await cron.tick()).toEqual(['a.test']);
    await flush();
    expect(runs.list('a.test')).toHaveLength(2);
  });

  it('runs at most `concurrency` at once; a run that ends starts the next due site', async () => {
    const sites = ['a.test', 'b.test', 'c.test', 'd.test', 'e.test', 'f.test'];
    const { cron, hub, now, start } = setup({ concurrency: 4, sites });
    hub.auto = null; // the agents answer when told
    now.ms = start + H; // every site's slot of the last hour has come
    expect(await cron.tick()).toHaveLength(4);
    expect(cron.inFlight()).toHaveLength(4);
    expect(await cron.tick()).toEqual([]); // full
    await flush();
    expect(hub.calls).toHaveLength(4);
    hub.calls[0]?.resolve({ method: 'm', status: 204, message: '204', ms: 1 });
    await flush();
    await flush();
    expect(hub.calls).toHaveLength(5); // the freed slot went to the next due site at once
    expect(cron.inFlight()).toHaveLength(4);
    for (const c of hub.calls.slice(1)) c.resolve({ method: 'm', status: 204, message: '204', ms: 1 });
    await flush();
    await flush();
    hub.calls[5]?.resolve({ method: 'm', status: 204, message: '204', ms: 1 });
    await flush();
    expect(new Set(hub.calls.map((c) => (c.cmd as { domain: string }).domain))).toEqual(new Set(sites));
    expect(hub.calls).toHaveLength(6);
  });

  it('on a cluster, runs on one member each time: the online ones take turns, an offline one is passed over', async () => {
    const { cron, hub, now, start, runs } = setup({ cluster: true });
    hub.online.delete('m2');
    now.ms = slotAfter('a.test', start);
    const servers: string[] = [];
    for (let i = 0; i < 4; i++) {
      await cron.tick();
      await flush();
      servers.push(hub.calls.at(-1)?.server ?? '');
      now.ms += H;
    }
    expect(servers).toEqual(['m1', 'm3', 'm1', 'm3']);
    expect(runs.list('a.test').map((r) => r.server)).toEqual(['m3', 'm1', 'm3', 'm1']);
  });

  it('records failures in a row; three show as failing; a good run resets them', async () => {
    const { cron, hub, now, start, runs, ns } = setup();
    hub.auto = () => fail('SITE_CRON_FAILED', 'w1: GET http://a.test/cron.php?cron_key=… answered 500');
    now.ms = slotAfter('a.test', start);
    for (let i = 1; i <= 3; i++) {
      await cron.tick();
      await flush();
      expect(runs.last('a.test')).toMatchObject({ ok: false, failures: i, errorCode: 'SITE_CRON_FAILED', server: 'w1' });
      now.ms += H;
    }
    const info = cron.info(ns.getSite('a.test'));
    expect(info).toMatchObject({ failures: 3, skipped: '', intervalS: 3600 });
    hub.auto = () => ({ method: 'm', status: 200, message: '200', ms: 1 });
    await cron.tick();
    await flush();
    expect(runs.last('a.test')).toMatchObject({ ok: true, failures: 0 });
  });

  it('with no web server online, the run is recorded as failed (AGENT_OFFLINE), naming none', async () => {
    const { cron, hub, now, start, runs } = setup();
    hub.online.clear();
    now.ms = slotAfter('a.test', start);
    await cron.tick();
    await flush();
    expect(hub.calls).toEqual([]);
    expect(runs.last('a.test')).toMatchObject({ ok: false, errorCode: 'AGENT_OFFLINE', server: '', failures: 1 });
    expect(runs.last('a.test')?.message).toBe('no web server of w1 is online (w1 offline); cron did not run');
  });

  it('a run whose history write fails is logged and leaves the slot free (no unhandled rejection)', async () => {
    const lines: string[] = [];
    const { cron, now, start, runs } = setup({ log: createLogger({ level: 'error', destination: { write: (l: string) => void lines.push(l) } }) });
    vi.spyOn(runs, 'record').mockImplementation(() => {
      throw new Error('SQLITE_IOERR: disk I/O error');
    });
    now.ms = slotAfter('a.test', start);
    expect(await cron.tick()).toEqual(['a.test']);
    await flush();
    expect(cron.inFlight()).toEqual([]);
    expect(lines.map((l) => JSON.parse(l) as { msg: string; site: string; err: { message: string } })).toMatchObject([
      { msg: 'cron run not recorded', site: 'a.test', err: { message: 'SQLITE_IOERR: disk I/O error' } },
    ]);
  });

  it('reads the sites in slices with the event loop free between them; picks the longest-waiting across slices; passes asked for meanwhile run once after', async () => {
    const sites = Array.from({ length: 10 }, (_, i) => `s${i}.test`);
    const { cron, ns, now, start, hub } = setup({ sites, slice: 3, concurrency: 2 });
    hub.auto = null;
    ns.setSiteStatus('s4.test', 'disabled'); // not read at all: never due
    const read = vi.spyOn(ns, 'cronSites');
    now.ms = start + 3 * H;
    // each site's latest slot; the two whose slots came first are the ones that waited longest
    const slots = sites.filter((d) => d !== 's4.test').map((d) => ({ d, slot: slotAfter(d, start + 2 * H) }));
    const expected = slots
      .sort((a, b) => a.slot - b.slot || (a.d < b.d ? -1 : 1))
      .slice(0, 2)
      .map((x) => x.d);
    let readWhenLoopRan = -1; // how many slices were read when the event loop got a turn
    setImmediate(() => (readWhenLoopRan = read.mock.calls.length));
    const first = cron.tick();
    const second = cron.tick();
    const third = cron.tick();
    expect(third).toBe(second); // coalesced
    expect(await first).toEqual(expected);
    // slices of 3 through the platform's rows (s4 is filtered out by the query): 3 + 3 + 3 + 0
    const rows = read.mock.results.map((r) => (r.value as { domain: string }[]).map((x) => x.domain));
    expect(rows).toEqual([['s0.test', 's1.test', 's2.test'], ['s3.test', 's5.test', 's6.test'], ['s7.test', 's8.test', 's9.test'], []]);
    expect(readWhenLoopRan).toBeGreaterThan(0); // the loop ran in the middle of the pass
    expect(readWhenLoopRan).toBeLessThan(4);
    expect(await second).toEqual([]); // full: two runs going
    expect(read).toHaveBeenCalledTimes(4); // the second pass found no free slot and read nothing
  });

  it('skips disabled sites, sites with cron off and sites with a task running', async () => {
    const { cron, ns, now, start, busy } = setup({ sites: ['a.test', 'b.test', 'c.test', 'd.test'] });
    ns.setSiteStatus('a.test', 'disabled');
    ns.setSiteCronInterval('b.test', 0);
    busy.add('c.test');
    now.ms = start + H;
    expect(await cron.tick()).toEqual(['d.test']);
    await flush();
    expect(cron.info(ns.getSite('a.test'))).toMatchObject({ skipped: 'the site is disabled', nextRunMs: 0 });
    expect(cron.info(ns.getSite('b.test'))).toMatchObject({ skipped: 'cron is off', nextRunMs: 0, intervalS: 0 });
  });

  it('keeps the last 20 runs per site, newest first; the runs go with the site', async () => {
    const { cron, hub, now, start, runs, ns, db } = setup({ sites: ['a.test', 'b.test'] });
    hub.auto = () => ({ method: 'm', status: 204, message: '204', ms: 1 });
    now.ms = start;
    for (let i = 0; i < 25; i++) {
      now.ms += H;
      await cron.tick();
      await flush();
    }
    const list = runs.list('a.test', 100);
    expect(list).toHaveLength(20);
    expect(list.map((r) => r.startedMs)).toEqual([...list.map((r) => r.startedMs)].sort((x, y) => y - x));
    expect((db.prepare('SELECT count(*) AS n FROM cron_runs').get() as { n: number }).n).toBe(40);
    ns.deleteSite('a.test');
    expect((db.prepare("SELECT count(*) AS n FROM cron_runs WHERE site = 'a.test'").get() as { n: number }).n).toBe(0);
  });

  it('the timer ticks every tickMs and stop() waits for the runs in flight', async () => {
    vi.useFakeTimers();
    const f = setup();
    const cron = new CronScheduler({ ns: f.ns, hub: f.hub, runs: f.runs, clock: () => f.now.ms, log: silentLogger(), tickMs: 10_000 });
    f.hub.auto = null;
    f.now.ms = slotAfter('a.test', f.start);
    cron.start();
    await vi.advanceTimersByTimeAsync(9_999);
    expect(f.hub.calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(f.hub.calls).toHaveLength(1);
    let stopped = false;
    const stopping = cron.stop().then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(stopped).toBe(false);
    f.hub.calls[0]?.resolve({ method: 'm', status: 204, message: '204', ms: 1 });
    await stopping;
    expect(f.runs.list('a.test')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(60 * H);
    expect(f.hub.calls).toHaveLength(1); // stopped: no more ticks
  });
});

describe('site cron (runNow)', () => {
  it('runs now and returns the recorded run; a run going already is joined, not doubled', async () => {
    const { cron, hub, now, start } = setup();
    hub.auto = null;
    now.ms = start + 5_000;
    const first = cron.runNow('a.test');
    await flush();
    const second = cron.runNow('a.test');
    await flush();
    expect(hub.calls).toHaveLength(1);
    hub.calls[0]?.resolve({ method: 'GET /cron.php?cron_key=… via 127.0.0.1:80', status: 200, message: '200', ms: 3 });
    const [a, b] = await Promise.all([first, second]);
    expect(a).toMatchObject({ joined: false, run: { ok: true, trigger: 'manual', server: 'w1' } });
    expect(b.joined).toBe(true);
    expect(b.run.id).toBe(a.run.id);
  });

  it('a failed run comes back as a failed record (not an exception) with the agent code', async () => {
    const { cron, hub } = setup();
    hub.auto = () => fail('SITE_CRON_FAILED', 'w1: GET http://a.test/cron.php answered 503');
    const r = await cron.runNow('a.test');
    expect(r.run).toMatchObject({ ok: false, errorCode: 'SITE_CRON_FAILED', failures: 1, message: 'w1: GET http://a.test/cron.php answered 503' });
  });

  it('refuses a disabled site (SITE_DISABLED), one not installed, a kind without cron and an unknown site, recording nothing', async () => {
    const f = setup({ sites: ['a.test', 'b.test'] });
    f.ns.setSiteStatus('a.test', 'disabled');
    f.ns.setSiteStatus('b.test', 'deleting');
    const refusal = async (domain: string, code: string) => {
      const before = JSON.stringify(snapshot(f.db));
      const e = await f.cron.runNow(domain).then(
        () => null,
        (x: unknown) => x as { code: string; message: string },
      );
      expect(e?.code).toBe(code);
      expect(e?.message).not.toContain('\n');
      expect(JSON.stringify(snapshot(f.db))).toBe(before);
      return e?.message;
    };
    expect(await refusal('a.test', 'SITE_DISABLED')).toBe(
      'site a.test is disabled: its cron does not run (nothing was run; enable it first: spoke site enable a.test)',
    );
    expect(await refusal('b.test', 'SITE_NOT_INSTALLED')).toBe('site b.test is deleting; cron runs only on installed sites');
    expect(await refusal('nope.test', 'SITE_NOT_FOUND')).toMatch(/no site named nope\.test/);
    f.ns.setSiteStatus('b.test', 'installed');
    f.ns.setRegistry('d7', JSON.stringify({ kind: 'generic' }));
    expect(await refusal('b.test', 'PLATFORM_KIND_UNSUPPORTED')).toMatch(/^platform d7 is generic: Spoke runs cron for/);
    expect(f.hub.calls).toEqual([]);
  });

  it('an interval change is stored; a bad one changes nothing', () => {
    const { ns, db } = setup();
    expect(ns.setSiteCronInterval('a.test', 7200).cronIntervalS).toBe(7200);
    expectRefused(db, 'INVALID_ARGUMENT', () => ns.setSiteCronInterval('a.test', -1));
    expectRefused(db, 'SITE_NOT_FOUND', () => ns.setSiteCronInterval('nope.test', 60));
  });
});
