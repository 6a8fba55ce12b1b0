import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyVerifiedSync } from './fsutil.js';

const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(join(tmpdir(), 'spoke-fsutil-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('copyVerifiedSync', () => {
  const BUF = 256 * 1024; // fsutil's buffer: the edge between a file read whole and one streamed
  const sizes = [0, 11, BUF - 1, BUF, BUF + 1, 3 * BUF];

  it('copies a file of any size that holds the content asked for, with the mode asked for', () => {
    for (const n of sizes) {
      const content = Buffer.alloc(n, n % 251);
      const src = join(dir, `src-${n}`);
      fs.writeFileSync(src, content);
      const dest = join(dir, `dest-${n}`);
      expect(copyVerifiedSync(src, dest, sha(content), n, 0o640)).toBe(true);
      expect(fs.readFileSync(dest).equals(content)).toBe(true);
      expect(fs.statSync(dest).mode & 0o777).toBe(0o640 & ~process.umask());
    }
  });

  it('refuses, leaving no destination, a source with other content, another size, grown or shrunk', () => {
    for (const n of sizes) {
      if (n === 0) continue;
      const content = Buffer.alloc(n, 1);
      const src = join(dir, `src-${n}`);
      // same size, other content
      fs.writeFileSync(src, Buffer.alloc(n, 2));
      expect(copyVerifiedSync(src, join(dir, `a-${n}`), sha(content), n)).toBe(false);
      // grown since (one byte more), and shrunk (one byte less)
      fs.writeFileSync(src, Buffer.concat([content, Buffer.from('x')]));
      expect(copyVerifiedSync(src, join(dir, `b-${n}`), sha(content), n)).toBe(false);
      fs.writeFileSync(src, content.subarray(0, n - 1));
      expect(copyVerifiedSync(src, join(dir, `c-${n}`), sha(content), n)).toBe(false);
    }
    expect(fs.readdirSync(dir).filter((f) => !f.startsWith('src-'))).toEqual([]);
  });

  it('refuses a source that is missing, a symlink, a directory or a FIFO; creates nothing', () => {
    fs.writeFileSync(join(dir, 'real'), 'abc');
    fs.symlinkSync(join(dir, 'real'), join(dir, 'link'));
    fs.mkdirSync(join(dir, 'sub'));
    const fifo = join(dir, 'fifo');
    const made = spawnSync('mkfifo', [fifo]).status === 0;
    for (const src of ['missing', 'link', 'sub', ...(made ? ['fifo'] : [])]) {
      expect(copyVerifiedSync(join(dir, src), join(dir, `out-${src}`), sha('abc'), 3)).toBe(false);
      expect(fs.existsSync(join(dir, `out-${src}`))).toBe(false);
    }
  });

  it('never overwrites an existing destination', () => {
    fs.writeFileSync(join(dir, 'src'), 'new');
    fs.writeFileSync(join(dir, 'dest'), 'keep me');
    expect(() => copyVerifiedSync(join(dir, 'src'), join(dir, 'dest'), sha('new'), 3)).toThrow(/EEXIST/);
    expect(fs.readFileSync(join(dir, 'dest'), 'utf8')).toBe('keep me');
  });
});
