import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskContext } from '../tasks/engine.js';
import { BackupStore, newBackupId } from './backup.js';
import { adoptBackups } from './backuprename.js';

const base = mkdtempSync(join(tmpdir(), 'spoke-backuprename-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let seq = 0;

/** A store with archives (and sidecars) of `domain`, as BackupStore.write leaves them. */
function storeWith(domain: string, ids: string[]): BackupStore {
  const store = new BackupStore(join(base, `case${seq++}`));
  mkdirSync(join(store.dir, domain), { recursive: true });
  for (const id of ids) {
    writeFileSync(join(store.dir, domain, `${id}.tar.gz`), `archive ${id}`);
    writeFileSync(join(store.dir, domain, `${id}.json`), JSON.stringify({ format: 1, id, domain, reason: 'manual', createdMs: 1 }));
  }
  return store;
}

const log = () => {
  const lines: string[] = [];
  return { lines, ctx: { log: (m: string, level?: string) => lines.push(level ? `${level}: ${m}` : m) } as unknown as TaskContext };
};

describe('backups follow a rename', () => {
  const a = newBackupId(1_700_000_000_000);
  const b = newBackupId(1_700_000_100_000);

  it('every archive and sidecar moves to the new name; the old directory goes; listed and found under the new name only', () => {
    const store = storeWith('blog.example', [a, b]);
    const l = log();
    adoptBackups(l.ctx, store, 'blog.example', 'news.example');
    expect(l.lines).toEqual([
      'the 2 backup(s) of blog.example are now listed under news.example (spoke site backup ls news.example); each restores onto the renamed site',
    ]);
    expect(store.list('news.example').map((x) => [x.id, x.domain])).toEqual([
      [a, 'news.example'],
      [b, 'news.example'],
    ]);
    expect(store.find(a, 'news.example').path).toBe(join(store.dir, 'news.example', `${a}.tar.gz`));
    expect(store.list('blog.example')).toEqual([]);
    expect(existsSync(join(store.dir, 'blog.example'))).toBe(false);
    // again (the migrate's finish after its switch): nothing left, nothing said
    const again = log();
    adoptBackups(again.ctx, store, 'blog.example', 'news.example');
    expect(again.lines).toEqual([]);
  });

  it('joins backups the new name already has; an id there already stays where it was (said), and so does a backup being written', () => {
    const store = storeWith('blog.example', [a, b]);
    mkdirSync(join(store.dir, 'news.example'));
    writeFileSync(join(store.dir, 'news.example', `${b}.tar.gz`), 'another archive');
    mkdirSync(join(store.dir, 'blog.example', `.partial-${newBackupId()}`));
    const l = log();
    adoptBackups(l.ctx, store, 'blog.example', 'news.example');
    expect(l.lines).toEqual([
      'the 1 backup(s) of blog.example are now listed under news.example (spoke site backup ls news.example); each restores onto the renamed site',
      `warn: backup ${b} of blog.example stays in ${store.dir}/blog.example: news.example already has a backup with that id`,
    ]);
    expect(
      readdirSync(join(store.dir, 'blog.example'))
        .filter((f) => !f.startsWith('.'))
        .sort(),
    ).toEqual([`${b}.json`, `${b}.tar.gz`]);
    expect(
      store
        .list('news.example')
        .map((x) => x.id)
        .sort(),
    ).toEqual([a, b]);
  });

  it('a site without backups, or no rename: nothing happens', () => {
    const store = storeWith('other.example', []);
    expect(store.adopt('blog.example', 'news.example')).toEqual({ moved: [], kept: [] });
    expect(store.adopt('other.example', 'other.example')).toEqual({ moved: [], kept: [] });
    expect(existsSync(join(store.dir, 'news.example'))).toBe(false);
  });
});
