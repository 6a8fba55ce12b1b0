/**
 * The tools a platform build runs and the files it unpacks: a program run without a shell or a
 * terminal (never prompting, output bounded, a timeout), what a download is by its first bytes,
 * its checksums, tar archives through the shared hostile-archive checks, and the check of what an
 * unzip left.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';
import { PassThrough, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { checkSymlinkTarget, extractArchive, fail, type ByteSource } from '@spoke/shared';
import type { TreeCount } from './buildfs.js';
import type { FileDownload } from './registry/index.js';

export function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, '; ').trim();
}

/** The line of a tool's output that says what went wrong (or the last one). */
export function gist(output: string): string {
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const telling = lines.filter((l) => /fatal:|error:|FAILED|can't|cannot|No such|not found|Reversed|malformed|unexpected/i.test(l));
  const pick = telling.length ? telling.slice(-2).join('; ') : (lines.at(-1) ?? '');
  return pick.length > 400 ? `${pick.slice(0, 400)}…` : pick;
}

/** Result of a finished command. */
export interface Ran {
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly output: string,
    readonly exit: number | string | null,
  ) {
    super(`${command} ${typeof exit === 'number' ? `exited ${exit}` : `failed (${String(exit)})`}${output ? `: ${gist(output)}` : ''}`);
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

export function isEnoent(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

export async function isDir(p: string): Promise<boolean> {
  try {
    return (await fsp.lstat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** One file to verify: the algorithms drush make accepts. */
const HASHES = ['md5', 'sha1', 'sha256', 'sha512'] as const;

/** Removes `dir` and its parents up to and including `top` (the first dir mkdir created) while empty. */
export async function removeEmptyUpTo(dir: string, top: string | undefined): Promise<void> {
  if (!top) return;
  let d = dir;
  for (;;) {
    try {
      await fsp.rmdir(d);
    } catch {
      return;
    }
    if (d === top || !d.startsWith(top + sep)) return;
    d = dirname(d);
  }
}

/** Output kept per stream of a command (the tail is what says what went wrong). */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/**
 * Runs a program (never a shell) with stdin closed, so a tool that would prompt (unzip's
 * "replace?", git asking for a password, patch asking which file) reads end-of-file and never
 * waits; collects its output; a non-zero exit throws CommandError.
 */
export function run(
  cmd: string,
  args: string[],
  opts: { env: Record<string, string | undefined>; signal: AbortSignal; timeoutMs: number; cwd?: string },
): Promise<Ran> {
  return new Promise((res, rej) => {
    if (opts.signal.aborted) return rej(opts.signal.reason);
    const child = spawn(cmd, args, { env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    child.stdout.on('data', (d: Buffer) => {
      if ((outBytes += d.length) <= MAX_OUTPUT_BYTES) out.push(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      if ((errBytes += d.length) <= MAX_OUTPUT_BYTES) err.push(d);
    });
    let timedOut = false;
    const kill = () => child.kill('SIGKILL');
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutMs);
    opts.signal.addEventListener('abort', kill, { once: true });
    const done = () => {
      clearTimeout(timer);
      opts.signal.removeEventListener('abort', kill);
    };
    child.once('error', (e: NodeJS.ErrnoException) => {
      done();
      if (e.code === 'ENOENT') rej(fail('PLATFORM_BUILD_FAILED', `${cmd} is not installed on the master`));
      else rej(e);
    });
    child.once('close', (code, signal) => {
      done();
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      if (opts.signal.aborted) return rej(opts.signal.reason);
      if (code === 0) return res({ stdout, stderr });
      const exit = timedOut ? `timed out after ${Math.round(opts.timeoutMs / 1000)} s` : (code ?? signal ?? null);
      rej(new CommandError(cmd, `${stderr}\n${stdout}`, exit));
    });
  });
}

/** What a downloaded file is, by its first bytes. */
export type FileKind = 'tar' | 'gzip' | 'bzip2' | 'xz' | 'zip' | 'plain';

export async function sniff(file: string): Promise<FileKind> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    const b = buf.subarray(0, bytesRead);
    if (b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (b.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
    if (b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
    if (b[0] === 0x50 && b[1] === 0x4b && (b[2] === 3 || b[2] === 5) && (b[3] === 4 || b[3] === 6)) return 'zip';
    if (bytesRead >= 262 && b.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
    return 'plain';
  } finally {
    await fh.close();
  }
}

/** Checks every checksum the makefile gives; returns the algorithms checked. @throws CHECKSUM_MISMATCH */
export async function verifyChecksums(file: string, want: Pick<FileDownload, (typeof HASHES)[number]>): Promise<string[]> {
  const algos = HASHES.filter((a) => want[a]);
  if (algos.length === 0) return [];
  const hashes = algos.map((a) => createHash(a));
  for await (const chunk of createReadStream(file)) for (const h of hashes) h.update(chunk as Buffer);
  algos.forEach((a, i) => {
    const got = (hashes[i] as ReturnType<typeof createHash>).digest('hex');
    const expected = (want[a] as string).toLowerCase();
    if (got !== expected) {
      throw fail('CHECKSUM_MISMATCH', `${basename(file)}: ${a} is ${got}, the makefile expects ${expected}`, { file, algorithm: a });
    }
  });
  return algos;
}

/**
 * Extracts a (compressed) tar through the shared hostile-archive checks (absolute paths, `..`,
 * links leaving the tree, devices, setuid bits are refused; a refused archive writes nothing),
 * calling `limit` with the archive's running totals before each entry is written.
 * gzip is decompressed in-process; bzip2 and xz by their Debian binaries.
 */
export async function extractTar(
  file: string,
  kind: Exclude<FileKind, 'zip' | 'plain'>,
  dest: string,
  signal: AbortSignal,
  limit: (bytes: number, entries: number) => void,
): Promise<void> {
  let bytes = 0;
  let entries = 0;
  const beforeEntry = (e: { type: string; size: number }) => {
    entries++;
    if (e.type === 'file') bytes += e.size;
    limit(bytes, entries);
  };
  if (kind === 'tar' || kind === 'gzip') {
    const input = createReadStream(file);
    let source: ByteSource = input;
    if (kind === 'gzip') {
      const gz = createGunzip();
      pipeline(input, gz, () => undefined); // errors surface through gz to the reader
      source = gz;
    }
    await extractArchive(source, dest, { beforeEntry });
    return;
  }
  const child = spawn(kind === 'bzip2' ? 'bzip2' : 'xz', ['-dc', '--', file], { stdio: ['ignore', 'pipe', 'pipe'], signal });
  // The output goes into a buffer with back-pressure at once: a child's stdout that has no
  // reader when the child exits is resumed and drained by Node (child_process flushStdio), and a
  // small archive's whole content was lost that way before the extractor started reading.
  const out = new PassThrough();
  pipeline(child.stdout, out, () => undefined); // a failing child shows in its exit code and stderr
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r, j) => {
    child.once('error', j);
    child.once('close', (code) => r(code));
  });
  try {
    await extractArchive(out, dest, { beforeEntry });
    out.resume(); // whatever follows the end-of-archive blocks: drained, so the child can exit
  } catch (e) {
    child.kill();
    const code = await exited.catch(() => null);
    if (code !== 0 && stderr) throw fail('ARCHIVE_UNSAFE', `cannot decompress ${basename(file)}: ${gist(stderr)}`);
    throw e;
  }
  const code = await exited;
  if (code !== 0) throw fail('ARCHIVE_UNSAFE', `cannot decompress ${basename(file)}: ${gist(stderr) || `exit ${String(code)}`}`);
}

/** After an unzip: only files, dirs and symlinks that stay inside; no setuid/setgid/sticky bits. Returns what it counted. */
export async function checkExtracted(root: string): Promise<TreeCount> {
  const count: TreeCount = { entries: 0, bytes: 0 };
  const walk = async (rel: string): Promise<void> => {
    for (const ent of await fsp.readdir(rel ? join(root, rel) : root, { withFileTypes: true })) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      const st = await fsp.lstat(join(root, r));
      count.entries++;
      if (st.isSymbolicLink()) checkSymlinkTarget(r, await fsp.readlink(join(root, r)));
      else if (st.isDirectory()) await walk(r);
      else if (!st.isFile()) throw fail('ARCHIVE_UNSAFE', `${JSON.stringify(r)} is not a file, directory or symlink`);
      else count.bytes += st.size;
      if (st.mode & 0o7000) throw fail('ARCHIVE_UNSAFE', `${JSON.stringify(r)} has setuid, setgid or sticky bits`);
    }
  };
  await walk('');
  return count;
}
