/**
 * `pnpm bench:sync [--tree DIR] [--target-dir DIR | --fresh-fs] [--runs N] [--json] [--skip-big] [--only CASES] [--keep] [--profile DIR]`
 *
 * Spoke's converge against an rsync daemon (`rsync -a --delete --sockopts=TCP_NODELAY` over TCP on
 * loopback — the tool a user would pick instead, in its fastest setting), on the same tree, in one
 * run. Spoke is timed from the operator API request (VerifyPlatform / AddPlatform over the master's
 * socket) to the task's completion; the CLI's own start-up is measured separately. Prints medians,
 * the ratio Spoke/rsync, bytes on the wire, CPU time, and peak RSS of master and agent. For the
 * initial sync and the second platform it also times a local `tar | tar` of the same tree on the same
 * file system: the floor any tool creating those files there pays. Not a test: it asserts nothing.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { credentials, Metadata } from '@grpc/grpc-js';
import { MASTER_NODE_FLAGS, wire } from '@spoke/shared';
import { cpuMs, median, Procs, peakRssMb, quiesce, resetPeakRss, rssMb, timedTarCopy, until } from './lib.js';

const ROOT = join(import.meta.dirname, '..');
const BIN = {
  spoke: join(ROOT, 'packages/master/dist/spoke.js'),
  master: join(ROOT, 'packages/master/dist/spoke-master.js'),
  agent: join(ROOT, 'packages/agent/dist/spoke-agent.js'),
};

const { values: args } = parseArgs({
  options: {
    tree: { type: 'string' },
    'target-dir': { type: 'string' },
    runs: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    'skip-big': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    only: { type: 'string' },
    profile: { type: 'string' },
    'fresh-fs': { type: 'boolean', default: false },
  },
});
/**
 * `--only initial,no-op,1-file,100-files,50mb,second,200k`: run just these cases (default: all;
 * `200k` is the 200,000-file master-RSS case, also left out by --skip-big).
 */
const CASES = ['initial', 'no-op', '1-file', '100-files', '50mb', 'second', '200k'];
const only = new Set((args.only ?? CASES.join(',')).split(',').map((c) => c.trim()));
for (const c of only) {
  if (!CASES.includes(c)) {
    process.stderr.write(`error: INVALID_ARGUMENT: unknown case ${c}; cases: ${CASES.join(', ')}\n`);
    process.exit(2);
  }
}
const RUNS = Math.max(1, Number(args.runs));
const say = (s: string) => {
  if (!args.json) process.stderr.write(`${s}\n`);
};

if (spawnSync('rsync', ['--version']).status !== 0) {
  process.stderr.write('error: CONFIG_INVALID: rsync is not installed (apt-get install rsync); the benchmark compares against it\n');
  process.exit(1);
}

/**
 * `--fresh-fs` (root only): every tree lives on a new journaled ext4 (a sparse loop image),
 * like a web server's disk. This VM's root file system is an ext4 without a journal, where
 * ext4 skips inodes freed in the last minutes on every allocation (recently_deleted(), only
 * checked without a journal): after the tests or an earlier run deleted trees, creating 20,000
 * files took 2–9 s instead of 0.3 s, for Spoke and rsync alike but unevenly, so the ratios
 * measured there say more about that churn than about either tool.
 */
let freshFs: { image: string; mount: string } | undefined;
if (args['fresh-fs']) {
  const base = mkdtempSync(join(tmpdir(), 'spoke-bench-fs-'));
  freshFs = { image: join(base, 'fs.img'), mount: join(base, 'mnt') };
  mkdirSync(freshFs.mount);
  const run = (cmd: string, a: string[]) => {
    const r = spawnSync(cmd, a, { encoding: 'utf8' });
    if (r.status !== 0) {
      process.stderr.write(
        `error: CONFIG_INVALID: --fresh-fs: ${cmd} ${a.join(' ')} failed (it needs root and a loop device): ${(r.stderr || r.error?.message || '').trim()}\n`,
      );
      rmSync(base, { recursive: true, force: true });
      process.exit(1);
    }
  };
  run('truncate', ['-s', '16G', freshFs.image]);
  run('mkfs.ext4', ['-q', '-F', '-N', '3000000', freshFs.image]);
  run('mount', ['-o', 'loop', freshFs.image, freshFs.mount]);
}
const workParent = freshFs?.mount ?? (existsSync('/dev/shm') && !args['target-dir'] ? tmpdir() : (args['target-dir'] ?? tmpdir()));
const work = mkdtempSync(join(workParent, 'spoke-bench-'));
const masterRoot = join(work, 'master-root');
const agentRoot = join(work, 'agent-root');
const rsyncTarget = join(work, 'rsync-target');
const NS = '/var/www';
mkdirSync(join(masterRoot, NS), { recursive: true });
mkdirSync(rsyncTarget, { recursive: true });

// ---------------------------------------------------------------- trees

/** Deterministic pseudo-random bytes (incompressible, like real code is not — rsync runs without -z anyway). */
function content(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < size; off += 32) {
    block.copy(out, off, 0, Math.min(32, size - off));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** A Drupal-sized tree: ~20,000 files in nested module dirs, ~85 MB. */
function makeDrupalTree(dir: string): void {
  let n = 0;
  for (let m = 0; m < 200; m++) {
    for (let s = 0; s < 10; s++) {
      const d = join(dir, m < 60 ? 'core/modules' : 'modules/contrib', `mod${m}`, `sub${s}`);
      mkdirSync(d, { recursive: true });
      for (let f = 0; f < 10; f++) {
        // sizes: mostly small PHP/YAML/JS, a few large assets; average ≈ 4.25 KB
        const size = n % 50 === 0 ? 60_000 : 1_000 + ((n * 7919) % 4_200);
        writeFileSync(join(d, `file${f}.php`), content(`f${n}`, size));
        n++;
      }
    }
  }
}

function makeSmallFileTree(dir: string, count: number): void {
  for (let i = 0; i < count; i++) {
    const d = join(dir, `d${Math.floor(i / 1000)}`, `e${Math.floor(i / 100) % 10}`);
    if (i % 100 === 0) mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `f${i}.txt`), `file ${i}\n`);
  }
}

function treeStats(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        files++;
        bytes += statSync(p).size;
      }
    }
  };
  walk(dir);
  return { files, bytes };
}

// ---------------------------------------------------------------- processes

const env = { ...process.env, SPOKE_LOG_LEVEL: args.keep ? 'debug' : 'warn', SPOKE_DRIFT_INTERVAL_MS: '3600000' };
const procs = new Procs(env, args.profile);
const daemon = (script: string, argv: string[], nodeFlags: readonly string[] = []) => procs.daemon(script, argv, nodeFlags);
/** The processes whose CPU time a case counts. */
const daemonPids: { master?: number; agent?: number; rsyncd?: number } = {};

function cli(...a: string[]): string {
  return execFileSync(process.execPath, [BIN.spoke, '--state-dir', join(work, 'state'), ...a], { env, encoding: 'utf8' });
}

// ---------------------------------------------------------------- operator API

let api: wire.OperatorClient;

function unary<Req, Res>(method: 'verifyPlatform' | 'addPlatform' | 'getServer', req: Req): Promise<Res> {
  const fn = (api[method] as unknown as (r: Req, m: Metadata, cb: (e: Error | null, r: Res) => void) => void).bind(api);
  return new Promise((ok, ko) => fn(req, new Metadata(), (e, r) => (e ? ko(e) : ok(r))));
}

interface TaskResult {
  sent: { files: number; bytes: number };
  reused: { files: number; bytes: number };
}

function waitTask(id: number): Promise<wire.Task> {
  return new Promise((ok, ko) => {
    let last: wire.Task | undefined;
    const s = api.watchTask({ id, fromSeq: 0 });
    s.on('data', (ev: wire.TaskEvent) => {
      if (ev.event?.$case === 'task') last = ev.event.value;
    });
    s.on('error', ko);
    s.on('end', () => (last ? ok(last) : ko(new Error('no task state'))));
  });
}

/** With --profile: the monotonic µs window of every timed request (V8 profiles use the same clock). */
const spans: { case: string; from: number; to: number }[] = [];
let currentCase = '';
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

async function timed(start: () => Promise<wire.Task | undefined>): Promise<{ ms: number; bytes: number; cpu: number; task: wire.Task }> {
  quiesce();
  const cpu0 = cpuMs(daemonPids.master) + cpuMs(daemonPids.agent);
  const t0 = performance.now();
  const from = nowUs();
  const t = await start();
  if (!t) throw new Error('no task was queued');
  const done = await waitTask(t.id);
  const ms = performance.now() - t0;
  spans.push({ case: currentCase, from, to: nowUs() });
  if (done.state !== wire.TaskState.TASK_STATE_SUCCEEDED) throw new Error(`task ${done.id} ended ${done.errorCode}: ${done.errorMessage}`);
  const r = JSON.parse(done.resultJson) as TaskResult;
  return { ms, bytes: r.sent.bytes, cpu: cpuMs(daemonPids.master) + cpuMs(daemonPids.agent) - cpu0, task: done };
}

const verify = (name: string) => timed(() => unary<wire.NameRequest, wire.Task>('verifyPlatform', { name }));
const add = (name: string, path: string) =>
  timed(async () => {
    const r = await unary<wire.AddPlatformRequest, wire.AddPlatformResponse>('addPlatform', {
      name,
      path,
      server: 'bench',
      source: { kind: wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_EXISTING, makefile: '', makefileName: '', gitUrl: '', gitRef: '', makefileDir: '' },
      live: false,
      excludes: [],
      noVerify: false,
      drift: '',
    });
    return r.task;
  });

// ---------------------------------------------------------------- rsync

let rsyncPort = 0;
function rsync(name: string): { ms: number; bytes: number; cpu: number } {
  quiesce();
  const cpu0 = cpuMs(process.pid, 'children') + cpuMs(daemonPids.rsyncd, 'both');
  const t0 = performance.now();
  const r = spawnSync(
    'rsync',
    ['-a', '--delete', '--sockopts=TCP_NODELAY', '--stats', `rsync://127.0.0.1:${rsyncPort}/www/${name}/`, join(rsyncTarget, name, '/')],
    { encoding: 'utf8' },
  );
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`rsync failed: ${r.stderr}`);
  const num = (re: RegExp) => Number((re.exec(r.stdout)?.[1] ?? '0').replace(/,/g, ''));
  const cpu = cpuMs(process.pid, 'children') + cpuMs(daemonPids.rsyncd, 'both') - cpu0;
  return { ms, bytes: num(/Total bytes sent: ([\d,]+)/) + num(/Total bytes received: ([\d,]+)/), cpu };
}

// ---------------------------------------------------------------- cases

interface Row {
  case: string;
  spokeMs: number;
  rsyncMs: number;
  ratio: number;
  spokeBytes: number;
  rsyncBytes: number;
  /** CPU ms (user + system), median: master + agent; rsync client + daemon. */
  spokeCpuMs: number;
  rsyncCpuMs: number;
  target: string;
  /**
   * A floor, where measured: a local `tar -c | tar -x` of the same tree into an empty dir on the
   * same file system, right after the rsync run (no network, no checksums, no manifest; two
   * processes, like master and agent; the cheapest local copy measured here, ~40 % under `cp -a`).
   * Any tool that creates those files on that disk pays about this much.
   */
  localCopyMs?: number;
}
const rows: Row[] = [];
const failures: string[] = [];

type Run = { ms: number; bytes: number; cpu: number };
function record(name: string, target: string, spoke: Run[], rs: Run[], localCopy?: number[]): void {
  const row: Row = {
    case: name,
    spokeMs: Math.round(median(spoke.map((x) => x.ms))),
    rsyncMs: Math.round(median(rs.map((x) => x.ms))),
    ratio: 0,
    spokeBytes: Math.round(median(spoke.map((x) => x.bytes))),
    rsyncBytes: Math.round(median(rs.map((x) => x.bytes))),
    spokeCpuMs: Math.round(median(spoke.map((x) => x.cpu))),
    rsyncCpuMs: Math.round(median(rs.map((x) => x.cpu))),
    target,
  };
  row.ratio = Math.round((row.spokeMs / Math.max(row.rsyncMs, 0.001)) * 1000) / 1000;
  if (localCopy !== undefined && localCopy.length > 0) row.localCopyMs = Math.round(median(localCopy));
  rows.push(row);
  const floor =
    row.localCopyMs === undefined
      ? ''
      : `; local tar|tar ${row.localCopyMs} ms (${ratioOf(row.localCopyMs, row.rsyncMs)}× rsync; spoke ${ratioOf(row.spokeMs, row.localCopyMs)}× tar|tar)`;
  say(
    `  ${name}: spoke ${row.spokeMs} ms, rsync ${row.rsyncMs} ms, ratio ${row.ratio} (target ${target}); CPU spoke ${row.spokeCpuMs} ms, rsync ${row.rsyncCpuMs} ms${floor}`,
  );
}

function ratioOf(a: number, b: number): number {
  return Math.round((a / Math.max(b, 0.001)) * 1000) / 1000;
}

/**
 * The local-copy floor (see Row.localCopyMs): `tar -c | tar -x` of a platform's tree on the master
 * into an empty dir of the same file system, timed, then moved aside like the other copies.
 */
function localCopy(name: string): number {
  const dest = join(work, 'local-copy', name);
  mkdirSync(dest, { recursive: true });
  const ms = timedTarCopy(join(masterRoot, NS, name), dest);
  trash(dest);
  return ms;
}

/** Edits files in both the master tree (seen by the watcher) and nothing else: rsync reads the same tree. */
function editFiles(dir: string, count: number, round: number): void {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (files.length >= count) return;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) files.push(p);
    }
  };
  walk(dir);
  for (const f of files) writeFileSync(f, Buffer.concat([readFileSync(f).subarray(0, 64), Buffer.from(`edit ${round} ${randomBytes(8).toString('hex')}\n`)]));
}

function fsType(dir: string): string {
  const r = spawnSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

/** Moves a copy out of every root (same file system: a rename); deleted with the work dir at the end. */
let trashed = 0;
function trash(p: string): void {
  if (!existsSync(p)) return;
  mkdirSync(join(work, 'trash'), { recursive: true });
  renameSync(p, join(work, 'trash', String(trashed++)));
}

const settle = () => new Promise((r) => setTimeout(r, 400)); // let the master's watcher see the edit

async function main(): Promise<void> {
  const tree = join(masterRoot, NS, 'd0');
  // `--only 200k` needs neither the 20k tree nor the d0 platform: skip them to iterate quickly.
  const needTree = [...only].some((c) => c !== '200k');
  if (!needTree) {
    mkdirSync(tree, { recursive: true });
  } else if (args.tree) {
    say(`copying ${args.tree} …`);
    cpSync(args.tree, tree, { recursive: true, verbatimSymlinks: true });
  } else {
    say('generating a Drupal-sized tree …');
    makeDrupalTree(tree);
  }
  const st = treeStats(tree);
  say(
    `tree: ${st.files} files, ${(st.bytes / 1e6).toFixed(1)} MB, on ${freshFs ? 'a fresh journaled ext4 (--fresh-fs)' : `${workParent} (${fsType(workParent)})`}`,
  );

  // rsync daemon serving the master's /var/www
  rsyncPort = 20000 + Math.floor(Math.random() * 20000);
  writeFileSync(
    join(work, 'rsyncd.conf'),
    `use chroot = no\nreverse lookup = no\n[www]\npath = ${join(masterRoot, NS)}\nread only = yes\nuid = root\ngid = root\n`,
  );
  const rsyncd = spawn('rsync', ['--daemon', '--no-detach', `--config=${join(work, 'rsyncd.conf')}`, `--port=${rsyncPort}`, '--address=127.0.0.1'], {
    stdio: 'ignore',
  });
  procs.track(rsyncd);
  daemonPids.rsyncd = rsyncd.pid;

  // master + agent
  const master = daemon(BIN.master, ['run', '--state-dir', join(work, 'state'), '--listen', '127.0.0.1:0', '--root', masterRoot], MASTER_NODE_FLAGS);
  const listen = (await until('master', () => /listening on (\S+);/.exec(master.out)))[1] as string;
  const token = cli('server', 'token', 'bench').trim();
  execFileSync(process.execPath, [BIN.agent, 'enroll', '--master', listen, '--token', token, '--state-dir', join(work, 'agent-state'), '--roots', NS], { env });
  const agent = daemon(BIN.agent, ['run', '--state-dir', join(work, 'agent-state'), '--root', agentRoot]);
  daemonPids.master = master.pid;
  daemonPids.agent = agent.pid;
  api = new wire.OperatorClient(`unix://${join(work, 'state', 'spoke.sock')}`, credentials.createInsecure());
  await until('agent online', () => /"online": true/.test(cli('-o', 'json', 'server', 'show', 'bench')) || undefined);

  // CLI start-up cost, measured alone
  const cliMs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    cli('version');
    cliMs.push(performance.now() - t0);
  }
  say(`spoke CLI start-up: ${Math.round(median(cliMs))} ms (not included below)`);

  const guard = async (label: string, fn: () => Promise<void>) => {
    const key = {
      'initial sync': 'initial',
      'no-op': 'no-op',
      '1 file changed': '1-file',
      '100 files changed': '100-files',
      'one 50 MB file added': '50mb',
      'second platform': 'second',
    }[label];
    if (key && !only.has(key)) return;
    currentCase = key ?? label;
    try {
      await fn();
    } catch (e) {
      say(`  ${label}: FAILED: ${e instanceof Error ? e.message : String(e)}`);
      failures.push(`${label}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  // 1. initial sync into empty: a fresh platform path each run (hard-linked copy on the master)
  say('initial sync …');
  await guard('initial sync', async () => {
    const s: Run[] = [];
    const r: Run[] = [];
    const c: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const name = `init${i}`;
      execFileSync('cp', ['-al', tree, join(masterRoot, NS, name)]);
      // the master's scan of a new path is part of the work (rsync reads the source too)
      s.push(await add(name, `${NS}/${name}`));
      r.push(rsync(name));
      c.push(localCopy(name));
      // The next run must not find this content on the agent. Moved aside, not deleted: on an
      // ext4 without a journal (this machine's), an inode freed in the last minutes is skipped
      // by every allocation in its group (ext4's recently_deleted), so creating 20,000 files
      // right after deleting 20,000 cost up to 10× more, and most to whichever tool ran first.
      cli('platform', 'rm', name);
      trash(join(agentRoot, NS, name));
      trash(join(rsyncTarget, name));
      trash(join(masterRoot, NS, name));
      for (const d of readdirSync(join(work, 'agent-state', 'trees'))) {
        if (readFileSync(join(work, 'agent-state', 'trees', d, 'head.json'), 'utf8').includes(`/${name}"`)) {
          trash(join(work, 'agent-state', 'trees', d));
        }
      }
    }
    record('initial sync into empty', '≤ 0.8', s, r, c);
  });

  // the reference platform for the delta cases
  // the reference platform: the delta cases edit it, the second platform shares 95 % with it
  if (['no-op', '1-file', '100-files', '50mb', 'second'].some((c) => only.has(c))) {
    await add('d0', `${NS}/d0`);
    rsync('d0');
  }

  const delta = async (label: string, target: string, change: (round: number) => void) => {
    const s: Run[] = [];
    const r: Run[] = [];
    for (let i = 0; i < RUNS; i++) {
      change(i);
      await settle();
      s.push(await verify('d0'));
      r.push(rsync('d0'));
    }
    record(label, target, s, r);
  };
  say('deltas …');
  await guard('no-op', () => delta('no-op', '≤ 0.05', () => undefined));
  await guard('1 file changed', () => delta('1 file changed', '≤ 0.1', (i) => editFiles(tree, 1, i)));
  await guard('100 files changed', () => delta('100 files changed', '≤ 0.3', (i) => editFiles(tree, 100, i)));
  await guard('one 50 MB file added', () =>
    delta('one 50 MB file added', '≤ 1.0', (i) => {
      rmSync(join(tree, 'big'), { recursive: true, force: true });
      mkdirSync(join(tree, 'big'));
      writeFileSync(join(tree, 'big', `blob${i}.bin`), content(`big${i}`, 50 * 1024 * 1024));
    }),
  );

  // second platform sharing 95 % of its files with the first
  say('shared-core second platform …');
  await guard('second platform', async () => {
    const s: Run[] = [];
    const r: Run[] = [];
    const c: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const name = `second${i}`;
      const p = join(masterRoot, NS, name);
      cpSync(tree, p, { recursive: true });
      editFiles(join(p, 'modules'), Math.round(st.files * 0.05), 1000 + i);
      s.push(await add(name, `${NS}/${name}`));
      r.push(rsync(name));
      c.push(localCopy(name));
      cli('platform', 'rm', name);
    }
    // issue 19: measured against the local copy of the same tree in the same run (see Row.localCopyMs)
    record('second platform sharing 95 %', '≤ 1.25× tar|tar', s, r, c);
  });

  const rss20k = { master: peakRssMb(master.pid), agent: peakRssMb(agent.pid) };
  let bigRss = 0;
  let bigPhaseRss: number | null = null;
  let bigStartRss: number | null = null;
  if (!args['skip-big'] && only.has('200k')) {
    say('200,000-file tree (master RSS) …');
    const big = join(masterRoot, NS, 'big200k');
    makeSmallFileTree(big, 200_000);
    // Measure this phase alone: the master's peak so far may come from the 20k cases above.
    bigStartRss = rssMb(master.pid);
    const reset = resetPeakRss(master.pid);
    if (!reset) say("  (could not reset the master's peak RSS: the 200k-phase figure is the peak since start)");
    await guard('200,000-file tree', async () => {
      const t = await add('big200k', `${NS}/big200k`);
      say(`  200,000-file tree: initial converge ${Math.round(t.ms)} ms`);
      const v = await verify('big200k');
      say(`  200,000-file tree: no-op verify (tree too large to watch: re-walked) ${Math.round(v.ms)} ms`);
    });
    bigRss = peakRssMb(master.pid);
    bigPhaseRss = reset ? bigRss : null;
  }

  const out = {
    tree: { files: st.files, bytes: st.bytes },
    fileSystem: freshFs ? 'a fresh journaled ext4 (--fresh-fs)' : `${workParent} (${fsType(workParent)})`,
    runs: RUNS,
    cliStartupMs: Math.round(median(cliMs)),
    cases: rows,
    failures,
    peakRssMb: {
      // peak since start, before the 200k case (the 20k cases)
      master: rss20k.master,
      agent: rss20k.agent,
      // peak of the master during the 200k case alone (VmHWM reset before it); null if not run
      master200kPhase: bigPhaseRss,
      // the master's RSS when that phase started (what it kept from the cases before)
      master200kStart: bigStartRss,
      // peak since start over every case run (the old "masterAfter200k" figure)
      masterOverall: Math.max(rss20k.master, bigRss) || null,
      agentOverall: peakRssMb(agent.pid),
    },
    note: 'Spoke timed from the operator API request to task completion; bytes = blob payload (Spoke) vs rsync --stats total',
  };
  if (args.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  else {
    const w = (s: string | number, n: number) => String(s).padEnd(n);
    process.stdout.write(
      `\n${w('case', 32)}${w('spoke ms', 10)}${w('rsync ms', 10)}${w('ratio', 8)}${w('target', 8)}${w('spoke bytes', 14)}${w('rsync bytes', 14)}${w('CPU ms spoke / rsync', 22)}local tar|tar ms (× rsync)\n`,
    );
    for (const r of rows) {
      const floor = r.localCopyMs === undefined ? '' : `${r.localCopyMs} (${ratioOf(r.localCopyMs, r.rsyncMs)})`;
      process.stdout.write(
        `${w(r.case, 32)}${w(r.spokeMs, 10)}${w(r.rsyncMs, 10)}${w(r.ratio, 8)}${w(r.target, 8)}${w(r.spokeBytes, 14)}${w(r.rsyncBytes, 14)}${w(`${r.spokeCpuMs} / ${r.rsyncCpuMs}`, 22)}${floor}\n`,
      );
    }
    process.stdout.write(
      `${failures.length ? `\nfailed: ${failures.join('; ')}\n` : ''}\npeak RSS: master ${out.peakRssMb.master} MB, agent ${out.peakRssMb.agent} MB (20k cases)${bigRss ? `; master during the 200,000-file tree alone: ${bigPhaseRss ?? '? (no reset)'} MB (from ${bigStartRss} MB at its start); overall: master ${out.peakRssMb.masterOverall} MB, agent ${out.peakRssMb.agentOverall} MB` : ''}; CLI start-up ${out.cliStartupMs} ms\n`,
    );
  }
}

main()
  .catch((e: unknown) => {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    api?.close();
    await procs.stop();
    if (args.profile) {
      writeFileSync(join(args.profile, 'spans.json'), JSON.stringify(spans));
      process.stderr.write(`CPU profiles in ${args.profile} (spans.json: the timed windows, for scripts/profile-spans.mjs)\n`);
    }
    if (args.keep) {
      for (const [i, p] of procs.all.entries()) writeFileSync(join(work, `proc${i}.log`), p.out);
      process.stderr.write(`kept ${work}\n`);
    } else rmSync(work, { recursive: true, force: true });
    if (freshFs && !args.keep) {
      spawnSync('umount', [freshFs.mount]);
      rmSync(dirname(freshFs.image), { recursive: true, force: true });
    }
    void dirname;
  });
