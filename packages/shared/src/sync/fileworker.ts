/**
 * A second thread for the two jobs that are one system call after another over thousands of
 * small files: hashing files (a walk) and copying files while hashing them (an agent reusing
 * content it holds). On this 2-core host the other daemon is idle during both (the agent while
 * the master walks a new tree, the master while the agent copies a shared core), so one more
 * thread takes its half of each batch: measured on 20,000 files / 85 MB, warm, hashing took
 * 0.50 s on one thread and 0.28 s split with a worker.
 *
 * The worker only ever does the plain case. Anything else — a file gone, no longer a regular
 * file, larger than expected, an error — comes back as "redo", and the caller handles that item
 * itself, on its own thread, exactly as it would without a worker: the worker never decides
 * what an edge case means. The worker is started on first use and ended after IDLE_MS without
 * work (it costs ~9 MB of RSS while it lives), so an idle daemon does not keep it.
 */
import { Worker } from 'node:worker_threads';

/** One file to hash: absolute path and its size from lstat, or -1 when unknown (fstat's). */
export type HashItem = [abs: string, knownSize: number];
/** A hashed file with the facts of the open descriptor, or undefined: redo it yourself. */
export type HashDone = { hash: string; size: number; ino: number; mode: number; mtimeMs: number; ctimeMs: number } | undefined;
/** One file to copy: source, new destination (created exclusively), expected hash, size, mode. */
export type CopyItem = [src: string, dest: string, hash: string, size: number, mode: number];
/** true: copied and verified; false: the source does not hold that content (dest removed); undefined: redo it yourself. */
export type CopyDone = boolean | undefined;

/** What walkTree and the agent's staging ask of a helper thread (absent: they do it all themselves). */
export interface FileHelper {
  hash(items: HashItem[], maxUnknownSize: number): Promise<HashDone[]>;
  copy(items: CopyItem[]): Promise<CopyDone[]>;
  /** Starts the thread now when work is known to come (its start costs ~0.1–0.3 s of compiling). */
  warm?(): void;
}

const IDLE_MS = 250;
/** How long a thread started by warm() waits for its first job. */
const WARM_IDLE_MS = 3000;

// Plain CommonJS for `eval: true`; mirrors hashPathSync (manifest.ts) and copyVerifiedSync
// (agent fsutil.ts) on their plain path (a copy: a file smaller than the buffer, read and checked
// before its copy is created), and answers null ("redo") for everything else.
const SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const C = fs.constants;
const OPEN = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;
const buf = Buffer.allocUnsafe(256 * 1024);
function hashOne(abs, known, maxUnknown) {
  let fd;
  try { fd = fs.openSync(abs, OPEN); } catch { return null; }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return null;
    const size = known >= 0 ? known : st.size;
    if (known < 0 && size > maxUnknown) return null;
    const h = createHash('sha256');
    let pos = 0;
    while (pos < size) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
    return [h.digest('hex'), pos, st.ino, st.mode, st.mtimeMs, st.ctimeMs];
  } catch { return null; } finally { fs.closeSync(fd); }
}
function copyOne(src, dest, hash, size, mode) {
  if (size >= buf.length) return null;
  let sfd;
  try { sfd = fs.openSync(src, OPEN); } catch { return null; }
  try {
    const got = fs.readSync(sfd, buf, 0, buf.length, null);
    if (got !== size) return null;
    if (createHash('sha256').update(buf.subarray(0, got)).digest('hex') !== hash) return false;
    const dfd = fs.openSync(dest, C.O_WRONLY | C.O_CREAT | C.O_EXCL, mode);
    let ok = false;
    try {
      for (let off = 0; off < got; ) off += fs.writeSync(dfd, buf, off, got - off);
      ok = true;
    } finally {
      fs.closeSync(dfd);
      if (!ok) try { fs.rmSync(dest, { force: true }); } catch {}
    }
    return true;
  } catch { return null; } finally { fs.closeSync(sfd); }
}
parentPort.on('message', (m) => {
  const out = [];
  if (m.op === 'hash') for (const [abs, known] of m.items) out.push(hashOne(abs, known, m.maxUnknown));
  else for (const [src, dest, hash, size, mode] of m.items) out.push(copyOne(src, dest, hash, size, mode));
  parentPort.postMessage({ id: m.id, out });
});
`;

/**
 * One worker thread, started on first use, ended after IDLE_MS idle. A worker that fails makes
 * every pending item "redo" (the caller does it), and the next call starts a new one.
 */
export class FileWorker implements FileHelper {
  private worker: Worker | undefined;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (out: unknown[]) => void; n: number }>();
  private idleTimer: NodeJS.Timeout | undefined;

  hash(items: HashItem[], maxUnknownSize: number): Promise<HashDone[]> {
    return this.run('hash', items, { maxUnknown: maxUnknownSize }).then((out) =>
      out.map((r) => {
        if (!Array.isArray(r)) return undefined;
        const [hash, size, ino, mode, mtimeMs, ctimeMs] = r as [string, number, number, number, number, number];
        return { hash, size, ino, mode, mtimeMs, ctimeMs };
      }),
    );
  }

  copy(items: CopyItem[]): Promise<CopyDone[]> {
    return this.run('copy', items, {}).then((out) => out.map((r) => (typeof r === 'boolean' ? r : undefined)));
  }

  warm(): void {
    if (this.worker !== undefined) return;
    this.started();
    // idle for longer than after a job: the work it was started for may be a second away
    this.idleTimer = setTimeout(() => this.close(), WARM_IDLE_MS);
    this.idleTimer.unref();
  }

  private run(op: 'hash' | 'copy', items: unknown[], extra: object): Promise<unknown[]> {
    if (items.length === 0) return Promise.resolve([]);
    const w = this.started();
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const id = this.seq++;
    return new Promise((resolve) => {
      this.pending.set(id, { resolve, n: items.length });
      w.postMessage({ id, op, items, ...extra });
    });
  }

  private started(): Worker {
    if (this.worker !== undefined) return this.worker;
    const w = new Worker(SOURCE, { eval: true, resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2, stackSizeMb: 1 } });
    w.unref();
    w.on('message', (m: { id: number; out: unknown[] }) => {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      p.resolve(m.out);
      if (this.pending.size === 0) this.idleSoon();
    });
    const fail = () => {
      if (this.worker !== w) return;
      this.worker = undefined;
      for (const p of this.pending.values()) p.resolve(new Array<undefined>(p.n).fill(undefined));
      this.pending.clear();
    };
    w.on('error', fail);
    w.on('exit', fail);
    this.worker = w;
    return w;
  }

  private idleSoon(): void {
    if (this.worker === undefined) return;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.close(), IDLE_MS);
    this.idleTimer.unref();
  }

  /** Ends the worker now (a daemon's shutdown, or idle); a later call starts a new one. */
  close(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const w = this.worker;
    if (w === undefined) return;
    this.worker = undefined;
    for (const p of this.pending.values()) p.resolve(new Array<undefined>(p.n).fill(undefined));
    this.pending.clear();
    void w.terminate();
  }
}
