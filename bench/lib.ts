/**
 * Process helpers shared by the benchmarks: daemons with captured output, peak RSS, polling.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

/** A child process whose stdout and stderr are collected in `out`. */
export type Proc = ChildProcess & { out: string };

/** Starts benchmark daemons and stops them all at the end. */
export class Procs {
  readonly all: Proc[] = [];

  /** @param profileDir write V8 CPU profiles of the daemons there (at their exit on SIGTERM) */
  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly profileDir?: string,
  ) {}

  /** Runs a node script as a daemon, with these node flags (its deployment's, e.g. MASTER_NODE_FLAGS). */
  daemon(script: string, argv: string[], nodeFlags: readonly string[] = []): Proc {
    const flags = [...nodeFlags, ...(this.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${this.profileDir}`] : [])];
    return this.track(spawn(process.execPath, [...flags, script, ...argv], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** Collects the output of another child and stops it with the rest. */
  track(child: ChildProcess): Proc {
    const p = child as Proc;
    p.out = '';
    p.stdout?.on('data', (d: Buffer) => (p.out += d.toString()));
    p.stderr?.on('data', (d: Buffer) => (p.out += d.toString()));
    this.all.push(p);
    return p;
  }

  /** Stops every process: SIGTERM first when profiling (so profiles get written), then SIGKILL. */
  async stop(): Promise<void> {
    if (this.profileDir) {
      await Promise.all(this.all.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : (p.once('exit', r), p.kill('SIGTERM'))))));
    }
    for (const p of this.all) p.kill('SIGKILL');
  }
}

/** Peak resident set size of a live process, in MB (VmHWM). */
export function peakRssMb(pid: number | undefined): number {
  if (!pid) return 0;
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

/** Current resident set size of a live process, in MB (VmRSS). */
export function rssMb(pid: number | undefined): number {
  if (!pid) return 0;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

/**
 * Resets a live process's peak RSS (VmHWM) to its current RSS, so a later peakRssMb() measures
 * only what happened after this call (Linux: writing 5 to /proc/PID/clear_refs). Returns false
 * when the kernel refused (then peakRssMb() still reports the peak since the process started).
 */
export function resetPeakRss(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Polls `fn` every 50 ms until it returns something truthy. */
export async function until<T>(what: string, fn: () => T | undefined | false | null, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * CPU time of a process in ms (user + system): its own, that of its reaped children (an rsync
 * daemon's per-connection processes, this process's spawnSync'ed commands), or both.
 */
export function cpuMs(pid: number | undefined, of: 'self' | 'children' | 'both' = 'self'): number {
  if (!pid) return 0;
  // fields after the ")" that ends the command name: state is field 3, utime 14 … cstime 17
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  const self = (f[11] ?? 0) + (f[12] ?? 0);
  const children = (f[13] ?? 0) + (f[14] ?? 0);
  const ticks = of === 'self' ? self : of === 'children' ? children : self + children;
  return ticks * 10; // USER_HZ is 100 on Linux
}

/** The median of `xs` (the upper one of an even count); 0 for none. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/**
 * Every timed run starts with no dirty data on the disks (`sync`, untimed): otherwise each run
 * paid for writing back what the run before it (the other tool's, or the local copy's, 85 MB)
 * left in the page cache, and which tool paid how much depended on the order of the runs.
 */
export function quiesce(): void {
  spawnSync('sync');
}

/**
 * The local-copy floor: `tar -c | tar -x` of `src` into the existing empty dir `dest`, after a
 * quiesce; its milliseconds. No network, no checksums, two processes: the cheapest local copy
 * measured here (~40 % under `cp -a`).
 */
export function timedTarCopy(src: string, dest: string): number {
  quiesce();
  const t0 = performance.now();
  execFileSync('bash', ['-c', 'set -o pipefail; tar -C "$1" -cf - . | tar -C "$2" -xf -', 'local-copy', src, dest]);
  return performance.now() - t0;
}
