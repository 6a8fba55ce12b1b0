/**
 * `pnpm bench:verify [--files N] [--runs N] [--json] [--keep] [--target-dir DIR]`
 *
 * `platform verify` on a generated Drupal-8+-shaped tree (default 20,000 files, see
 * drupal-tree.ts), with a real master and one agent on loopback:
 * - cold verify: the first verify of a platform registered with --no-verify — the master's first
 *   walk and hash of the tree, the registry parse, and the initial sync to the agent (page cache
 *   warm: the tree was just written);
 * - no-change verify: nothing changed since the last verify (target ≤ 200 ms), the first one
 *   after the cold verify reported on its own (the watcher's ready re-walk lands there);
 * - one .info.yml changed (the registry is parsed again) and one .php changed (it is not).
 * Timed from the operator API request (VerifyPlatform over the master's socket) to the task's
 * final state; the task's own timestamps split that into queue, manifest, converge and registry.
 * `spoke platform verify` through the CLI is timed too (adds the CLI's start-up). Not a test: it
 * asserts nothing, but says when the registry did not pick up an edit.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { credentials, Metadata } from '@grpc/grpc-js';
import { MASTER_NODE_FLAGS, wire } from '@spoke/shared';
import { median, Procs, peakRssMb, until } from './lib.js';
import { makeDrupal8Tree } from './drupal-tree.js';

const ROOT = join(import.meta.dirname, '..');
const BIN = {
  spoke: join(ROOT, 'packages/master/dist/spoke.js'),
  master: join(ROOT, 'packages/master/dist/spoke-master.js'),
  agent: join(ROOT, 'packages/agent/dist/spoke-agent.js'),
};

const { values: args } = parseArgs({
  options: {
    files: { type: 'string', default: '20000' },
    runs: { type: 'string', default: '9' },
    json: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'target-dir': { type: 'string' },
  },
});
const FILES = Math.max(1000, Number(args.files));
const RUNS = Math.max(1, Number(args.runs));
const TARGET_NO_CHANGE_MS = 200;
const say = (s: string) => {
  if (!args.json) process.stderr.write(`${s}\n`);
};

const work = mkdtempSync(join(args['target-dir'] ?? tmpdir(), 'spoke-bench-verify-'));
const masterRoot = join(work, 'master-root');
const NS = '/var/www/d10';
const tree = join(masterRoot, NS);

// ---------------------------------------------------------------- processes

const env = { ...process.env, SPOKE_LOG_LEVEL: args.keep ? 'debug' : 'warn', SPOKE_DRIFT_INTERVAL_MS: '3600000' };
const procs = new Procs(env);
const daemon = (script: string, argv: string[], nodeFlags: readonly string[] = []) => procs.daemon(script, argv, nodeFlags);

function cli(...a: string[]): string {
  return execFileSync(process.execPath, [BIN.spoke, '--state-dir', join(work, 'state'), ...a], { env, encoding: 'utf8' });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- operator API

let api: wire.OperatorClient;

function verifyRequest(name: string): Promise<wire.Task> {
  return new Promise((ok, ko) =>
    api.verifyPlatform({ name }, new Metadata(), (e: Error | null, r?: wire.Task) => (e || !r ? ko(e ?? new Error('no task')) : ok(r))),
  );
}

function waitTask(id: number): Promise<{ task: wire.Task; lines: wire.TaskLogLine[] }> {
  return new Promise((ok, ko) => {
    let last: wire.Task | undefined;
    const lines: wire.TaskLogLine[] = [];
    const s = api.watchTask({ id, fromSeq: 0 });
    s.on('data', (ev: wire.TaskEvent) => {
      if (ev.event?.$case === 'task') last = ev.event.value;
      else if (ev.event?.$case === 'line') lines.push(ev.event.value);
    });
    s.on('error', ko);
    s.on('end', () => (last ? ok({ task: last, lines }) : ko(new Error('no task state'))));
  });
}

/** One timed verify and where its time went (ms). */
interface Run {
  ms: number;
  /** queued → started (task engine). */
  queueMs: number;
  /** started → the manifest line (master: trees.manifest, incl. the directory check). */
  manifestMs: number;
  /** manifest line → the agent's answer line. */
  convergeMs: number;
  /** Of that, the agent's own converge (its report's ms): the rest is the wire (GetManifest, FetchBlobs). */
  agentMs: number;
  /** The registry parse, when it ran (its own log line), else 0. */
  registryMs: number;
  /** The agent's answer → finished (waiting for the registry, storing the result). */
  finishMs: number;
  inSync: boolean;
  fetched: number;
  registryParsed: boolean;
}

async function timedVerify(name: string): Promise<Run> {
  const t0 = performance.now();
  const queued = await verifyRequest(name);
  const { task, lines } = await waitTask(queued.id);
  const ms = performance.now() - t0;
  if (task.state !== wire.TaskState.TASK_STATE_SUCCEEDED) throw new Error(`task ${task.id} ended ${task.errorCode}: ${task.errorMessage}`);
  const started = Number(task.startedMs);
  const finished = Number(task.finishedMs);
  const at = (re: RegExp) => Number(lines.find((l) => re.test(l.message))?.tsMs ?? NaN);
  const manifestAt = at(/: \d+ files, .*, root [0-9a-f]{12}$/);
  const agentAt = at(/^bench: (in sync|\+\d+)/);
  const reg = lines.find((l) => /: drupal8 .* sites on disk \((\d+) ms\)$/.test(l.message));
  const result = JSON.parse(task.resultJson) as { servers: { inSync: boolean; filesFetched: number; ms: number }[] };
  return {
    ms,
    queueMs: started - Number(task.createdMs),
    manifestMs: manifestAt - started,
    convergeMs: agentAt - manifestAt,
    agentMs: result.servers[0]?.ms ?? 0,
    registryMs: reg ? Number(/\((\d+) ms\)$/.exec(reg.message)?.[1]) : 0,
    finishMs: finished - agentAt,
    inSync: result.servers.every((s) => s.inSync),
    fetched: result.servers.reduce((n, s) => n + s.filesFetched, 0),
    registryParsed: reg !== undefined,
  };
}

// ---------------------------------------------------------------- cases

const r1 = (x: number) => Math.round(x * 10) / 10;

interface Row {
  case: string;
  runs: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
  target: string;
  /** Medians of the parts (see Run). */
  parts: { queueMs: number; manifestMs: number; convergeMs: number; agentMs: number; registryMs: number; finishMs: number };
  note: string;
}
const rows: Row[] = [];

function record(name: string, runs: Run[], target: string, note = ''): void {
  const m = (f: (r: Run) => number) => r1(median(runs.map(f)));
  const row: Row = {
    case: name,
    runs: runs.length,
    medianMs: m((r) => r.ms),
    minMs: r1(Math.min(...runs.map((r) => r.ms))),
    maxMs: r1(Math.max(...runs.map((r) => r.ms))),
    target,
    parts: {
      queueMs: m((r) => r.queueMs),
      manifestMs: m((r) => r.manifestMs),
      convergeMs: m((r) => r.convergeMs),
      agentMs: m((r) => r.agentMs),
      registryMs: m((r) => r.registryMs),
      finishMs: m((r) => r.finishMs),
    },
    note,
  };
  rows.push(row);
  say(`  ${name}: median ${row.medianMs} ms (min ${row.minMs}, max ${row.maxMs}, ${row.runs} runs) ${note}`);
}

async function main(): Promise<void> {
  say(`generating a Drupal-shaped tree of ${FILES} files …`);
  const gen0 = performance.now();
  const st = makeDrupal8Tree(tree, { files: FILES });
  say(
    `tree: ${st.files} files, ${(st.bytes / 1e6).toFixed(1)} MB, ${st.infoFiles} .info.yml, ${st.coreModules} core + ${st.contribModules} contrib modules (${Math.round(performance.now() - gen0)} ms)`,
  );

  const master = daemon(BIN.master, ['run', '--state-dir', join(work, 'state'), '--listen', '127.0.0.1:0', '--root', masterRoot], MASTER_NODE_FLAGS);
  const listen = (await until('master', () => /listening on (\S+);/.exec(master.out) ?? undefined))[1] as string;
  const token = cli('server', 'token', 'bench').trim();
  execFileSync(process.execPath, [BIN.agent, 'enroll', '--master', listen, '--token', token, '--state-dir', join(work, 'agent-state'), '--roots', '/var/www'], {
    env,
  });
  const agent = daemon(BIN.agent, ['run', '--state-dir', join(work, 'agent-state'), '--root', join(work, 'agent-root')]);
  api = new wire.OperatorClient(`unix://${join(work, 'state', 'spoke.sock')}`, credentials.createInsecure());
  await until('agent online', () => /"online": true/.test(cli('-o', 'json', 'server', 'show', 'bench')) || undefined);
  cli('platform', 'add', 'd10', '--path', NS, '--server', 'bench', '--no-verify');

  say('cold verify …');
  const cold = await timedVerify('d10');
  record('cold verify (first scan + registry + initial sync)', [cold], '—', `fetched ${cold.fetched} files`);

  // Let the master's watcher get ready (its ready event schedules one re-walk of the tree).
  await sleep(3000);
  say('no-change verify …');
  const first = await timedVerify('d10');
  record('no-change verify, first after cold', [first], '—', first.inSync ? '' : 'NOT in sync?');
  const noChange: Run[] = [];
  for (let i = 0; i < RUNS; i++) noChange.push(await timedVerify('d10'));
  record('no-change verify', noChange, `≤ ${TARGET_NO_CHANGE_MS}`, noChange.every((r) => r.inSync && !r.registryParsed) ? '' : 'unexpected work done');

  say('one .info.yml changed …');
  const info: Run[] = [];
  const infoPath = join(tree, st.sampleInfo);
  const infoText = readFileSync(infoPath, 'utf8');
  for (let i = 0; i < RUNS; i++) {
    writeFileSync(infoPath, infoText.replace(/^version: '[^']*'/m, `version: '8.x-9.${i}'`));
    await sleep(300); // the watcher reports the edit
    info.push(await timedVerify('d10'));
  }
  const shown = JSON.parse(cli('-o', 'json', 'platform', 'show', 'd10')) as { registry: { modules: { path: string; version: string }[] } };
  const module = shown.registry.modules.find((m) => `${m.path}/` === st.sampleInfo.slice(0, st.sampleInfo.lastIndexOf('/') + 1));
  const picked = module?.version === `8.x-9.${RUNS - 1}`;
  record(
    'one .info.yml changed',
    info,
    '—',
    `${picked ? 'registry updated' : `REGISTRY NOT UPDATED (${module?.version})`}; parsed in ${info.filter((r) => r.registryParsed).length}/${RUNS} runs`,
  );

  say('one .php changed …');
  const php: Run[] = [];
  const phpPath = join(tree, st.samplePhp);
  for (let i = 0; i < RUNS; i++) {
    writeFileSync(phpPath, `<?php\n// edit ${i}\n`);
    await sleep(300);
    php.push(await timedVerify('d10'));
  }
  record('one .php changed', php, '—', `registry parsed in ${php.filter((r) => r.registryParsed).length}/${RUNS} runs`);

  say('no-change verify through the CLI …');
  const cliRuns: number[] = [];
  for (let i = 0; i < Math.min(RUNS, 5); i++) {
    const t0 = performance.now();
    cli('platform', 'verify', 'd10');
    cliRuns.push(performance.now() - t0);
  }
  const cliStart: number[] = [];
  for (let i = 0; i < Math.min(RUNS, 5); i++) {
    const t0 = performance.now();
    cli('version');
    cliStart.push(performance.now() - t0);
  }

  const out = {
    tree: { files: st.files, bytes: st.bytes, infoFiles: st.infoFiles, coreModules: st.coreModules, contribModules: st.contribModules },
    runs: RUNS,
    targetNoChangeMs: TARGET_NO_CHANGE_MS,
    noChangeWithinTarget: (rows.find((r) => r.case === 'no-change verify')?.medianMs ?? Infinity) <= TARGET_NO_CHANGE_MS,
    cases: rows,
    cli: { noChangeVerifyMs: r1(median(cliRuns)), startupMs: r1(median(cliStart)) },
    peakRssMb: { master: peakRssMb(master.pid), agent: peakRssMb(agent.pid) },
    note: 'timed from the operator API request to the task final state; parts from the task timestamps (ms resolution)',
  };
  if (args.json) {
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const w = (s: string | number, n: number) => String(s).padEnd(n);
  process.stdout.write(
    `\n${w('case', 52)}${w('median', 9)}${w('min', 9)}${w('max', 9)}${w('target', 8)}${w('queue', 7)}${w('manif', 7)}${w('agent', 7)}${w('(own)', 7)}${w('regis', 7)}${w('rest', 6)}\n`,
  );
  for (const r of rows) {
    process.stdout.write(
      `${w(r.case, 52)}${w(r.medianMs, 9)}${w(r.minMs, 9)}${w(r.maxMs, 9)}${w(r.target, 8)}${w(r.parts.queueMs, 7)}${w(r.parts.manifestMs, 7)}${w(r.parts.convergeMs, 7)}${w(r.parts.agentMs, 7)}${w(r.parts.registryMs, 7)}${w(r.parts.finishMs, 6)}\n`,
    );
  }
  process.stdout.write(
    `\nms; parts (medians): queue = queued→started, manif = started→manifest ready, agent = manifest→agent answered, (own) = the agent's converge itself, regis = registry parse (overlaps agent), rest = agent answered→finished\n` +
      `CLI: \`spoke platform verify\` no-change ${out.cli.noChangeVerifyMs} ms (CLI start-up alone ${out.cli.startupMs} ms)\n` +
      `peak RSS: master ${out.peakRssMb.master} MB, agent ${out.peakRssMb.agent} MB\n` +
      `no-change verify ${out.noChangeWithinTarget ? 'within' : 'OVER'} the ${TARGET_NO_CHANGE_MS} ms target\n`,
  );
}

main()
  .catch((e: unknown) => {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    api?.close();
    await procs.stop();
    if (args.keep) {
      for (const [i, p] of procs.all.entries()) writeFileSync(join(work, `proc${i}.log`), p.out);
      process.stderr.write(`kept ${work}\n`);
    } else if (existsSync(work)) rmSync(work, { recursive: true, force: true });
  });
