import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileWorker, type FileHelper, type HashDone, type HashItem } from './fileworker.js';
import { walkTree } from './walk.js';
import type { StatCache, StatCacheRecord } from './walktypes.js';

let dir: string;
const worker = new FileWorker();
beforeAll(() => {
  dir = fs.mkdtempSync(join(tmpdir(), 'spoke-fileworker-'));
  const tree = join(dir, 'tree');
  for (let m = 0; m < 12; m++) {
    fs.mkdirSync(join(tree, `m${m}`, 'src'), { recursive: true });
    for (let f = 0; f < 150; f++) fs.writeFileSync(join(tree, `m${m}`, 'src', `F${f}.php`), `<?php // ${m}/${f}\n${'x'.repeat((m * 150 + f) % 3000)}`);
    fs.writeFileSync(join(tree, `m${m}`, 'empty.txt'), '');
    fs.symlinkSync('src/F1.php', join(tree, `m${m}`, 'link.php'));
  }
  fs.chmodSync(join(tree, 'm3', 'src', 'F7.php'), 0o755);
  fs.writeFileSync(join(tree, 'm5', 'big.bin'), Buffer.alloc(3 * 1024 * 1024, 7)); // > 1 MiB: never the helper's
});
afterAll(() => {
  worker.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A helper that counts what it was given and what it did, around another one. */
function counting(inner: FileHelper): FileHelper & { asked: number; done: number } {
  const c = {
    asked: 0,
    done: 0,
    hash: async (items: HashItem[], max: number): Promise<HashDone[]> => {
      c.asked += items.length;
      const out = await inner.hash(items, max);
      c.done += out.filter((d) => d !== undefined).length;
      return out;
    },
    copy: inner.copy.bind(inner),
  };
  return c;
}

/** Starts the worker and waits for one round trip (it takes ~70 ms to start). */
async function ready(h: FileHelper): Promise<void> {
  await h.hash([[join(dir, 'tree', 'm0', 'empty.txt'), -1]], 1);
}

class MapCache implements StatCache {
  readonly m = new Map<string, StatCacheRecord>();
  get(abs: string) {
    return this.m.get(abs);
  }
  set(abs: string, r: StatCacheRecord) {
    this.m.set(abs, r);
  }
}

describe('walkTree with a helper thread', () => {
  it('finds the same manifest, and the helper did part of it', async () => {
    const plain = await walkTree(join(dir, 'tree'));
    const h = counting(worker);
    await ready(h);
    const helped = await walkTree(join(dir, 'tree'), { helper: h });
    expect(helped.manifest).toEqual(plain.manifest);
    expect(helped.hashedBytes).toBe(plain.hashedBytes);
    expect(h.done).toBeGreaterThan(300);
    expect(h.asked).toBeLessThan(plain.manifest.entries.filter((e) => e.type === 'file').length);
  });

  it('fills the stat cache with the same records as without it', async () => {
    const a = new MapCache();
    const b = new MapCache();
    await walkTree(join(dir, 'tree'), { statCache: a, racyMs: 0 });
    await ready(worker);
    await walkTree(join(dir, 'tree'), { statCache: b, racyMs: 0, helper: worker });
    expect(b.m.size).toBeGreaterThan(1000);
    expect(new Map([...b.m].sort())).toEqual(new Map([...a.m].sort()));
  });

  it('does itself whatever the helper hands back undone, and survives a helper thread that dies', async () => {
    const plain = await walkTree(join(dir, 'tree'));
    const refusing: FileHelper = { hash: async (items) => items.map(() => undefined), copy: async (items) => items.map(() => undefined) };
    expect((await walkTree(join(dir, 'tree'), { helper: refusing })).manifest).toEqual(plain.manifest);

    const dying = new FileWorker();
    await ready(dying);
    const killer: FileHelper = {
      hash: (items, max) => {
        const p = dying.hash(items, max);
        dying.close(); // the thread goes away with the batch in flight
        return p;
      },
      copy: (items) => dying.copy(items),
    };
    expect((await walkTree(join(dir, 'tree'), { helper: killer })).manifest).toEqual(plain.manifest);
  });
});

describe('FileWorker.copy', () => {
  const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');

  it('copies and verifies; a source without that content is refused and leaves nothing', async () => {
    const src = join(dir, 'c-src');
    fs.writeFileSync(src, 'hello world');
    const [ok, wrong, gone] = await worker.copy([
      [src, join(dir, 'c-1'), sha('hello world'), 11, 0o640],
      [src, join(dir, 'c-2'), sha('something else'), 11, 0o644],
      [join(dir, 'no-such-file'), join(dir, 'c-3'), sha('x'), 1, 0o644],
    ]);
    expect(ok).toBe(true);
    expect(fs.readFileSync(join(dir, 'c-1'), 'utf8')).toBe('hello world');
    expect(fs.statSync(join(dir, 'c-1')).mode & 0o777).toBe(0o640 & ~process.umask());
    expect(wrong).toBe(false);
    expect(fs.existsSync(join(dir, 'c-2'))).toBe(false);
    expect(gone).toBeUndefined(); // the caller decides what a missing source means
    expect(fs.existsSync(join(dir, 'c-3'))).toBe(false);
  });

  it('hands back what is not the plain case: a large file, another size, a directory', async () => {
    const big = join(dir, 'e-big');
    const content = Buffer.alloc(300 * 1024, 7);
    fs.writeFileSync(big, content);
    fs.writeFileSync(join(dir, 'e-small'), 'abc');
    fs.mkdirSync(join(dir, 'e-dir'));
    expect(
      await worker.copy([
        [big, join(dir, 'e-1'), sha(content), content.length, 0o644],
        [join(dir, 'e-small'), join(dir, 'e-2'), sha('abcd'), 4, 0o644],
        [join(dir, 'e-dir'), join(dir, 'e-3'), sha('x'), 1, 0o644],
      ]),
    ).toEqual([undefined, undefined, undefined]);
    for (const n of ['e-1', 'e-2', 'e-3']) expect(fs.existsSync(join(dir, n))).toBe(false);
  });

  it('never overwrites an existing destination', async () => {
    const src = join(dir, 'd-src');
    fs.writeFileSync(src, 'new');
    fs.writeFileSync(join(dir, 'd-dest'), 'keep me');
    expect(await worker.copy([[src, join(dir, 'd-dest'), sha('new'), 3, 0o644]])).toEqual([undefined]);
    expect(fs.readFileSync(join(dir, 'd-dest'), 'utf8')).toBe('keep me');
  });
});
