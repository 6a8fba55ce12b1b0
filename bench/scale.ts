/**
 * `pnpm bench:scale [--agents 1000] [--sites 100000] [--platforms N] [--files 20000] [--members 50]
 *   [--runs 3] [--json] [--keep] [--profile DIR] [--memory]` — one master, a thousand web servers (issue 20).
 *
 * A real master (the built bundle, its deployment's node flags) and the agent simulator
 * (simagents.ts: every agent over its own mTLS connection, in this process) measure:
 * - fleet: enrolling every agent with its own token (CreateToken + the Enroll rpc), all online;
 * - restart: the master stopped, the namespace seeded, the master started again: the time until
 *   every agent is back (a reconnect storm: each agent retries with the real agent's jittered
 *   backoff, 500 ms → 15 s);
 * - namespace: `--sites` sites on `--platforms` platforms (default one per 100 sites), seeded
 *   straight through the master's Namespace in one transaction while it is stopped, each
 *   platform placed on an agent that reports holding it in sync; `site ls`, `site show`,
 *   `platform ls`, `server ls` through the real CLI with `-o json` (median of --runs); SQLite size;
 * - verify: `server verify` of every agent at once (one VerifyServer call each): dispatch (task
 *   started → command at the agent) p50/p99, queue wait, end-to-end;
 * - converge: a `--files`-file Drupal-shaped platform added to one agent, then the same tree
 *   added to a cluster of `--members` agents: each platform.verify task's time (the master's
 *   walk and hash, then the converge), and the ratio;
 * - the master's RSS (peak) and CPU (seconds, share of one core) in each phase; with --memory also
 *   its V8 heap and off-heap (external) memory, scraped from its `--metrics` listener at each sample.
 * Extra node flags for the master (experiments, e.g. --heapsnapshot-signal=SIGUSR2):
 * SPOKE_BENCH_MASTER_FLAGS, space-separated; SPOKE_BENCH_MASTER_LOG=FILE keeps the last master's output.
 * Not a test: it asserts nothing; the table says which goal each figure meets.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Metadata } from '@grpc/grpc-js';
import { MASTER_NODE_FLAGS, wire } from '@spoke/shared';
import { Namespace, openStore } from '@spoke/master';
import { cpuMs, median, Procs, rssMb, until, type Proc } from './lib.js';
import { makeDrupal8Tree } from './drupal-tree.js';
import { SimFleet, allSites, createTokens, operatorClient, unary, type SimAgent } from './simagents.js';

const ROOT = join(import.meta.dirname, '..');
const BIN = { spoke: join(ROOT, 'bin/spoke'), master: join(ROOT, 'packages/master/dist/spoke-master.js') };

const { values: args } = parseArgs({
  options: {
    agents: { type: 'string', default: '1000' },
    sites: { type: 'string', default: '100000' },
    platforms: { type: 'string' },
    files: { type: 'string', default: '20000' },
    members: { type: 'string', default: '50' },
    runs: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    profile: { type: 'string' },
    memory: { type: 'boolean', default: false },
  },
});
const AGENTS = Math.max(2, Number(args.agents));
const SITES = Math.max(0, Number(args.sites));
const PLATFORMS = Math.max(1, Number(args.platforms ?? Math.max(1, Math.round(SITES / 100))));
const FILES = Math.max(100, Number(args.files));
const MEMBERS = Math.max(1, Math.min(Number(args.members), AGENTS - 1));
const RUNS = Math.max(1, Number(args.runs));
const GOALS = { onlineAfterRestartS: 30, dispatchP99Ms: 50, siteLsMs: 1000, masterRssMb: 500, clusterRatio: 1.5 };

const say = (s: string) => {
  if (!args.json) process.stderr.write(`${s}\n`);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const name = (i: number) => `sim-${String(i + 1).padStart(4, '0')}`;

const work = mkdtempSync(join(tmpdir(), 'spoke-bench-scale-'));
const state = join(work, 'state');
const masterRoot = join(work, 'master-root');
const env = { ...process.env, SPOKE_LOG_LEVEL: args.keep ? 'info' : 'warn' };
const procs = new Procs(env, args.profile);

// ---------------------------------------------------------------- the master and its load

let master: Proc;
let listen = '127.0.0.1:0';
/** The master's metrics listener: its event-loop delay (verify phase) and, with --memory, its heap. */
let metricsAt = '';
const EXTRA_FLAGS = (process.env.SPOKE_BENCH_MASTER_FLAGS ?? '').split(' ').filter(Boolean);

async function startMaster(): Promise<void> {
  metricsAt ||= `127.0.0.1:${await freePort()}`;
  master = procs.daemon(
    BIN.master,
    ['run', '--state-dir', state, '--listen', listen, '--root', masterRoot, '--metrics', metricsAt],
    [...MASTER_NODE_FLAGS, ...EXTRA_FLAGS],
  );
  const m = await until(
    'the master to listen',
    () => /listening on (\S+);(?:.*metrics on http:\/\/(\S+)\/metrics)?/.exec(master.out) ?? (master.exitCode !== null ? die(master.out) : undefined),
    120_000,
  );
  listen = m[1] as string;
  metricsAt = m[2] ?? metricsAt;
}

/** The master's own view of its memory (MB): V8 heap used and committed, external (ArrayBuffers, Buffers). */
async function masterMemory(): Promise<{ heapUsed: number; heapTotal: number; external: number } | undefined> {
  if (!metricsAt) return undefined;
  try {
    const text = await (await fetch(`http://${metricsAt}/metrics`)).text();
    const mb = (name: string) => Math.round(Number(new RegExp(`^spoke_master_${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0) / 1024 ** 2);
    return { heapUsed: mb('nodejs_heap_size_used_bytes'), heapTotal: mb('nodejs_heap_size_total_bytes'), external: mb('nodejs_external_memory_bytes') };
  } catch {
    return undefined; // between a stop and the next start
  }
}

function freePort(): Promise<number> {
  return new Promise((ok, ko) => {
    const srv = createServer();
    srv.once('error', ko);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => ok(port));
    });
  });
}

/**
 * The master's event-loop delay since the last read (prom-client's histogram, reset at every
 * scrape): p99 and max in ms.
 */
async function masterLoopDelay(): Promise<{ p99Ms: number; maxMs: number }> {
  // --memory scrapes every 250 ms, and each scrape resets the histogram: no figure for the phase
  if (args.memory) return { p99Ms: NaN, maxMs: NaN };
  const text = await (await fetch(`http://${metricsAt}/metrics`)).text();
  const read = (name: string) => Number(new RegExp(`^spoke_master_nodejs_eventloop_lag_${name}_seconds (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) * 1000;
  return { p99Ms: round(read('p99'), 1), maxMs: round(read('max'), 1) };
}

async function stopMaster(): Promise<void> {
  const p = master;
  if (p.exitCode !== null) return;
  await new Promise((r) => (p.once('exit', r), p.kill('SIGTERM')));
}

function die(out: string): never {
  throw new Error(`the master exited:\n${out.slice(-4000)}`);
}

/** One phase's load on the master: CPU and peak RSS sampled every 250 ms. */
interface Load {
  wallS: number;
  cpuS: number;
  /** CPU seconds per wall second (1 = one core busy). */
  cores: number;
  peakRssMb: number;
  /** This process's CPU (the simulated agents and the driver), seconds per wall second. */
  simCores: number;
  /** With --memory: the peaks (MB) of the master's V8 heap (used, committed) and external memory. */
  memory?: { heapUsed: number; heapTotal: number; external: number };
}

const loads: Record<string, Load> = {};
let peakRss = 0;

/** Runs `fn` as a named phase, sampling the master (whichever process it is at the time). */
async function phase<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const alive = (p: Proc) => p.exitCode === null && p.signalCode === null;
  let pid = alive(master) ? master.pid : undefined;
  let cpu0 = pid ? cpuMs(pid) : 0;
  let cpuUsed = 0;
  let peak = 0;
  let mem: Load['memory'];
  const sampleMemory = async () => {
    const m = await masterMemory();
    if (!m) return;
    mem ??= { heapUsed: 0, heapTotal: 0, external: 0 };
    mem.heapUsed = Math.max(mem.heapUsed, m.heapUsed);
    mem.heapTotal = Math.max(mem.heapTotal, m.heapTotal);
    mem.external = Math.max(mem.external, m.external);
  };
  const sample = () => {
    if (args.memory) void sampleMemory();
    try {
      if (!alive(master)) return;
      if (master.pid !== pid) {
        pid = master.pid;
        cpu0 = 0; // a restarted master counts from its start
      }
      const c = cpuMs(pid);
      cpuUsed += Math.max(0, c - cpu0);
      cpu0 = c;
      peak = Math.max(peak, rssMb(pid));
    } catch {
      // between a stop and the next start
    }
  };
  const timer = setInterval(sample, 250);
  const sim0 = process.cpuUsage();
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    clearInterval(timer);
    sample();
    const wallS = (performance.now() - t0) / 1000;
    const sim = process.cpuUsage(sim0);
    loads[label] = {
      wallS: round(wallS, 1),
      cpuS: round(cpuUsed / 1000, 1),
      cores: round(cpuUsed / 1000 / Math.max(wallS, 0.001), 2),
      peakRssMb: peak,
      simCores: round((sim.user + sim.system) / 1e6 / Math.max(wallS, 0.001), 2),
      ...(mem ? { memory: mem } : {}),
    };
    peakRss = Math.max(peakRss, peak);
    const memText = mem ? ` (heap ${mem.heapUsed}/${mem.heapTotal} MB, external ${mem.external} MB)` : '';
    say(
      `  [${label}] ${wallS.toFixed(1)} s, master CPU ${(cpuUsed / 1000).toFixed(1)} s, peak RSS ${peak} MB${memText}; simulator ${loads[label]?.simCores ?? 0} cores`,
    );
  }
}

function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

// ---------------------------------------------------------------- CLI and API

/**
 * `spoke -o json ARGS` through the real CLI: milliseconds, and the output's size. Asynchronous:
 * the simulated agents live in this process and must keep sending heartbeats meanwhile (a
 * spawnSync of a 10 s `site ls` starved them and the master rightly saw them go offline).
 */
async function cliTimed(...a: string[]): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  const child = spawn(BIN.spoke, ['--state-dir', state, '-o', 'json', ...a], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let bytes = 0;
  let err = '';
  child.stdout.on('data', (d: Buffer) => (bytes += d.length));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`spoke ${a.join(' ')} exited ${code}: ${err}`);
  return { ms, bytes };
}

async function cliMedian(...a: string[]): Promise<{ ms: number; bytes: number }> {
  const runs: { ms: number; bytes: number }[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await cliTimed(...a));
  return { ms: Math.round(median(runs.map((r) => r.ms))), bytes: runs[0]?.bytes ?? 0 };
}

let apiClient: wire.OperatorClient | undefined;
/** The operator API over the master's socket (opened once the master first listens). */
function op(): wire.OperatorClient {
  if (!apiClient) throw new Error('the operator API is not open yet');
  return apiClient;
}

async function task(id: number): Promise<wire.Task> {
  return unary<wire.TaskIdRequest, wire.Task>((q, md, cb) => op().getTask(q, md, cb), { id });
}

const FINAL = new Set([wire.TaskState.TASK_STATE_SUCCEEDED, wire.TaskState.TASK_STATE_FAILED, wire.TaskState.TASK_STATE_CANCELLED]);

/**
 * Task ends as the master announces them: one `Events` stream, as a dashboard or `spoke events -f`
 * would follow them. (Polling GetTask for each of 1,000 tasks every 100 ms was 10,000 calls a
 * second on the master, and the dispatch figure measured that load, not the product's.)
 */
class TaskEnds {
  private readonly ended = new Set<number>();
  private readonly waiting = new Map<number, () => void>();
  private stream: ReturnType<wire.OperatorClient['events']> | undefined;

  /** Opens the stream; resolves once the master has it (tasks submitted after this are seen). */
  async open(): Promise<void> {
    this.close();
    const s = op().events({ follow: true, backlog: 1 }, new Metadata());
    this.stream = s;
    s.on('data', (e: wire.SpokeEvent) => {
      if (e.kind !== 'task' || !FINAL_NAMES.has(e.state)) return;
      const id = Number(e.taskId);
      this.ended.add(id);
      this.waiting.get(id)?.();
      this.waiting.delete(id);
    });
    s.on('error', () => undefined); // closed by close(); a lost stream falls back to polling below
    // the master subscribes as the call arrives: the backlog's one event, or a second, says it has
    await Promise.race([new Promise((r) => s.once('data', r)), sleep(1000)]);
  }

  close(): void {
    this.stream?.cancel();
    this.stream = undefined;
  }

  /** Waits for the task's end (event, or a GetTask every 2 s in case the stream was lost), then reads it once. */
  async wait(id: number, ms = 30 * 60_000): Promise<wire.Task> {
    const end = Date.now() + ms;
    for (;;) {
      if (!this.ended.has(id)) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, 2000);
          this.waiting.set(id, () => (clearTimeout(t), r()));
        });
      }
      const t = await task(id);
      if (FINAL.has(t.state)) return t;
      if (Date.now() > end) throw new Error(`task ${id} did not finish`);
    }
  }
}
const FINAL_NAMES = new Set(['succeeded', 'failed', 'cancelled']);
const taskEnds = new TaskEnds();

async function onlineOnMaster(): Promise<number> {
  const r = await unary<wire.Empty, wire.ServerList>((q, md, cb) => op().listServers(q, md, cb), {});
  return r.servers.filter((s) => s.online).length;
}

// ---------------------------------------------------------------- the run

/** Command arrivals at the simulated agents, by type. */
const arrivals = new Map<string, Map<string, number>>();
let fleet: SimFleet | undefined;

/** Waits until every agent has connected `connects` times or more; the seconds it took. */
async function allConnected(agents: SimAgent[], connects: number, ms: number): Promise<number> {
  const t0 = performance.now();
  await until(`${agents.length} agents online`, () => agents.every((a) => a.connects >= connects && a.state === 'online'), ms);
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<Record<string, unknown>> {
  say(`scale: ${AGENTS} agents, ${SITES} sites on ${PLATFORMS} platforms, a ${FILES}-file platform on 1 and on ${MEMBERS} members (work dir ${work})`);
  await startMaster();
  apiClient = operatorClient(state);
  const names = Array.from({ length: AGENTS }, (_, i) => name(i));

  // ---- fleet: tokens, enrollment, online
  const fleetFig = await phase('enroll', async () => {
    const t0 = performance.now();
    const tokens = await createTokens(op(), names);
    const tokensS = (performance.now() - t0) / 1000;
    const sim = new SimFleet({
      master: listen,
      treesDir: join(work, 'sim-trees'),
      onCommand: (agent, type, at) => {
        let m = arrivals.get(type);
        if (!m) arrivals.set(type, (m = new Map()));
        m.set(agent, at);
      },
    });
    const t1 = performance.now();
    fleet = sim;
    await sim.enroll(tokens, 16);
    const enrollS = (performance.now() - t1) / 1000;
    const t2 = performance.now();
    sim.start();
    const agents = [...sim.agents.values()];
    await allConnected(agents, 1, 300_000);
    await until('every agent online on the master', async () => (await onlineOnMaster()) === AGENTS, 120_000).catch(() => undefined);
    return { tokensS: round(tokensS, 1), enrollS: round(enrollS, 1), firstOnlineS: round((performance.now() - t2) / 1000, 1) };
  });
  say(`fleet: ${AGENTS} tokens in ${fleetFig.tokensS} s, enrolled in ${fleetFig.enrollS} s, all online ${fleetFig.firstOnlineS} s after start`);

  const sim = fleet as SimFleet;
  // ---- seed the namespace with the master stopped
  await stopMaster();
  const hosts = names.slice(MEMBERS); // the first MEMBERS agents form the cluster later: no platforms of their own
  const t0 = performance.now();
  const db = openStore(join(state, 'spoke.db'));
  const ns = new Namespace({ db, clock: Date.now });
  const domains: string[] = [];
  db.transaction(() => {
    for (let p = 0; p < PLATFORMS; p++) {
      const pname = `p${String(p + 1).padStart(4, '0')}`;
      const path = `/var/www/${pname}`;
      const server = hosts[p % hosts.length] as string;
      const hash = createHash('sha256').update(pname).digest('hex');
      ns.addPlatform({ name: pname, path, server, source: { kind: 'existing' } });
      ns.setDesiredRootHash(pname, hash);
      ns.setPlatformStatus(pname, 'ready');
      ns.recordObserved(server, path, hash);
      sim.agents.get(server)?.preset(path, hash);
    }
    for (let s = 0; s < SITES; s++) {
      const domain = `site-${s + 1}.example.com`;
      ns.createSite({ domain, platform: `p${String((s % PLATFORMS) + 1).padStart(4, '0')}`, status: 'installed' });
      domains.push(domain);
    }
  })();
  db.close();
  const seedS = (performance.now() - t0) / 1000;
  const dbBytes = (['spoke.db', 'spoke.db-wal'] as const).reduce((n, f) => n + (existsSync(join(state, f)) ? statSync(join(state, f)).size : 0), 0);
  say(`namespace: ${PLATFORMS} platforms, ${SITES} sites seeded in ${seedS.toFixed(1)} s; SQLite ${(dbBytes / 1024 ** 2).toFixed(1)} MB`);

  // ---- restart: the reconnect storm
  const agents = [...sim.agents.values()];
  const before = agents.map((a) => a.connects);
  const restart = await phase('restart', async () => {
    await startMaster();
    const t1 = performance.now();
    await until('every agent back', () => agents.every((a, i) => a.connects > (before[i] ?? 0) && a.state === 'online'), 300_000);
    const backS = (performance.now() - t1) / 1000;
    const onMaster = await onlineOnMaster();
    // the storm's tail: the hellos' observed trees, the reconcile passes they woke
    await sleep(5000);
    return { allOnlineS: round(backS, 1), onlineOnMaster: onMaster };
  });
  say(`restart: all ${AGENTS} agents back ${restart.allOnlineS} s after the master listened (${restart.onlineOnMaster} online on the master)`);

  // ---- reads through the real CLI
  const reads = await phase('reads', async () => {
    const mid = domains[Math.floor(domains.length / 2)] ?? '';
    // the master's part of site ls: the ListSites call alone (no CLI start, no JSON)
    const api: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t1 = performance.now();
      await allSites(op());
      api.push(performance.now() - t1);
    }
    return {
      siteLsApiMs: Math.round(median(api)),
      siteLs: await cliMedian('site', 'ls'),
      siteShow: mid ? await cliMedian('site', 'show', mid) : { ms: 0, bytes: 0 },
      platformLs: await cliMedian('platform', 'ls'),
      serverLs: await cliMedian('server', 'ls'),
    };
  });
  say(
    `reads (-o json, median of ${RUNS}): ListSites API ${reads.siteLsApiMs} ms; site ls ${reads.siteLs.ms} ms (${(reads.siteLs.bytes / 1024 ** 2).toFixed(1)} MB), site show ${reads.siteShow.ms} ms, platform ls ${reads.platformLs.ms} ms, server ls ${reads.serverLs.ms} ms`,
  );

  // ---- server verify of every agent at once
  await taskEnds.open(); // from here to the end the master is the same process
  const verify = await phase('verify', async () => {
    arrivals.delete('verifyServer');
    // whose event loop held the commands: the master's and the simulator's own (this process)
    await masterLoopDelay();
    const simLoop = monitorEventLoopDelay({ resolution: 10 });
    simLoop.enable();
    const t1 = Date.now();
    const queued = await Promise.all(names.map((n) => unary<wire.NameRequest, wire.Task>((q, md, cb) => op().verifyServer(q, md, cb), { name: n })));
    const submittedMs = Date.now() - t1;
    const done = await Promise.all(queued.map((t) => taskEnds.wait(t.id)));
    const endMs = Math.max(...done.map((t) => Number(t.finishedMs)));
    const at = arrivals.get('verifyServer') ?? new Map<string, number>();
    const dispatch: number[] = [];
    const wait: number[] = [];
    for (const t of done) {
      const server = JSON.parse(t.paramsJson || '{}') as { server?: string };
      const got = at.get(server.server ?? '');
      if (got !== undefined) dispatch.push(got - Number(t.startedMs));
      wait.push(Number(t.startedMs) - Number(t.createdMs));
    }
    const failed = done.filter((t) => t.state !== wire.TaskState.TASK_STATE_SUCCEEDED);
    simLoop.disable();
    const masterLoop = await masterLoopDelay();
    return {
      masterLoopP99Ms: masterLoop.p99Ms,
      masterLoopMaxMs: masterLoop.maxMs,
      simLoopP99Ms: round(simLoop.percentile(99) / 1e6, 1),
      simLoopMaxMs: round(simLoop.max / 1e6, 1),
      tasks: done.length,
      failed: failed.length,
      errors: [...new Set(failed.map((t) => `${t.errorCode}: ${t.errorMessage}`))].slice(0, 3),
      submitMs: submittedMs,
      dispatchP50Ms: pct(dispatch, 50),
      dispatchP99Ms: pct(dispatch, 99),
      queueP50Ms: pct(wait, 50),
      queueP99Ms: pct(wait, 99),
      endToEndS: round((endMs - t1) / 1000, 1),
    };
  });
  say(
    `${verify.errors.map((e) => `verify failure: ${e}\n`).join('')}verify: ${verify.tasks} tasks (${verify.failed} failed), dispatch p50 ${verify.dispatchP50Ms} ms p99 ${verify.dispatchP99Ms} ms, queue p50 ${verify.queueP50Ms} ms p99 ${verify.queueP99Ms} ms, end to end ${verify.endToEndS} s; event-loop delay p99/max: master ${verify.masterLoopP99Ms}/${verify.masterLoopMaxMs} ms, simulator ${verify.simLoopP99Ms}/${verify.simLoopMaxMs} ms`,
  );

  // ---- one platform on one agent, then on a cluster
  const solo = names[MEMBERS] as string;
  const members = names.slice(0, MEMBERS);
  const soloTree = join(masterRoot, 'var/www/big-solo');
  const stats = makeDrupal8Tree(soloTree, { files: FILES });
  const clusterTree = join(masterRoot, 'var/www/big-cluster');
  cpSync(soloTree, clusterTree, { recursive: true, verbatimSymlinks: true });
  const addPlatform = async (pname: string, path: string, server: string) => {
    const r = await unary<wire.AddPlatformRequest, wire.AddPlatformResponse>((q, md, cb) => op().addPlatform(q, md, cb), {
      name: pname,
      path,
      server,
      source: { kind: wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_EXISTING, makefile: '', makefileName: '', gitUrl: '', gitRef: '', makefileDir: '' },
      live: false,
      excludes: [],
      noVerify: false,
      drift: '',
    });
    const t = await taskEnds.wait(r.task?.id ?? 0);
    if (t.state !== wire.TaskState.TASK_STATE_SUCCEEDED) throw new Error(`platform ${pname}: ${t.errorCode}: ${t.errorMessage}`);
    return { ms: Number(t.finishedMs) - Number(t.startedMs) };
  };
  const one = await phase('converge-1', () => addPlatform('big-solo', '/var/www/big-solo', solo));
  await unary<wire.CreateClusterRequest, wire.Server>((q, md, cb) => op().createCluster(q, md, cb), { name: 'c-sim', members });
  await sleep(1000); // the reconcile pass the join woke
  const many = await phase(`converge-${MEMBERS}`, () => addPlatform('big-cluster', '/var/www/big-cluster', 'c-sim'));
  taskEnds.close();
  const converge = {
    files: stats.files,
    bytes: stats.bytes,
    oneMs: one.ms,
    membersMs: many.ms,
    members: MEMBERS,
    ratio: round(many.ms / Math.max(1, one.ms), 2),
  };
  say(`converge: ${stats.files} files on 1 agent ${one.ms} ms, on ${MEMBERS} members ${many.ms} ms: ${converge.ratio}×`);

  const finalRss = rssMb(master.pid);
  return {
    load: (await import('node:os')).loadavg().map((x) => round(x, 2)),
    sizes: { agents: AGENTS, sites: SITES, platforms: PLATFORMS, files: FILES, members: MEMBERS },
    fleet: fleetFig,
    namespace: { seedS: round(seedS, 1), sqliteMb: round(dbBytes / 1024 ** 2, 1) },
    restart,
    reads: {
      siteLsApiMs: reads.siteLsApiMs,
      siteLsMs: reads.siteLs.ms,
      siteLsMb: round(reads.siteLs.bytes / 1024 ** 2, 1),
      siteShowMs: reads.siteShow.ms,
      platformLsMs: reads.platformLs.ms,
      serverLsMs: reads.serverLs.ms,
    },
    verify,
    converge,
    master: { peakRssMb: peakRss, finalRssMb: finalRss, phases: loads },
  };
}

function table(r: Record<string, unknown>): string {
  const x = r as {
    fleet: { tokensS: number; enrollS: number; firstOnlineS: number };
    namespace: { seedS: number; sqliteMb: number };
    restart: { allOnlineS: number };
    reads: { siteLsApiMs: number; siteLsMs: number; siteLsMb: number; siteShowMs: number; platformLsMs: number; serverLsMs: number };
    verify: {
      dispatchP50Ms: number;
      dispatchP99Ms: number;
      queueP99Ms: number;
      endToEndS: number;
      failed: number;
      masterLoopP99Ms: number;
      masterLoopMaxMs: number;
      simLoopP99Ms: number;
      simLoopMaxMs: number;
    };
    converge: { oneMs: number; membersMs: number; ratio: number };
    master: { peakRssMb: number; phases: Record<string, Load> };
  };
  const ok = (met: boolean) => (met ? 'met' : 'NOT MET');
  const rows: string[][] = [
    ['figure', 'value', 'goal'],
    [`enroll ${AGENTS} agents (tokens + Enroll rpc)`, `${x.fleet.tokensS} + ${x.fleet.enrollS} s`, ''],
    [`all ${AGENTS} online after their first start`, `${x.fleet.firstOnlineS} s`, ''],
    [
      `all ${AGENTS} online after a master restart`,
      `${x.restart.allOnlineS} s`,
      `≤ ${GOALS.onlineAfterRestartS} s: ${ok(x.restart.allOnlineS <= GOALS.onlineAfterRestartS)}`,
    ],
    [`seed ${PLATFORMS} platforms, ${SITES} sites; SQLite size`, `${x.namespace.seedS} s; ${x.namespace.sqliteMb} MB`, ''],
    ["ListSites alone (the master's part of site ls)", `${x.reads.siteLsApiMs} ms`, ''],
    [`site ls -o json (${x.reads.siteLsMb} MB)`, `${x.reads.siteLsMs} ms`, `< ${GOALS.siteLsMs} ms: ${ok(x.reads.siteLsMs < GOALS.siteLsMs)}`],
    ['site show -o json', `${x.reads.siteShowMs} ms`, ''],
    ['platform ls -o json', `${x.reads.platformLsMs} ms`, ''],
    ['server ls -o json', `${x.reads.serverLsMs} ms`, ''],
    [
      `server verify × ${AGENTS}: dispatch p50 / p99`,
      `${x.verify.dispatchP50Ms} / ${x.verify.dispatchP99Ms} ms`,
      `p99 < ${GOALS.dispatchP99Ms} ms: ${ok(x.verify.dispatchP99Ms < GOALS.dispatchP99Ms)}`,
    ],
    [
      `server verify × ${AGENTS}: event-loop delay p99 / max, master; simulator`,
      `${x.verify.masterLoopP99Ms} / ${x.verify.masterLoopMaxMs} ms; ${x.verify.simLoopP99Ms} / ${x.verify.simLoopMaxMs} ms`,
      '',
    ],
    [
      `server verify × ${AGENTS}: queue p99, end to end`,
      `${x.verify.queueP99Ms} ms, ${x.verify.endToEndS} s${x.verify.failed ? ` (${x.verify.failed} failed)` : ''}`,
      '',
    ],
    [
      `converge ${FILES} files: 1 agent / ${MEMBERS} members`,
      `${x.converge.oneMs} / ${x.converge.membersMs} ms = ${x.converge.ratio}×`,
      `≤ ${GOALS.clusterRatio}×: ${ok(x.converge.ratio <= GOALS.clusterRatio)}`,
    ],
    ['master peak RSS', `${x.master.peakRssMb} MB`, `< ${GOALS.masterRssMb} MB: ${ok(x.master.peakRssMb < GOALS.masterRssMb)}`],
    ...Object.entries(x.master.phases).map(([k, l]) => [
      `master in ${k}`,
      `${l.cpuS} s CPU in ${l.wallS} s (${l.cores} cores), ${l.peakRssMb} MB${l.memory ? ` (heap ${l.memory.heapUsed}/${l.memory.heapTotal}, external ${l.memory.external})` : ''}; simulator ${l.simCores} cores`,
      '',
    ]),
  ];
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(w[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

try {
  const r = await main();
  if (args.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  else process.stderr.write(`\n${table(r)}\n`);
} finally {
  fleet?.stop();
  apiClient?.close();
  // the last master's output (e.g. its --trace-gc lines, with SPOKE_BENCH_MASTER_FLAGS)
  if (process.env.SPOKE_BENCH_MASTER_LOG) writeFileSync(process.env.SPOKE_BENCH_MASTER_LOG, procs.all.at(-1)?.out ?? '');
  await procs.stop();
  if (!args.keep) rmSync(work, { recursive: true, force: true });
  else say(`kept ${work}`);
}
