/**
 * Helpers for the sync engine's unit tests (not exported from the package).
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack as tarPack, type Header } from 'tar-stream';

/** One entry for tarOf: a raw tar-stream header and an optional body. */
export interface RawEntry {
  header: Partial<Header> & { name: string };
  body?: string | Buffer;
}

/** Builds a tar in memory with tar-stream's own packer, headers exactly as given (hostile ones too). */
export async function tarOf(entries: readonly RawEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (e.body !== undefined) pack.entry({ ...e.header }, e.body, cb);
      else pack.entry({ ...e.header }, cb);
    });
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

/** A byte source yielding `buf` in small chunks (exercises the parser's buffering). */
export async function* chunked(buf: Buffer, size = 700): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

/** Collects a byte stream into one buffer. */
export async function collect(src: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of src) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** A fresh temp dir and its remover. */
export async function tempDir(prefix = 'spoke-sync-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Every path below `dir` (relative, sorted), not following symlinks. */
export async function listAll(dir: string): Promise<string[]> {
  const out = await readdir(dir, { recursive: true });
  return out.map(String).sort();
}
