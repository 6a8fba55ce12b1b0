import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import Database from 'better-sqlite3';
import { RootMap, createLogger, walkTree } from '@spoke/shared';
import { migrate, openStore } from '../namespace/store.js';
import { SqliteStatCache } from './statcache.js';
import { TreeStore } from './trees.js';

/**
 * The inode numbers this process has inotify watches on (Linux: /proc/self/fdinfo of each
 * inotify descriptor lists its watches as `inotify wd:HEX ino:HEX …`).
 */
function inotifyInodes(): Set<number> {
  const out = new Set<number>();
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    let text: string;
    try {
      text = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile
    }
    for (const m of text.matchAll(/^inotify wd:[0-9a-f]+ ino:([0-9a-f]+) /gm)) out.add(parseInt(m[1] as string, 16));
  }
  return out;
}

/**
 * The watcher keeps the manifest current without a verify's directory check: every kind of
 * change below must show up through watcher events alone (checkDirs off). No sleeps: a test
 * waits for the store's change events (onChange), or runs the watch start-up on fake timers.
 */
describe('TreeStore watching', () => {
  let root: string;
  let tree: string;
  let store: TreeStore;
  /** The paths the store's events named since the test last cleared it ('' for a whole-tree event). */
  let changed: string[];
  let waiters: (() => void)[];
  const NS = '/var/aegir/p';

  function track(s: TreeStore): TreeStore {
    s.onChange = (_ns, rel) => {
      changed.push(rel ?? '');
      for (const w of waiters.splice(0)) w();
    };
    return s;
  }

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'spoke-trees-'));
    tree = join(root, 'var/aegir/p');
    for (let d = 0; d < 5; d++) {
      mkdirSync(join(tree, `mod${d}`, 'src'), { recursive: true });
      for (let f = 0; f < 20; f++) writeFileSync(join(tree, `mod${d}`, 'src', `f${f}.php`), `<?php // ${d}/${f}\n`);
    }
    mkdirSync(join(tree, 'sites/default/files'), { recursive: true });
    changed = [];
    waiters = [];
    store = track(new TreeStore({ db: openStore(':memory:'), rootMap: new RootMap(root), log: createLogger({ level: 'silent' }) }));
  });
  afterEach(async () => {
    vi.useRealTimers();
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });

  /**
   * Waits until `cond` holds, checking it now and after each change event. Events are the only
   * thing that moves the store; the deadline only turns a missed event into a failure.
   */
  async function until(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
    for (;;) {
      const next = new Promise<void>((resolve) => waiters.push(resolve));
      if (await cond()) return;
      let timer: NodeJS.Timeout | undefined;
      const missed = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no change event while waiting for ${what}`)), 30_000);
      });
      try {
        await Promise.race([next, missed]);
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Waits until the store's manifest equals a fresh walk of the tree (events only). */
  async function settles(): Promise<void> {
    const want = (await walkTree(tree)).manifest.rootHash;
    await until(`the manifest to reach ${want}`, async () => (await store.manifest(NS)).rootHash === want);
  }

  const watched = () => until('the watcher to be ready', () => store.isWatched(NS));

  /**
   * Waits until this process has an inotify watch on `dir`. chokidar reports a new directory
   * before it watches it, and nothing after: this is the one wait that reads the kernel's state.
   */
  async function dirWatched(dir: string): Promise<void> {
    const ino = statSync(dir).ino;
    for (let i = 0; !inotifyInodes().has(ino); i++) {
      if (i === 1500) throw new Error(`${dir} was never watched`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it("a new tree's watcher starts only once its converge has released it, and then misses nothing", async () => {
    // scheduleWatch's quiet periods run on fake time; chokidar's own work on real I/O after it
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    await store.manifest(NS, [], { live: true });
    const release = store.hold(NS);
    await vi.advanceTimersByTimeAsync(1500); // three quiet periods, held all along
    expect(store.isWatchStarted(NS)).toBe(false);
    // changed while no watcher exists: the watcher's first read re-walks
    writeFileSync(join(tree, 'mod1/src/f1.php'), '<?php // edited before the watch\n');
    release();
    await vi.advanceTimersByTimeAsync(499);
    expect(store.isWatchStarted(NS)).toBe(false); // released, not yet quiet for long enough
    await vi.advanceTimersByTimeAsync(1);
    expect(store.isWatchStarted(NS)).toBe(true);
    vi.useRealTimers();
    await watched();
    await settles();
  });

  it('sees edits, mode changes, adds in new dirs, removes and renames through events', async () => {
    await store.manifest(NS, [], { live: true });
    await watched();
    await settles();

    writeFileSync(join(tree, 'mod0/src/f0.php'), '<?php // edited, longer\n');
    await settles();
    // same size, different content
    writeFileSync(join(tree, 'mod0/src/f1.php'), '<?php // 0/X\n');
    await settles();
    chmodSync(join(tree, 'mod1/src/f2.php'), 0o755);
    await settles();
    mkdirSync(join(tree, 'newmod/deep/er'), { recursive: true });
    writeFileSync(join(tree, 'newmod/deep/er/x.php'), 'x');
    await settles();
    // a file inside the new directory written after the watcher has taken it up
    await dirWatched(join(tree, 'newmod/deep/er'));
    writeFileSync(join(tree, 'newmod/deep/er/y.php'), 'y');
    await settles();
    rmSync(join(tree, 'mod2'), { recursive: true });
    await settles();
    renameSync(join(tree, 'mod3'), join(tree, 'mod3-renamed'));
    await settles();
    writeFileSync(join(tree, 'mod3-renamed/src/f0.php'), 'after rename');
    await settles();
    // editor-backup-like names are content too
    writeFileSync(join(tree, 'mod4/src/f0.php~'), 'backup');
    await settles();
  });

  it('a verify checks only the directories a watch may be missing on, and finds a change below a lost watch', async () => {
    const full = () => store.manifest(NS, [], { checkDirs: true });
    await store.manifest(NS, [], { live: true });
    await full();
    const all = store.lastDirsChecked;
    expect(all).toBe(13); // root, 5 × modN and modN/src, sites, sites/default (files: user data, excluded)
    await watched();
    await settles(); // the ready re-walk
    await full();
    expect(store.lastDirsChecked).toBe(1); // every directory was watched before the walk: the root only
    // a directory created now is suspect, with everything below it
    mkdirSync(join(tree, 'late/deeper'), { recursive: true });
    writeFileSync(join(tree, 'late/deeper/a.php'), 'a');
    await settles();
    await full();
    expect(store.lastDirsChecked).toBe(3);
    // chokidar lost the new directory's watch: a file added there makes no event, the check finds it
    await dirWatched(join(tree, 'late/deeper'));
    const t = (store as unknown as { trees: Map<string, { watcher: { unwatch(p: string): void } }> }).trees.get(NS);
    t?.watcher.unwatch(join(tree, 'late/deeper'));
    expect(inotifyInodes().has(statSync(join(tree, 'late/deeper')).ino)).toBe(false); // gone at once: no event can come
    writeFileSync(join(tree, 'late/deeper/b.php'), 'b');
    const want = (await walkTree(tree)).manifest.rootHash;
    expect((await full()).rootHash).toBe(want);
    // removed directories leave the suspects
    rmSync(join(tree, 'late'), { recursive: true });
    await settles();
    await full();
    await full();
    expect(store.lastDirsChecked).toBe(1);
  });

  it('after an event storm (the kernel may have dropped events) the next read re-walks the tree', async () => {
    await store.close();
    store = track(new TreeStore({ db: openStore(':memory:'), rootMap: new RootMap(root), log: createLogger({ level: 'silent' }), stormEvents: 50 }));
    await store.manifest(NS, [], { live: true });
    await watched();
    await settles(); // the ready re-walk
    const before = store.untrustedRewalks;
    for (let i = 0; i < 120; i++) writeFileSync(join(tree, 'mod0/src', `storm${i}.php`), `<?php // ${i}\n`);
    await settles();
    expect(store.untrustedRewalks).toBe(before + 1);
    // and every directory is checked from then on: watches of new directories may be missing
    await store.manifest(NS, [], { checkDirs: true });
    expect(store.lastDirsChecked).toBe(13);
    // a few events are not a storm
    writeFileSync(join(tree, 'mod1/src/f0.php'), 'calm');
    await settles();
    expect(store.untrustedRewalks).toBe(before + 1);
  });

  it('ignores user files and does not report them as changes', async () => {
    await store.manifest(NS, [], { live: true });
    await watched();
    await settles();
    changed.length = 0;
    writeFileSync(join(tree, 'sites/default/files/upload.jpg'), 'jpeg');
    mkdirSync(join(tree, 'sites/default/files/styles'));
    // the kernel reports events in order: once the event of a later write is in, any event the
    // user files made would be too
    writeFileSync(join(tree, 'mod0/src/sentinel.php'), 's');
    await until('the sentinel event', () => changed.includes('mod0/src/sentinel.php'));
    expect(changed.filter((p) => p !== 'mod0/src/sentinel.php')).toEqual([]);
    const m = await store.manifest(NS);
    expect(m.entries.some((e) => e.path.startsWith('sites/default/files'))).toBe(false);
  });
});

describe('SqliteStatCache', () => {
  it('knows when it holds nothing below a directory (pending records count)', () => {
    const cache = new SqliteStatCache(openStore(':memory:'));
    const rec = { ino: 1, size: 1, mtimeMs: 1, ctimeMs: 1, hash: 'a'.repeat(64) };
    expect(cache.holdsNothingUnder('/var/aegir/p')).toBe(true);
    cache.set('/var/aegir/p2/x.php', rec); // a sibling whose name starts the same
    cache.set('/var/aegir/p-old/x.php', rec);
    expect(cache.holdsNothingUnder('/var/aegir/p')).toBe(true);
    cache.set('/var/aegir/p/deep/x.php', rec); // not flushed yet
    expect(cache.holdsNothingUnder('/var/aegir/p')).toBe(false);
    expect(cache.holdsNothingUnder('/var/aegir/p/')).toBe(false);
    expect(cache.holdsNothingUnder('/var/aegir/p/deep')).toBe(false);
    expect(cache.holdsNothingUnder('/var/aegir/p/dee')).toBe(true);
    expect(cache.get('/var/aegir/p/deep/x.php')).toEqual(rec);
  });

  it('migration 6 keeps the hash records and makes the table WITHOUT ROWID', () => {
    // a store at schema 5, with a record in its file_hashes table, then migrated forward
    const db = new Database(':memory:');
    db.pragma('foreign_keys = ON');
    expect(migrate(db, 5)).toBe(5);
    const ddl = () => (db.prepare("SELECT sql FROM sqlite_master WHERE name = 'file_hashes'").get() as { sql: string }).sql;
    expect(ddl()).not.toMatch(/WITHOUT ROWID/);
    db.prepare(`INSERT INTO file_hashes (path, ino, size, mtime_ms, ctime_ms, hash) VALUES ('/t/kept', 9, 10, 11.5, 12.5, '${'c'.repeat(64)}')`).run();
    expect(migrate(db)).toBeGreaterThanOrEqual(6);
    expect(ddl()).toMatch(/WITHOUT ROWID/);
    expect(new SqliteStatCache(db).get('/t/kept')).toEqual({ ino: 9, size: 10, mtimeMs: 11.5, ctimeMs: 12.5, hash: 'c'.repeat(64) });
  });

  it('checkpoints the WAL after writing, so the next commit (an operator request) does not', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-statcache-'));
    try {
      const db = openStore(join(dir, 'spoke.db'));
      const cache = new SqliteStatCache(db);
      // fewer pages than SQLite's auto-checkpoint (1,000): it would leave them in the WAL
      for (let i = 0; i < 2000; i++) cache.set(`/t/f${i}`, { ino: i, size: i, mtimeMs: 1, ctimeMs: 2, hash: 'd'.repeat(64) });
      const before = statSync(join(dir, 'spoke.db')).size;
      cache.flush();
      // the rows are in the database file itself, not only in the WAL
      expect(statSync(join(dir, 'spoke.db')).size).toBeGreaterThan(before + 100_000);
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("puts a walk's deferred write off while a converge is serving a tree, then writes it", () => {
    vi.useFakeTimers();
    try {
      const db = openStore(':memory:');
      let busy = true;
      const cache = new SqliteStatCache(db, () => busy);
      const rows = () => (db.prepare('SELECT COUNT(*) AS n FROM file_hashes').get() as { n: number }).n;
      cache.set('/t/a', { ino: 7, size: 3, mtimeMs: 1, ctimeMs: 2, hash: 'b'.repeat(64) });
      cache.flushSoon();
      vi.advanceTimersByTime(10_000);
      expect(rows()).toBe(0); // still serving
      busy = false;
      vi.advanceTimersByTime(500);
      expect(rows()).toBe(1);
      // and never later than a minute after the walk, busy or not
      busy = true;
      cache.set('/t/b', { ino: 8, size: 3, mtimeMs: 1, ctimeMs: 2, hash: 'c'.repeat(64) });
      cache.flushSoon();
      vi.advanceTimersByTime(59_000);
      expect(rows()).toBe(1);
      vi.advanceTimersByTime(1_000);
      expect(rows()).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it("writes a walk's records later, answers from them meanwhile, and writes them on flush", () => {
    const db = openStore(':memory:');
    const cache = new SqliteStatCache(db);
    const rows = () => (db.prepare('SELECT COUNT(*) AS n FROM file_hashes').get() as { n: number }).n;
    const rec = { ino: 7, size: 3, mtimeMs: 1, ctimeMs: 2, hash: 'b'.repeat(64) };
    cache.set('/t/a', rec);
    cache.flushSoon();
    expect(rows()).toBe(0);
    expect(cache.get('/t/a')).toEqual(rec);
    cache.flush();
    expect(rows()).toBe(1);
    expect(cache.get('/t/a')).toEqual(rec);
    // the schema keeps one row per path
    cache.set('/t/a', { ...rec, size: 4 });
    cache.flush();
    expect(rows()).toBe(1);
    expect(cache.get('/t/a')?.size).toBe(4);
    // a closed database is not written to (a late timer after shutdown)
    cache.set('/t/b', rec);
    db.close();
    expect(() => cache.flush()).not.toThrow();
  });
});
