/**
 * CLI start-up benchmark (issue 23 item 17): `spoke server ls` start-to-exit against a bare
 * `node -e ''` in the same run, against a real master (one ListServers round trip over its unix socket).
 * Runs alternate (node, spoke, node, spoke, …) so both see the same machine load; the ratio of
 * the medians is the figure (goal: ≤ 3× bare Node). Absolute times swing with load; the ratio is
 * what to compare between runs and machines.
 *
 *   pnpm bench:cli [--runs 21] [--json] [--spoke packages/master/OTHER-DIST/spoke.js (another build, e.g. an older one)]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { MASTER_NODE_FLAGS } from '@spoke/shared';
import { median, Procs, until } from './lib.js';

const ROOT = join(import.meta.dirname, '..');
const BIN = {
  spoke: join(ROOT, 'bin/spoke'),
  master: join(ROOT, 'packages/master/dist/spoke-master.js'),
};
const { values: args } = parseArgs({
  options: { runs: { type: 'string', default: '21' }, json: { type: 'boolean', default: false }, spoke: { type: 'string' } },
});
const RUNS = Math.max(3, Number(args.runs));
const GOAL = 3;

/** Milliseconds from spawn to exit of one process; throws when it fails. */
function timed(cmd: string, argv: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}: ${r.stderr.toString()}`);
  return ms;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'spoke-bench-cli-'));
  const procs = new Procs({ ...process.env, SPOKE_LOG_LEVEL: 'warn' });
  try {
    const state = join(work, 'state');
    const master = procs.daemon(BIN.master, ['run', '--state-dir', state, '--listen', '127.0.0.1:0', '--root', join(work, 'root')], MASTER_NODE_FLAGS);
    await until('master', () => /listening on (\S+);/.exec(master.out) ?? undefined);
    // As bin/spoke runs it (node, its flags, the bundle), or another build's bundle the same way.
    const spokeCmd = args.spoke ? process.execPath : BIN.spoke;
    const spoke = [...(args.spoke ? ['--max-semi-space-size=4', args.spoke] : []), '--state-dir', state, 'server', 'ls'];
    timed(spokeCmd, spoke); // warm the page cache (and the compile cache where Node has one)
    const node: number[] = [];
    const cli: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      node.push(timed(process.execPath, ['-e', '']));
      cli.push(timed(spokeCmd, spoke));
    }
    const out = {
      runs: RUNS,
      nodeVersion: process.version,
      bareNodeMs: Math.round(median(node)),
      spokeServerLsMs: Math.round(median(cli)),
      ratio: Number((median(cli) / median(node)).toFixed(2)),
      goal: GOAL,
    };
    if (args.json) process.stdout.write(`${JSON.stringify(out)}\n`);
    else {
      process.stdout.write(
        `node ${out.nodeVersion}, ${RUNS} alternating runs, medians:\n` +
          `bare \`node -e ''\`          ${out.bareNodeMs} ms\n` +
          `\`spoke server ls\`          ${out.spokeServerLsMs} ms\n` +
          `ratio                      ${out.ratio}× (goal ≤ ${GOAL}×: ${out.ratio <= GOAL ? 'met' : 'NOT met'})\n`,
      );
    }
  } finally {
    await procs.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
