/**
 * Crash safety: a converge SIGKILLed at any step leaves the tree equal to the old manifest or a
 * committed journal; replayJournals then makes it exactly the new one (or leaves the old one when
 * nothing was committed). Never a mix.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Manifest, walkTree } from '@spoke/shared';
import { converge, readCommitted, replayJournals } from './index.js';
import { readManifestFile, treeStateDir } from './state.js';
import { copyFetcher, manifestOf, rng, scratch, type Spec, writeTree } from './testkit.js';

const KEY = '/var/aegir/platforms/crash';
const CHILD = join(import.meta.dirname, 'crash-child.ts');
const REPO = join(import.meta.dirname, '../../../..');

/** ~200 files A, and B with adds, removes, content/mode/type changes, moves, links, empty dirs. */
function specs(): { a: Spec; b: Spec } {
  const r = rng(42);
  const a: Spec = {};
  const b: Spec = {};
  const text = (i: number, v: string) => `<?php // file ${i} ${v}\n${'x'.repeat(Math.floor(r() * 3000))}`;
  for (let i = 0; i < 200; i++) {
    const path = `m${i % 9}/s${i % 4}/f ${i}.php`;
    const content = text(i, 'a');
    a[path] = content;
    switch (i % 10) {
      case 0: // removed
        break;
      case 1: // content change
        b[path] = text(i, 'b');
        break;
      case 2: // mode change
        b[path] = { content, mode: 0o600 };
        break;
      case 3: // moved
        b[`moved/ü ${i}.php`] = content;
        break;
      case 4: // file -> dir
        b[`${path}/inner.php`] = text(i, 'inner');
        break;
      case 5: // file -> symlink
        b[path] = { link: `f ${i - 1}.php` };
        break;
      default:
        b[path] = content;
    }
  }
  for (let i = 0; i < 30; i++) b[`new/n${i % 3}/added ${i}.php`] = text(1000 + i, 'new');
  a['olddir/x/y.php'] = 'y'; // dir -> symlink
  a['olddir/z.php'] = 'z';
  b.olddir = { link: 'new' };
  a.link = { link: 'm1' }; // symlink -> dir
  b['link/real.php'] = 'real';
  a['ro'] = { dir: 0o555 };
  a['ro/f'] = 'f';
  b['ro'] = { dir: 0o755 };
  b['ro/f'] = 'f';
  b['ro/g'] = 'g';
  b.empty = { dir: 0o700 };
  a.dup1 = 'dup';
  b.dup1 = 'dup';
  b.dup2 = 'dup';
  b.dup3 = { content: 'dup', mode: 0o640 };
  return { a, b };
}

async function same(dir: string, m: Manifest): Promise<boolean> {
  return (await walkTree(dir)).manifest.rootHash === m.rootHash;
}

function runChild(
  dir: string,
  k: number,
  opts: { src?: string; uid?: number; delta?: boolean; stream?: boolean } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  return new Promise((resolve, reject) => {
    const args = ['--import', 'tsx/esm', CHILD, dir, String(k), KEY, opts.src ?? 'srcB', ...(opts.delta ? ['delta'] : opts.stream ? ['stream'] : [])];
    const ids = opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.uid };
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], ...ids });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, out }));
  });
}

let root: string;
let cleanup: () => void;
let srcA: string;
let srcB: string;
let srcC: string;
let mA: Manifest;
let mB: Manifest;
let mC: Manifest;
beforeAll(async () => {
  ({ dir: root, cleanup } = scratch('spoke-crash-'));
  const { a, b } = specs();
  srcA = join(root, 'srcA');
  srcB = join(root, 'srcB');
  writeTree(srcA, a);
  writeTree(srcB, b);
  // C: A with a few edits, the usual small update (committed as a delta manifest file)
  const c: Spec = { ...a };
  const keys = Object.keys(a).filter((p) => p.endsWith('.php'));
  c[keys[3] as string] = 'changed 3';
  c[keys[40] as string] = { content: 'changed 40', mode: 0o600 };
  delete c[keys[80] as string];
  c['m1/s1/added.php'] = 'added';
  srcC = join(root, 'srcC');
  writeTree(srcC, c);
  mA = await manifestOf(srcA);
  mB = await manifestOf(srcB);
  mC = await manifestOf(srcC);
});
afterAll(() => cleanup());

/** A case dir holding the tree at A (converged, committed) and srcB for the child. */
async function prepare(name: string, initial: boolean): Promise<string> {
  const dir = join(root, name);
  fs.mkdirSync(join(dir, 'host'), { recursive: true });
  fs.symlinkSync(srcB, join(dir, 'srcB'));
  fs.symlinkSync(srcC, join(dir, 'srcC'));
  if (!initial) {
    await converge({ treeKey: KEY, hostRoot: join(dir, 'host', 'd7'), stateDir: join(dir, 'state'), desired: mA, fetcher: copyFetcher([srcA]) });
  }
  return dir;
}

async function countSteps(initial: boolean): Promise<{ total: number; names: string[] }> {
  const dir = await prepare(`count-${initial}`, initial);
  const names: string[] = [];
  await converge({
    treeKey: KEY,
    hostRoot: join(dir, 'host', 'd7'),
    stateDir: join(dir, 'state'),
    desired: mB,
    fetcher: copyFetcher([srcB]),
    onStep: (_n, what) => names.push(what),
  });
  expect(await same(join(dir, 'host', 'd7'), mB)).toBe(true);
  return { total: names.length, names };
}

async function crashAndReplay(k: number, initial: boolean, delta = false, stream = false): Promise<string> {
  const dir = await prepare(`k${k}-${initial}${delta ? '-delta' : ''}${stream ? '-stream' : ''}`, initial);
  const tree = join(dir, 'host', 'd7');
  const stateDir = join(dir, 'state');
  // the delta case goes A -> C (a few edits), the others A -> B (every change kind)
  const want = delta ? mC : mB;
  const { signal, out } = await runChild(dir, k, delta ? { src: 'srcC', delta: true } : { stream });
  expect(signal, out).toBe('SIGKILL');
  const journal = fs.existsSync(join(treeStateDir(stateDir, KEY), 'journal.json'));
  const committedB = readCommitted(stateDir, KEY)?.rootHash === want.rootHash;
  let state: string;
  if (journal) state = 'journal';
  else if (committedB) state = 'committed';
  else state = 'old';
  // after the kill: the old tree, or a committed journal, or (killed while cleaning up) the new tree
  if (state === 'old') {
    if (initial) expect(fs.existsSync(tree)).toBe(false);
    else expect(await same(tree, mA)).toBe(true);
  }
  if (state === 'committed') expect(await same(tree, want)).toBe(true);
  const finished = await replayJournals(stateDir);
  expect(finished).toEqual(journal ? [KEY] : []);
  if (state === 'old') {
    if (initial) expect(fs.existsSync(tree)).toBe(false);
    else expect(await same(tree, mA)).toBe(true);
    expect(readCommitted(stateDir, KEY)?.rootHash ?? null).toBe(initial ? null : mA.rootHash);
  } else {
    expect(await same(tree, want)).toBe(true);
    expect(readCommitted(stateDir, KEY)?.rootHash).toBe(want.rootHash);
  }
  // nothing left behind: no staging dir next to the tree, no journal
  expect(fs.readdirSync(join(dir, 'host')).filter((n) => n !== 'd7')).toEqual([]);
  expect(fs.existsSync(join(treeStateDir(stateDir, KEY), 'journal.json'))).toBe(false);
  return state;
}

/** Runs `fn` over items, two at a time (child start-up dominates; this box has 2 cores). */
async function twoAtATime<T, R>(items: T[], fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all([lane(), lane()]);
  return out;
}

/**
 * A test's time limit from its work: each kill point starts a child (tsx), converges until the
 * kill and replays, which took ~2 s alone and up to ~6 s on a loaded 2-core box; the limit only
 * catches a hang, never a slow machine (the 20-point test took 42.7 s alone and hit a flat 60 s).
 */
const killPointsBudget = (points: number): number => 30_000 + points * 15_000;

function spread(total: number, n: number): number[] {
  const ks = new Set<number>();
  for (let i = 0; i < n; i++) ks.add(1 + Math.round((i * (total - 1)) / (n - 1)));
  return [...ks];
}

describe('crash safety (SIGKILL at step k, then replayJournals)', () => {
  it(
    'A -> C from a manifest delta (a few edits; the manifest file is a delta): up to 12 kill points over the whole run',
    async () => {
      const dir = await prepare('count-delta', false);
      const { code, out } = await runChild(dir, 0, { src: 'srcC', delta: true });
      expect(code, out).toBe(0);
      expect(await same(join(dir, 'host', 'd7'), mC)).toBe(true);
      const treeDir = treeStateDir(join(dir, 'state'), KEY);
      expect(readManifestFile(treeDir, mC.rootHash).chain).toEqual([mC.rootHash, mA.rootHash]);
      const total = Number(/"steps":(\d+)/.exec(out)?.[1]);
      expect(total).toBeGreaterThan(5);
      const states = await twoAtATime(spread(total, Math.min(total, 12)), (k) => crashAndReplay(k, false, true));
      expect(states).toContain('old');
      expect(states).toContain('journal');
    },
    killPointsBudget(12),
  );

  it(
    'A -> B (~230 files, every change kind): 20 kill points over the whole run',
    async () => {
      const { total, names } = await countSteps(false);
      expect(total).toBeGreaterThan(100);
      const ks = spread(total, 20);
      // the kill points cover staging/fetch (before the journal), the ops, and the commit
      const kinds = new Set(ks.map((k) => (names[k - 1] as string).split(' ')[0]));
      expect(kinds).toContain('fetch');
      expect(kinds).toContain('op');
      const states = await twoAtATime(ks, (k) => crashAndReplay(k, false));
      expect(states).toContain('old');
      expect(states).toContain('journal');
    },
    killPointsBudget(20),
  );

  it.skipIf(process.getuid?.() !== 0)(
    'as a non-root user: read-only directories are written into and removed',
    async () => {
      const dir = join(root, 'nonroot');
      fs.mkdirSync(dir);
      fs.chmodSync(root, 0o755);
      writeTree(join(dir, 'a'), {
        ro: { dir: 0o555 },
        'ro/x': '1',
        'ro/sub': { dir: 0o500 },
        'ro/sub/y': { content: '2', mode: 0o400 },
        gone: { dir: 0o555 },
        'gone/z': '3',
      });
      writeTree(join(dir, 'b'), {
        ro: { dir: 0o555 },
        'ro/x': '1!',
        'ro/n': 'new',
        'ro/sub': { dir: 0o500 },
        'ro/sub/y': { content: '2', mode: 0o400 },
        'ro/sub/w': '4',
        gone: { content: 'a file now', mode: 0o444 },
      });
      fs.mkdirSync(join(dir, 'host'));
      const nobody = 65534;
      const chownR = (p: string): void => {
        fs.lchownSync(p, nobody, nobody);
        if (fs.lstatSync(p).isDirectory()) for (const n of fs.readdirSync(p)) chownR(join(p, n));
      };
      chownR(dir);
      for (const [src, want] of [
        ['a', { added: 6 }],
        ['b', { added: 2, changed: 2, removed: 1 }],
      ] as const) {
        const { code, out } = await runChild(dir, 0, { src, uid: nobody });
        expect(code, out).toBe(0);
        expect(JSON.parse(out)).toMatchObject(want);
        expect(await same(join(dir, 'host', 'd7'), await manifestOf(join(dir, src)))).toBe(true);
      }
    },
    30_000,
  );

  it(
    'streamed first sync (StreamTree) into a missing root: 10 kill points, while receiving and committing',
    async () => {
      const dir = await prepare('count-stream', true);
      const { code, out } = await runChild(dir, 0, { stream: true });
      expect(code, out).toBe(0);
      expect(await same(join(dir, 'host', 'd7'), mB)).toBe(true);
      const total = Number(/"steps":(\d+)/.exec(out)?.[1]);
      expect(total).toBeGreaterThan(200); // a step per entry received, then the commit's
      const ks = [...spread(total - 10, 6), total - 6, total - 4, total - 2, total];
      const states = await twoAtATime(ks, (k) => crashAndReplay(k, true, false, true));
      expect(states).toContain('old');
      expect(states.some((s) => s === 'journal' || s === 'committed')).toBe(true);
    },
    killPointsBudget(10),
  );

  it(
    'initial sync into a missing root: 6 kill points',
    async () => {
      const { total } = await countSteps(true);
      const ks = spread(total, 6);
      const states = await twoAtATime(ks, (k) => crashAndReplay(k, true));
      expect(states).toContain('old');
    },
    killPointsBudget(6),
  );
});
