/**
 * Converge benchmark (not a test): 20,000 files / 85 MB, against rsync in the same run.
 *   cd /work/main && node --import tsx/esm packages/agent/src/converge/bench.ts [files] [MB]
 * Trees are generated on /dev/shm when it exists. The desired manifests are computed outside the
 * timings (the master keeps them current from its watcher); "transport" is a local fetcher that
 * reads, hashes and writes each blob (as unpackBlobs does), or the real tar codec.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { type Manifest, type StatCache, type StatCacheRecord, walkTree } from '@spoke/shared';
import { converge, observe } from './index.js';
import { blobIndex, codecFetcher, copyFetcher, deltaOf, generateTree, rmForce, scratch, type TestFetcher } from './testkit.js';

const FILES = Number(process.argv[2] ?? 20000);
const BYTES = Number(process.argv[3] ?? 85) * 1e6;
const { dir, cleanup } = scratch('spoke-bench-');
const hasRsync = (() => {
  try {
    execFileSync('rsync', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const masterCache = new Map<string, StatCacheRecord>();
const cache: StatCache = { get: (p) => masterCache.get(p), set: (p, r) => void masterCache.set(p, r) };
const manifest = async (src: string): Promise<Manifest> => (await walkTree(src, { statCache: cache, racyMs: 0 })).manifest;

function ms(t0: number): number {
  return Math.round((performance.now() - t0) * 10) / 10;
}
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}
function rsync(src: string, dst: string): number {
  const t0 = performance.now();
  execFileSync('rsync', ['-a', '--delete', `${src}/`, `${dst}/`]);
  return ms(t0);
}

const rows: [string, number, number | undefined][] = [];
try {
  const src = join(dir, 'src');
  let t0 = performance.now();
  const paths = generateTree(src, FILES, BYTES);
  const m0 = await manifest(src);
  const total = m0.entries.reduce((n, e) => n + (e.type === 'file' ? e.size : 0), 0);
  console.log(`tree: ${m0.entries.length} entries, ${paths.length} files, ${(total / 1e6).toFixed(1)} MB (generated in ${ms(t0)} ms)`);

  const runInitial = async (name: string, mk: () => TestFetcher) => {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const host = join(dir, `init-${name}-${i}`);
      const stateDir = join(dir, `state-init-${name}-${i}`);
      const fetcher = mk();
      t0 = performance.now();
      await converge({ treeKey: '/t', hostRoot: join(host, 'tree'), stateDir, desired: m0, fetcher });
      times.push(ms(t0));
      rmForce(host);
      rmForce(stateDir);
    }
    return median(times);
  };
  let rsyncInit: number | undefined;
  if (hasRsync) {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const d = join(dir, `rs-init-${i}`);
      times.push(rsync(src, d));
      rmForce(d);
    }
    rsyncInit = median(times);
  }
  const idx0 = blobIndex(src, m0);
  rows.push(['initial, verifying local fetcher', await runInitial('copy', () => copyFetcher([src], { verifies: true, index: idx0 })), rsyncInit]);
  rows.push(['initial, plain copy fetcher + converge re-hash', await runInitial('plain', () => copyFetcher([src], { index: idx0 })), rsyncInit]);
  rows.push(['initial, real tar codec (packBlobs->unpackBlobs)', await runInitial('codec', () => codecFetcher([src], idx0)), rsyncInit]);

  // A converged tree (and an rsync'ed one) to update.
  const host = join(dir, 'host');
  const tree = join(host, 'tree');
  const stateDir = join(dir, 'state');
  await converge({ treeKey: '/t', hostRoot: tree, stateDir, desired: m0, fetcher: copyFetcher([src], { verifies: true, index: idx0 }) });
  const rsDst = join(dir, 'rs');
  if (hasRsync) rsync(src, rsDst);

  // Updates go as the agent gets them from the master: a delta on the committed manifest.
  let committed = m0;
  const update = async (label: string, n: number, round: number) => {
    for (let i = 0; i < n; i++) {
      const p = paths[(i * 197 + round * 31) % paths.length] as string;
      fs.appendFileSync(join(src, p), `// change ${round}.${i}\n`);
    }
    const desired = await manifest(src);
    const fetcher = copyFetcher([src], { verifies: true, index: blobIndex(src, desired) });
    const delta = deltaOf(committed, desired);
    committed = desired;
    t0 = performance.now();
    const r = await converge({ treeKey: '/t', hostRoot: tree, stateDir, delta, fetcher });
    const t = ms(t0);
    if (r.changed !== n) throw new Error(`${label}: expected ${n} changes, got ${r.changed}`);
    const rs = hasRsync ? rsync(src, rsDst) : undefined;
    return [t, rs] as const;
  };
  for (const n of [1, 100]) {
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let round = 0; round < 5; round++) {
      const [t, rs] = await update(`${n} files`, n, round + n);
      ours.push(t);
      if (rs !== undefined) theirs.push(rs);
    }
    rows.push([`${n} file(s) changed`, median(ours), theirs.length ? median(theirs) : undefined]);
  }
  {
    const desired = await manifest(src);
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < 5; i++) {
      t0 = performance.now();
      const r = await converge({ treeKey: '/t', hostRoot: tree, stateDir, desired, fetcher: copyFetcher([src]) });
      ours.push(ms(t0));
      if (!r.inSync) throw new Error('no-op was not in sync');
      if (hasRsync) theirs.push(rsync(src, rsDst));
    }
    rows.push(['no-op (trusted committed root hash)', median(ours), theirs.length ? median(theirs) : undefined]);
    // Files younger than 2 s are hashed but never cached (racy timestamps, see walkTree): let the
    // tree settle, prime the stat cache once, then measure the walks.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await observe(stateDir, '/t', tree);
    const walked: number[] = [];
    for (let i = 0; i < 3; i++) {
      t0 = performance.now();
      await converge({ treeKey: '/t', hostRoot: tree, stateDir, desired, fetcher: copyFetcher([src]), trustCommitted: false });
      walked.push(ms(t0));
    }
    rows.push(['no-op, trustCommitted: false (stat-cached walk)', median(walked), theirs.length ? median(theirs) : undefined]);
    const obs: number[] = [];
    for (let i = 0; i < 3; i++) {
      t0 = performance.now();
      await observe(stateDir, '/t', tree);
      obs.push(ms(t0));
    }
    rows.push(['observe (stat-cached walk of a settled tree)', median(obs), undefined]);
  }
  console.log(`\n${'case'.padEnd(52)} ${'spoke ms'.padStart(9)} ${'rsync ms'.padStart(9)} ${'ratio'.padStart(6)}`);
  for (const [name, t, rs] of rows) {
    console.log(`${name.padEnd(52)} ${String(t).padStart(9)} ${String(rs ?? '-').padStart(9)} ${rs ? (t / rs).toFixed(2).padStart(6) : '     -'}`);
  }
} finally {
  cleanup();
}
