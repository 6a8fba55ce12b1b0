import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ManifestEntry, sha256Hex } from './manifest.js';
import { type StreamedEntry, TreeStreamParser, TreeStreamWriter } from './treestream.js';

const file = (path: string, content: string, mode = 0o644): ManifestEntry => ({
  path,
  type: 'file',
  mode,
  size: Buffer.byteLength(content),
  hash: sha256Hex(content),
});
const dir = (path: string): ManifestEntry => ({ path, type: 'dir', mode: 0o755, size: 0, hash: '' });
const link = (path: string, target: string): ManifestEntry => ({
  path,
  type: 'symlink',
  mode: 0o777,
  size: Buffer.byteLength(target),
  hash: sha256Hex(target),
  target,
});

interface Seen {
  entries: StreamedEntry[];
  contents: string[];
  end?: { rootHash: string; entries: number };
}

function parse(chunks: Buffer[]): Seen {
  const seen: Seen = { entries: [], contents: [] };
  let cur: Buffer[] = [];
  const p = new TreeStreamParser({
    entry: (s) => seen.entries.push(s),
    content: (piece) => cur.push(Buffer.from(piece)),
    fileEnd: () => {
      seen.contents.push(Buffer.concat(cur).toString());
      cur = [];
    },
    end: (rootHash, entries) => (seen.end = { rootHash, entries }),
  });
  for (const c of chunks) p.push(c);
  p.finish();
  return seen;
}

function write(entries: { e: ManifestEntry; content?: string }[], held: Set<string> = new Set()): Buffer[] {
  const out: Buffer[] = [];
  const w = new TreeStreamWriter((c) => out.push(Buffer.from(c)), held);
  for (const { e, content } of entries) w.entry(e, content === undefined ? undefined : Buffer.from(content));
  w.end('ab'.repeat(32), entries.length);
  return out;
}

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'spoke-treestream-'));
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

describe('tree record stream', () => {
  const ENTRIES = [
    { e: dir('a') },
    { e: file('a/x.php', '<?php x'), content: '<?php x' },
    { e: file('a/copy.php', '<?php x'), content: '<?php x' },
    { e: file('a/empty', ''), content: '' },
    { e: link('a/l', '../x') },
    { e: file('naïve café.txt', 'accents'), content: 'accents' },
    { e: file('held.txt', 'on the agent already'), content: 'on the agent already' },
  ];

  it('carries entries in order with their content; repeated content once; held content not at all', () => {
    const seen = parse(write(ENTRIES, new Set([sha256Hex('on the agent already')])));
    expect(seen.entries.map((s) => [s.entry.path, s.source])).toEqual([
      ['a', undefined],
      ['a/x.php', 'content'],
      ['a/copy.php', 'again'],
      ['a/empty', 'content'],
      ['a/l', undefined],
      ['naïve café.txt', 'content'],
      ['held.txt', 'held'],
    ]);
    expect(seen.entries.map((s) => s.entry)).toEqual(ENTRIES.map((x) => x.e));
    expect(seen.contents).toEqual(['<?php x', '', 'accents']);
    expect(seen.end).toEqual({ rootHash: 'ab'.repeat(32), entries: ENTRIES.length });
  });

  it('parses the same whatever the message boundaries, content of several MiB included', () => {
    const big = 'z'.repeat(2.5 * 1024 * 1024);
    const all = [...ENTRIES, { e: file('a/big.bin', big), content: big }];
    const joined = Buffer.concat(write(all));
    const want = parse([joined]);
    expect(want.contents.at(-1)?.length).toBe(big.length);
    for (const size of [1, 3, 41, 4096, 1024 * 1024]) {
      const pieces: Buffer[] = [];
      for (let i = 0; i < joined.length; i += size) pieces.push(joined.subarray(i, i + size));
      expect(parse(pieces)).toEqual(want);
    }
  });

  it('reads content from disk when the walk did not hand it over', () => {
    writeFileSync(join(tmp, 'f'), 'from disk');
    const out: Buffer[] = [];
    const w = new TreeStreamWriter((c) => out.push(Buffer.from(c)));
    w.entry(file('f', 'from disk'), undefined, join(tmp, 'f'));
    w.end('00'.repeat(32), 1);
    expect(parse(out).contents).toEqual(['from disk']);
    expect(() => new TreeStreamWriter(() => undefined).entry(file('gone', 'x'), undefined, join(tmp, 'gone'))).toThrow(/^cannot read .*gone: ENOENT/);
  });

  it('refuses malformed records, anything after the end, and a stream without its end', () => {
    const p = (bytes: Buffer) => () => parse([bytes]);
    expect(p(Buffer.from([7, 0, 1, 0x61, 0, 0]))).toThrow(/record of unknown kind 7/);
    expect(p(Buffer.from([1, 0xff, 0xff]))).toThrow(/a path of 65535 bytes/);
    expect(p(Buffer.from([1, 0, 1, 0xff, 1, 0xed]))).toThrow(/path is not valid UTF-8/);
    const ok = Buffer.concat(write([{ e: dir('a') }]));
    expect(p(Buffer.concat([ok, Buffer.from([1, 0, 1, 0x62, 1, 0xed])]))).toThrow(/goes on after its end record/);
    expect(p(ok.subarray(0, ok.length - 1))).toThrow(/ended before its end record/);
    const withFile = Buffer.concat(write([{ e: file('x', 'content'), content: 'content' }]));
    expect(p(withFile.subarray(0, 20))).toThrow(/ended before its end record/);
  });
});
