/**
 * `tsx bench/rss-idle.ts [--agents 1000] [--steps 0,250,500,1000] [--settle 15]` — the master's
 * memory per connected, idle agent (issue 20). A real master (the built bundle, MASTER_NODE_FLAGS,
 * `--metrics`) and the agent simulator: every agent enrolled first, then connected in steps; at
 * each step, after `--settle` seconds of heartbeats, the master's RSS (VmRSS, and anonymous vs
 * file-backed from smaps_rollup) and its own view of its memory (V8 heap, external/ArrayBuffers)
 * from `/metrics`. The slope between steps is the per-agent cost.
 * Extra node flags for the master: SPOKE_BENCH_MASTER_FLAGS (space-separated). `--smaps FILE` keeps
 * the master's /proc/PID/smaps at the last step.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MASTER_NODE_FLAGS } from '@spoke/shared';
import { Procs, rssMb, until } from './lib.js';
import { SimFleet, createTokens, operatorClient } from './simagents.js';

const ROOT = join(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    agents: { type: 'string', default: '1000' },
    steps: { type: 'string', default: '0,250,500,1000' },
    settle: { type: 'string', default: '15' },
    smaps: { type: 'string' },
  },
});
const AGENTS = Number(args.agents);
const STEPS = args.steps.split(',').map(Number);
const SETTLE_MS = Number(args.settle) * 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const work = mkdtempSync(join(tmpdir(), 'spoke-bench-rss-'));
const env = { ...process.env, SPOKE_LOG_LEVEL: 'warn' };
const procs = new Procs(env);
const extra = (process.env.SPOKE_BENCH_MASTER_FLAGS ?? '').split(' ').filter(Boolean);
const master = procs.daemon(
  join(ROOT, 'packages/master/dist/spoke-master.js'),
  ['run', '--state-dir', join(work, 'state'), '--listen', '127.0.0.1:0', '--root', join(work, 'root'), '--metrics', '127.0.0.1:0'],
  [...MASTER_NODE_FLAGS, ...extra],
);
let fleet: SimFleet | undefined;

function smaps(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(line);
    if (m) out[m[1] as string] = Math.round(Number(m[2]) / 1024);
  }
  return out;
}

async function scrape(metrics: string): Promise<Record<string, number>> {
  const text = await (await fetch(`http://${metrics}/metrics`)).text();
  const pick = (name: string) => {
    const m = new RegExp(`^spoke_master_${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    return m ? Math.round(Number(m[1]) / 1024 ** 2) : -1;
  };
  return {
    heapUsed: pick('nodejs_heap_size_used_bytes'),
    heapTotal: pick('nodejs_heap_size_total_bytes'),
    external: pick('nodejs_external_memory_bytes'),
  };
}

try {
  const m = await until('the master to listen', () => /listening on (\S+);.*metrics on http:\/\/(\S+)\/metrics/.exec(master.out), 60_000);
  const [listen, metrics] = [m[1] as string, m[2] as string];
  const api = operatorClient(join(work, 'state'));
  const names = Array.from({ length: AGENTS }, (_, i) => `sim-${String(i + 1).padStart(4, '0')}`);
  const tokens = await createTokens(api, names);
  fleet = new SimFleet({ master: listen });
  const agents = await fleet.enroll(tokens, 16);
  api.close();
  process.stderr.write(
    `enrolled ${AGENTS}; load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}\n`,
  );
  const rows: Record<string, number>[] = [];
  let started = 0;
  for (const step of STEPS) {
    for (; started < Math.min(step, AGENTS); started++) agents[started]?.start();
    await until(`${started} online`, () => agents.slice(0, started).every((a) => a.state === 'online'), 300_000);
    await sleep(SETTLE_MS);
    const s = smaps(master.pid as number);
    const row = {
      agents: started,
      rss: rssMb(master.pid),
      anon: s.Anonymous ?? -1,
      file: (s.Rss ?? 0) - (s.Anonymous ?? 0),
      ...(await scrape(metrics)),
      load1: Math.round((loadavg()[0] ?? 0) * 100) / 100,
    };
    rows.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
  if (args.smaps) writeFileSync(args.smaps, readFileSync(`/proc/${master.pid}/smaps`));
  const first = rows[0];
  const last = rows[rows.length - 1];
  const n = (last?.agents ?? 0) - (first?.agents ?? 0);
  if (first && last && n !== 0) {
    const per = (k: string) => ((((last[k] ?? 0) - (first[k] ?? 0)) * 1024) / n).toFixed(1);
    process.stderr.write(
      `per agent (KiB): rss ${per('rss')}, anon ${per('anon')}, heapUsed ${per('heapUsed')}, heapTotal ${per('heapTotal')}, external ${per('external')}\n`,
    );
  }
} finally {
  fleet?.stop();
  await procs.stop();
  rmSync(work, { recursive: true, force: true });
}
