/**
 * `pnpm bench:stream-prototype --work DIR [--tree SRC] [--runs N]`
 *
 * A measurement, not product code: how fast could a *streamed* first sync be in Node on this
 * machine? The sender (this process) walks a generated 20,000-file Drupal tree in DIR (or SRC),
 * reads each file once, hashes it (SHA-256, as the converge does) and frames path, mode, hash and
 * content onto a loopback TCP socket; the receiver (a child node process, started before the
 * clock) checks each path, verifies each hash and creates the tree with one open/write/close per
 * file. No TLS, no gRPC, no manifest, no journal, no staging: what it measures is a floor for
 * that design, below anything Spoke could ship. Each run is timed against an rsync daemon
 * (`rsync -a --delete --sockopts=TCP_NODELAY`, as in bench:sync) and a local `tar | tar` on the
 * same tree, every run after an untimed `sync`. DIR should be on the file system to measure
 * (e.g. a fresh journaled ext4, as `bench:sync --fresh-fs` makes). Measured 2026-12-02 on a loop
 * ext4: stream 0.74–1.18× rsync (median 0.90×), the receiver's CPU equal to the wall time, two
 * thirds of it in the kernel.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { makeDrupal8Tree } from './drupal-tree.js';
import { median, quiesce, timedTarCopy } from './lib.js';

const { values: args } = parseArgs({ options: { work: { type: 'string' }, tree: { type: 'string' }, runs: { type: 'string', default: '5' } } });
if (!args.work) {
  process.stderr.write('usage: pnpm bench:stream-prototype --work DIR [--tree SRC] [--runs N]\n');
  process.exit(2);
}
const RUNS = Number(args.runs);
const work = fs.mkdtempSync(join(args.work, 'stream-proto-'));
const src = args.tree ? resolve(args.tree) : join(work, 'src');

/** The receiver: frames are [type u8][path length u16][path][mode u32][size u32][sha256 32][content]; type 9 ends. */
const RECEIVER = `
const fs = require('node:fs'); const net = require('node:net'); const { createHash } = require('node:crypto');
const { join } = require('node:path'); const C = fs.constants; const dest = process.argv[1];
const srv = net.createServer({ noDelay: true }, (s) => {
  let pending = Buffer.alloc(0); let files = 0;
  s.on('data', (chunk) => {
    const b = pending.length ? Buffer.concat([pending, chunk]) : chunk; let o = 0;
    for (;;) {
      if (b.length - o < 3) break;
      const pl = b.readUInt16BE(o + 1); const hdr = 3 + pl + 8 + 32;
      if (b.length - o < hdr) break;
      const size = b.readUInt32BE(o + 3 + pl + 4);
      if (b.length - o < hdr + size) break;
      const type = b[o]; const rel = b.toString('utf8', o + 3, o + 3 + pl); const mode = b.readUInt32BE(o + 3 + pl) & 0o777;
      if (type === 9) { const u = process.cpuUsage(); process.send({ files, cpuMs: (u.user + u.system) / 1000, sysMs: u.system / 1000 }); srv.close(); s.destroy(); return; }
      if (rel === '' || rel.startsWith('/') || rel.split('/').some((p) => p === '..' || p === '.' || p === '')) throw new Error('unsafe path ' + rel);
      if (type === 1) fs.mkdirSync(join(dest, rel), 0o700);
      else {
        const data = b.subarray(o + hdr, o + hdr + size);
        if (!createHash('sha256').update(data).digest().equals(b.subarray(o + 3 + pl + 8, o + hdr))) throw new Error('hash mismatch ' + rel);
        const fd = fs.openSync(join(dest, rel), C.O_WRONLY | C.O_CREAT | C.O_EXCL, mode);
        try { for (let w = 0; w < data.length; ) w += fs.writeSync(fd, data, w); } finally { fs.closeSync(fd); }
        files++;
      }
      o += hdr + size;
    }
    pending = o === b.length ? Buffer.alloc(0) : Buffer.from(b.subarray(o));
  });
});
srv.listen(0, '127.0.0.1', () => process.send({ port: srv.address().port }));
`;

/** Walks `root` (directories before their contents), sending every entry and file content to `port`. */
async function send(root: string, port: number): Promise<number> {
  const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  const buf = Buffer.allocUnsafe(256 * 1024);
  let out = Buffer.allocUnsafe(1 << 20);
  let off = 0;
  const flush = async () => {
    if (off === 0) return;
    const b = out.subarray(0, off);
    out = Buffer.allocUnsafe(1 << 20);
    off = 0;
    if (!sock.write(b)) await new Promise((resolve) => sock.once('drain', resolve));
  };
  const put = async (type: number, rel: string, mode: number, data?: Buffer) => {
    const p = Buffer.from(rel);
    const size = data?.length ?? 0;
    const need = 3 + p.length + 8 + 32 + size;
    if (off + need > out.length) await flush();
    if (need > out.length) out = Buffer.allocUnsafe(need);
    out[off] = type;
    out.writeUInt16BE(p.length, off + 1);
    p.copy(out, off + 3);
    out.writeUInt32BE(mode, off + 3 + p.length);
    out.writeUInt32BE(size, off + 3 + p.length + 4);
    if (data)
      createHash('sha256')
        .update(data)
        .digest()
        .copy(out, off + 3 + p.length + 8);
    data?.copy(out, off + 3 + p.length + 8 + 32);
    off += need;
  };
  let files = 0;
  const walk = async (rel: string) => {
    for (const d of fs.readdirSync(rel ? join(root, rel) : root, { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) {
        await put(1, r, fs.lstatSync(join(root, r)).mode & 0o777);
        await walk(r);
      } else if (d.isFile()) {
        const fd = fs.openSync(join(root, r), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        let data: Buffer;
        let mode: number;
        try {
          const st = fs.fstatSync(fd);
          mode = st.mode & 0o777;
          data = st.size <= buf.length ? buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)) : fs.readFileSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        await put(2, r, mode, data);
        files++;
      }
    }
  };
  await walk('');
  await put(9, '', 0);
  await flush();
  sock.end();
  return files;
}

async function streamRun(dest: string): Promise<{ ms: number; receiverCpuMs: number; receiverSysMs: number }> {
  fs.mkdirSync(dest);
  const child = spawn(process.execPath, ['-e', RECEIVER, dest], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const messages: Record<string, number>[] = [];
  let wake: (() => void) | undefined;
  child.on('message', (m) => {
    messages.push(m as Record<string, number>);
    wake?.();
  });
  const next = async () => {
    while (messages.length === 0) {
      if (child.exitCode !== null) throw new Error(`the receiver exited with ${child.exitCode}`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        child.once('exit', () => resolve());
      });
    }
    return messages.shift() as Record<string, number>;
  };
  const { port } = await next();
  quiesce();
  const t0 = performance.now();
  const sent = await send(src, port as number);
  const done = await next();
  const ms = performance.now() - t0;
  if (done.files !== sent) throw new Error(`sent ${sent} files, the receiver made ${done.files}`);
  child.kill();
  return { ms, receiverCpuMs: done.cpuMs as number, receiverSysMs: done.sysMs as number };
}

function timedCmd(cmd: string, argv: string[]): number {
  quiesce();
  const t0 = performance.now();
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr.toString()}`);
  return performance.now() - t0;
}

async function main(): Promise<void> {
  if (!args.tree) {
    const st = makeDrupal8Tree(src, { files: 20_000 });
    process.stderr.write(`tree: ${st.files} files, ${(st.bytes / 1e6).toFixed(1)} MB in ${src}\n`);
  }
  fs.writeFileSync(join(work, 'rsyncd.conf'), `use chroot = no\n[w]\npath = ${dirname(src)}\nread only = yes\nuid = root\ngid = root\n`);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const rsyncd = spawn('rsync', ['--daemon', '--no-detach', `--config=${join(work, 'rsyncd.conf')}`, `--port=${port}`, '--address=127.0.0.1'], {
    stdio: 'ignore',
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const rows: { stream: number; rsync: number; tar: number; cpu: number; sys: number }[] = [];
    for (let i = 0; i < RUNS; i++) {
      const s = await streamRun(join(work, `stream${i}`));
      const r = timedCmd('rsync', ['-a', '--delete', '--sockopts=TCP_NODELAY', `rsync://127.0.0.1:${port}/w/${basename(src)}/`, join(work, `rsync${i}/`)]);
      fs.mkdirSync(join(work, `tar${i}`));
      const t = timedTarCopy(src, join(work, `tar${i}`));
      rows.push({ stream: s.ms, rsync: r, tar: t, cpu: s.receiverCpuMs, sys: s.receiverSysMs });
      process.stderr.write(
        `run ${i + 1}: stream ${Math.round(s.ms)} ms (receiver CPU ${Math.round(s.receiverCpuMs)} ms, ${Math.round(s.receiverSysMs)} system), rsync ${Math.round(r)} ms, tar|tar ${Math.round(t)} ms\n`,
      );
    }
    const m = (k: 'stream' | 'rsync' | 'tar') => Math.round(median(rows.map((x) => x[k])));
    const ratios = rows.map((x) => x.stream / x.rsync);
    process.stdout.write(
      `medians of ${RUNS}: stream ${m('stream')} ms, rsync ${m('rsync')} ms, tar|tar ${m('tar')} ms; stream/rsync ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}); receiver CPU ${Math.round(median(rows.map((x) => x.cpu)))} ms\n`,
    );
  } finally {
    rsyncd.kill();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
