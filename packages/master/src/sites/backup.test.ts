/**
 * The backup archive: written atomically with checksums, refuses incomplete dumps and hostile
 * file tars, and reads back only what is intact (a damaged or hostile archive is refused before
 * anything is restored).
 */
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildManifest, extractArchive, openTarWriter, packTree, readTar, walkTree } from '@spoke/shared';
import { BackupStore, newBackupId, type NewBackup } from './backup.js';

const DUMP = '-- MariaDB dump\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\n-- Dump completed on 2024-01-01 00:00:00\n';

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'spoke-backup-'));
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

/** A site dir on the "master" and a files tar as an agent would send it. */
async function fixture(store: BackupStore, id: string, dump = DUMP): Promise<NewBackup> {
  const site = join(tmp, 'platform/sites/a.test');
  mkdirSync(join(site, 'modules'), { recursive: true });
  writeFileSync(join(site, 'settings.php'), '<?php $db = 1;\n', { mode: 0o640 });
  writeFileSync(join(site, 'modules/x.php'), '<?php\n');
  // User files as they are on a web server.
  const web = join(tmp, 'web/sites/a.test');
  mkdirSync(join(web, 'files/2024'), { recursive: true });
  mkdirSync(join(web, 'private'), { recursive: true });
  writeFileSync(join(web, 'files/2024/photo.jpg'), 'JPEG');
  rmSync(join(web, 'files/latest.jpg'), { force: true });
  symlinkSync('2024/photo.jpg', join(web, 'files/latest.jpg'));
  writeFileSync(join(web, 'private/secret.txt'), 'shh');
  const staging = store.staging('a.test', id);
  const walk = await walkTree(web, { defaultExcludes: false });
  await pipeline(packTree(web, buildManifest(walk.manifest.entries)), createWriteStream(join(staging, 'files.tar')));
  writeFileSync(join(staging, 'database.sql'), dump);
  return {
    meta: {
      id,
      domain: 'a.test',
      aliases: [],
      platform: 'wp',
      kind: 'wordpress',
      coreVersion: '6.4',
      dbServer: 'db1',
      dbName: 'a_test',
      reason: 'manual',
      createdMs: Date.now(),
      filesFrom: 'w1',
    },
    siteDir: site,
    filesTar: join(staging, 'files.tar'),
    dump: join(staging, 'database.sql'),
  };
}

async function entriesOf(path: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const gz = createReadStream(path).pipe(createGunzip());
  for await (const e of readTar(gz)) {
    const chunks: Buffer[] = [];
    for await (const c of e.body) chunks.push(c);
    out.set(`${e.header.type}:${e.header.name.replace(/\/$/, '')}`, e.header.type === 'symlink' ? String(e.header.linkname) : Buffer.concat(chunks).toString());
  }
  return out;
}

describe('BackupStore', () => {
  it('writes one archive with site/, files/, private/, database.sql and backup.json, atomically', async () => {
    const store = new BackupStore(join(tmp, 'backups'));
    const id = newBackupId();
    const info = await store.write(await fixture(store, id));
    expect(info.path).toBe(join(tmp, 'backups/a.test', `${id}.tar.gz`));
    // only the archive and its sidecar are left: no staging dir, no temp file
    expect(readdirSync(join(tmp, 'backups/a.test')).sort()).toEqual([`${id}.json`, `${id}.tar.gz`]);
    const e = await entriesOf(info.path);
    expect(e.get('file:site/settings.php')).toBe('<?php $db = 1;\n');
    expect(e.get('file:site/modules/x.php')).toBe('<?php\n');
    expect(e.get('file:files/2024/photo.jpg')).toBe('JPEG');
    expect(e.get('symlink:files/latest.jpg')).toBe('2024/photo.jpg');
    expect(e.get('file:private/secret.txt')).toBe('shh');
    expect(e.get('file:database.sql')).toBe(DUMP);
    const meta = JSON.parse(e.get('file:backup.json') as string);
    expect(meta).toMatchObject({ format: 1, id, domain: 'a.test', platform: 'wp', kind: 'wordpress', dbName: 'a_test', reason: 'manual' });
    expect(meta.parts.database.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(meta.parts.files.entries).toBe(6); // files, files/2024, photo, latest link, private, secret
    expect(store.list('a.test').map((b) => b.id)).toEqual([id]);
    expect(store.find(id).archiveBytes).toBeGreaterThan(0);

    // read back: parts split out and checked
    const parts = await store.read(info.path, join(tmp, 'restore'));
    expect(readFileSync(parts.dump, 'utf8')).toBe(DUMP);
    const dest = join(tmp, 'restored-files');
    await extractArchive(createReadStream(parts.filesTar), dest);
    expect(readFileSync(join(dest, 'files/2024/photo.jpg'), 'utf8')).toBe('JPEG');
    const siteDest = join(tmp, 'restored-site');
    await extractArchive(createReadStream(parts.siteTar), siteDest);
    expect(readFileSync(join(siteDest, 'settings.php'), 'utf8')).toBe('<?php $db = 1;\n');
  });

  it('refuses a dump that is empty or lacks its completion marker, leaving nothing', async () => {
    const store = new BackupStore(join(tmp, 'backups'));
    for (const dump of ['', '-- MariaDB dump\nCREATE TABLE t (a int);\nINSERT INTO t VAL']) {
      const id = newBackupId();
      await expect(store.write(await fixture(store, id, dump))).rejects.toMatchObject({ code: 'DB_DUMP_INCOMPLETE' });
      expect(readdirSync(join(tmp, 'backups/a.test'))).toEqual([]);
    }
    expect(store.list()).toEqual([]);
  });

  it('refuses a files tar from an agent that holds anything outside files/ and private/', async () => {
    const store = new BackupStore(join(tmp, 'backups'));
    const id = newBackupId();
    const b = await fixture(store, id);
    const t = openTarWriter();
    const done = pipeline(t.readable, createWriteStream(b.filesTar));
    await t.add({ name: 'files', type: 'directory', mode: 0o755 });
    await t.add(
      { name: 'settings.php', type: 'file', mode: 0o644, size: 1 },
      (async function* () {
        yield Buffer.from('x');
      })(),
    );
    t.end();
    await done;
    await expect(store.write(b)).rejects.toMatchObject({ code: 'ARCHIVE_UNSAFE' });
    expect(readdirSync(join(tmp, 'backups/a.test'))).toEqual([]);
  });

  it('refuses a damaged archive (checksum) and a hostile one (path escape), before anything is restored', async () => {
    const store = new BackupStore(join(tmp, 'backups'));
    const info = await store.write(await fixture(store, newBackupId()));
    // damaged: re-pack with one byte of a user file changed (gzip and tar are valid; the checksum is not)
    const changed = join(tmp, 'changed.tar.gz');
    await repack(info.path, changed, (name, data) => (name === 'files/2024/photo.jpg' ? Buffer.from('JPEX') : data));
    await expect(store.read(changed, join(tmp, 'r1'))).rejects.toMatchObject({ code: 'BACKUP_INVALID' });
    // hostile: an entry that climbs out
    const hostile = join(tmp, 'hostile.tar.gz');
    await repack(info.path, hostile, (name, data) => data, [{ name: 'files/../../../etc/evil', data: Buffer.from('x') }]);
    await expect(store.read(hostile, join(tmp, 'r2'))).rejects.toMatchObject({ code: 'ARCHIVE_UNSAFE' });
    // cut short
    const cut = join(tmp, 'cut.tar.gz');
    writeFileSync(cut, readFileSync(info.path).subarray(0, 200));
    await expect(store.read(cut, join(tmp, 'r3'))).rejects.toMatchObject({ code: 'BACKUP_INVALID' });
    // a stranger's file in an otherwise valid archive
    const extra = join(tmp, 'extra.tar.gz');
    await repack(info.path, extra, (name, data) => data, [{ name: 'etc-passwd', data: Buffer.from('x') }]);
    await expect(store.read(extra, join(tmp, 'r4'))).rejects.toMatchObject({ code: 'BACKUP_INVALID' });
  });

  it('lists, finds and removes backups by id; unknown ids are BACKUP_NOT_FOUND', async () => {
    const store = new BackupStore(join(tmp, 'backups'));
    const a = await store.write(await fixture(store, newBackupId(Date.now() - 1000)));
    const b = await store.write(await fixture(store, newBackupId()));
    expect(store.list().map((x) => x.id)).toEqual([a.id, b.id]);
    expect(() => store.find('nope')).toThrow(expect.objectContaining({ code: 'BACKUP_NOT_FOUND' }));
    expect(() => store.find(a.id, 'other.test')).toThrow(expect.objectContaining({ code: 'BACKUP_NOT_FOUND' }));
    store.remove(a.id);
    expect(existsSync(a.path)).toBe(false);
    expect(store.list().map((x) => x.id)).toEqual([b.id]);
  });
});

/** Copies a backup archive entry by entry, changing data and appending raw entries (hostile tests). */
async function repack(from: string, to: string, change: (name: string, data: Buffer) => Buffer, extra: { name: string; data: Buffer }[] = []): Promise<void> {
  const t = openTarWriter();
  const done = pipeline(t.readable, createGzip(), createWriteStream(to));
  for await (const e of readTar(createReadStream(from).pipe(createGunzip()))) {
    const chunks: Buffer[] = [];
    for await (const c of e.body) chunks.push(c);
    const data = change(e.header.name, Buffer.concat(chunks));
    const h = { ...e.header, size: e.header.type === 'file' ? data.length : 0 };
    await t.add(
      h,
      e.header.type === 'file'
        ? (async function* () {
            yield data;
          })()
        : undefined,
    );
  }
  for (const x of extra)
    await t.add(
      { name: x.name, type: 'file', mode: 0o644, size: x.data.length },
      (async function* () {
        yield x.data;
      })(),
    );
  t.end();
  await done;
}
