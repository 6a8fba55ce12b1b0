/**
 * Helpers for the converge tests, the crash child and the benchmark (not exported from the package).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { frameBlobs, type Manifest, packBlobs, TreeStreamWriter, unframeBlobs, unpackBlobs, walkTree } from '@spoke/shared';
import type { BlobFetcher } from './converge.js';
import type { ManifestDelta } from './state.js';

/** A fresh scratch dir on /dev/shm when it exists (faster), else the OS temp dir. */
export function scratch(prefix = 'spoke-converge-'): { dir: string; cleanup: () => void } {
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = fs.mkdtempSync(join(base, prefix));
  return { dir, cleanup: () => rmForce(dir) };
}

/** rm -rf, first making directories writable again (tests create read-only ones). */
export function rmForce(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch {
    const fix = (d: string) => {
      try {
        fs.chmodSync(d, 0o700);
        for (const n of fs.readdirSync(d, { withFileTypes: true })) if (n.isDirectory()) fix(join(d, n.name));
      } catch {
        // gone already
      }
    };
    fix(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** What a spec path holds: file content (mode 0644), or an object. */
export type SpecValue = string | { content: string | Buffer; mode?: number } | { dir: number } | { link: string };
export type Spec = Record<string, SpecValue>;

/** Writes a tree from a spec (parents created as 0755 dirs unless listed). */
export function writeTree(root: string, spec: Spec): void {
  fs.mkdirSync(root, { recursive: true });
  const dirModes: [string, number][] = [];
  for (const [rel, v] of Object.entries(spec).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const abs = join(root, rel);
    fs.mkdirSync(dirname(abs), { recursive: true });
    if (typeof v === 'string' || 'content' in v) {
      const content = typeof v === 'string' ? v : v.content;
      fs.writeFileSync(abs, content);
      fs.chmodSync(abs, typeof v === 'string' ? 0o644 : (v.mode ?? 0o644));
    } else if ('dir' in v) {
      fs.mkdirSync(abs, { recursive: true });
      dirModes.push([abs, v.dir]);
    } else {
      fs.symlinkSync(v.link, abs);
    }
  }
  for (const [abs, mode] of dirModes.reverse()) fs.chmodSync(abs, mode);
}

/** The manifest of a tree as converge sees it (default excludes). */
export async function manifestOf(root: string, exclude: string[] = []): Promise<Manifest> {
  return (await walkTree(root, { exclude })).manifest;
}

/** Everything in a tree, user data included (no excludes): for "untouched" checks. */
export async function fullManifest(root: string): Promise<Manifest> {
  return (await walkTree(root, { defaultExcludes: false })).manifest;
}

/** A fetcher that copies blobs out of source trees, recording what it was asked for. */
export interface TestFetcher extends BlobFetcher {
  asked: string[];
  calls: number;
}

/**
 * Serves blobs from the files of `sources` (walked once, lazily). Options: `corrupt` — hashes
 * delivered with wrong bytes; `verifies` — hash while copying, like unpackBlobs does;
 * `onBlob` — called after each blob (crash tests).
 */
export function copyFetcher(
  sources: string[],
  opts: { corrupt?: Set<string>; verifies?: boolean; onBlob?: () => void; index?: Map<string, string> } = {},
): TestFetcher {
  let index: Map<string, string> | undefined = opts.index;
  const build = async () => {
    const map = new Map<string, string>();
    for (const src of sources) {
      for (const e of (await walkTree(src)).manifest.entries) if (e.type === 'file') map.set(e.hash, join(src, e.path));
    }
    return map;
  };
  const buf = Buffer.allocUnsafe(256 * 1024);
  const f: TestFetcher = {
    asked: [],
    calls: 0,
    verifies: opts.verifies ?? false,
    async fetch(hashes, stagingDir, onBytes, _signal, destOf) {
      f.calls++;
      f.asked.push(...hashes);
      index ??= await build();
      fs.mkdirSync(stagingDir, { recursive: true });
      for (const h of hashes) {
        const src = index.get(h);
        if (src === undefined) throw new Error(`test fetcher has no blob ${h}`);
        const dest = destOf?.(h) ?? join(stagingDir, h);
        if (opts.corrupt?.has(h)) {
          const st = fs.statSync(src);
          fs.writeFileSync(dest, Buffer.alloc(st.size, 0x78));
        } else if (opts.verifies) {
          // read + hash + write, as a verifying transport does
          const rfd = fs.openSync(src, 'r');
          const wfd = fs.openSync(`${dest}.part`, 'w', 0o600);
          const hash = createHash('sha256');
          for (;;) {
            const n = fs.readSync(rfd, buf, 0, buf.length, null);
            if (n === 0) break;
            hash.update(buf.subarray(0, n));
            fs.writeSync(wfd, buf, 0, n);
          }
          fs.closeSync(rfd);
          fs.closeSync(wfd);
          if (hash.digest('hex') !== h) throw new Error(`bad blob ${h}`);
          fs.renameSync(`${dest}.part`, dest);
        } else {
          fs.copyFileSync(src, dest);
        }
        onBytes?.(fs.statSync(dest).size);
        opts.onBlob?.();
      }
    },
  };
  return f;
}

/**
 * A fetcher going through the real blob codec: packBlobs on the "master" side, unpackBlobs (which
 * verifies every hash) on the agent side, connected in memory.
 */
export function codecFetcher(sources: string[], prebuilt?: Map<string, string>): TestFetcher {
  let index: Map<string, string> | undefined = prebuilt;
  const f: TestFetcher = {
    asked: [],
    calls: 0,
    verifies: true,
    async fetch(hashes, stagingDir, onBytes) {
      f.calls++;
      f.asked.push(...hashes);
      index ??= await indexSources(sources);
      const idx = index;
      const stream = packBlobs(hashes.map((hash) => ({ hash, path: idx.get(hash) as string })));
      const counted = (async function* () {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          onBytes?.(chunk.length);
          yield chunk;
        }
      })();
      await unpackBlobs(Readable.from(counted), stagingDir, { want: hashes });
    },
  };
  return f;
}

/**
 * A fetcher going through the agent's real FetchBlobs path without the network: frameBlobs on the
 * "master" side, unframeBlobs on the agent side with destOf and modeOf honoured, and its report
 * returned (what AgentTrees' fetcher does).
 */
export function framesFetcher(sources: string[]): TestFetcher {
  let index: Map<string, string> | undefined;
  const f: TestFetcher = {
    asked: [],
    calls: 0,
    verifies: true,
    async fetch(hashes, stagingDir, onBytes, _signal, destOf, modeOf) {
      f.calls++;
      f.asked.push(...hashes);
      index ??= await indexSources(sources);
      const idx = index;
      const chunks = frameBlobs(hashes.map((hash) => ({ hash, path: idx.get(hash) as string })));
      return unframeBlobs(chunks, stagingDir, { want: hashes, destOf, modeOf, onProgress: onBytes });
    },
  };
  return f;
}

/** hash -> file path over the trees `sources` (the content a test "master" serves). */
async function indexSources(sources: string[]): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  for (const src of sources) {
    for (const e of (await walkTree(src)).manifest.entries) if (e.type === 'file') index.set(e.hash, join(src, e.path));
  }
  return index;
}

/** hash -> file path over a manifest of `root` (what the master's manifest cache gives it). */
export function blobIndex(root: string, m: Manifest): Map<string, string> {
  const map = new Map<string, string>();
  for (const e of m.entries) if (e.type === 'file') map.set(e.hash, join(root, e.path));
  return map;
}

/** Deterministic pseudo-random numbers (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A synthetic PHP-codebase-like tree: `files` files totalling about `bytes` bytes (sizes skewed
 * small, a few large), in nested directories, with some duplicate contents and symlinks.
 * Returns the relative file paths.
 */
export function generateTree(root: string, files: number, bytes: number, seed = 1): string[] {
  const r = rng(seed);
  fs.mkdirSync(root, { recursive: true });
  const dirs: string[] = [''];
  const nDirs = Math.max(1, Math.round(files / 12));
  for (let i = 1; i < nDirs; i++) {
    const parent = dirs[Math.floor(r() * dirs.length)] as string;
    const rel = parent === '' ? `mod${i}` : `${parent}/d${i}`;
    if (rel.split('/').length > 8) continue;
    fs.mkdirSync(join(root, rel));
    dirs.push(rel);
  }
  const avg = bytes / files;
  const paths: string[] = [];
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = 32 + Math.floor(r() * 90);
  for (let i = 0; i < files; i++) {
    const dir = dirs[Math.floor(r() * dirs.length)] as string;
    const rel = dir === '' ? `f${i}.php` : `${dir}/f${i}.php`;
    // exponential-ish sizes around avg; 1 in 50 files duplicates an earlier one's content
    const size = Math.min(chunk.length - 64, Math.floor(-Math.log(1 - r() * 0.999) * avg));
    const off = Math.floor(r() * 64);
    const content = i > 0 && r() < 0.02 ? `dup ${i % 7}\n` : Buffer.concat([Buffer.from(`<?php // ${i}\n`), chunk.subarray(off, off + size)]);
    fs.writeFileSync(join(root, rel), content);
    paths.push(rel);
  }
  for (let i = 0; i < Math.min(50, files / 100); i++) {
    const target = paths[Math.floor(r() * paths.length)] as string;
    fs.symlinkSync(target, join(root, `link${i}`));
  }
  return paths;
}

/** The delta the master sends from `base` to `want`: sorted upserts, every removed path. */
export function deltaOf(base: Manifest, want: Manifest): ManifestDelta {
  const before = new Map(base.entries.map((e) => [e.path, e]));
  const upserts = want.entries.filter((e) => {
    const o = before.get(e.path);
    before.delete(e.path);
    return o === undefined || JSON.stringify(o) !== JSON.stringify(e);
  });
  return { base: base.rootHash, rootHash: want.rootHash, upserts, removed: [...before.keys()] };
}

/** The record stream of a tree as the master's walk makes it (StreamTree: the walk's tap, then the end record). */
export async function treeStreamOf(root: string, held: ReadonlySet<string> = new Set()): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  const w = new TreeStreamWriter((c) => chunks.push(Buffer.from(c)), held);
  const r = await walkTree(root, { tap: { entry: (e, content) => w.entry(e, content, join(root, e.path)) } });
  w.end(r.manifest.rootHash, r.manifest.entries.length);
  return chunks;
}
