/**
 * Site backups on the master: `<state-dir>/backups/<domain>/<id>.tar.gz`, one gzip'd tar with
 * - `site/…`       the site dir from the master's canonical platform tree (settings included;
 *                   `files` and `private` are not in the canonical tree),
 * - `files/…`, `private/…`  the user files, fetched back from a web server (SiteFilesPack),
 * - `database.sql` the database dump (refused when empty or without its completion marker),
 * - `backup.json`  what the backup is (last: it carries the checksums of the parts).
 * Next to each archive, `<id>.json` holds the same backup.json, for listing without reading the
 * archive. The directory is the catalogue: no table; a backup exists when its archive does.
 *
 * Writing is atomic: the parts are gathered in `.partial-<id>/` beside the archive, the archive
 * is written there, fsynced, and renamed into place only when complete; any failure removes the
 * partial dir, so no half archive is ever listed.
 *
 * Checksums (`parts.*.sha256`): `database` is the SHA-256 of database.sql's bytes (check by hand
 * with sha256sum); `site` and `files` are SHA-256 over each entry in archive order of the line
 * `type\tname\tmode(octal)\tsize\tlinkname\n` followed by the entry's bytes. Reading a backup
 * recomputes all three and refuses a mismatch (BACKUP_INVALID) before anything is restored.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  openSync,
  readSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import {
  DUMP_TAIL_BYTES,
  DumpTail,
  SPOKE_VERSION,
  buildManifest,
  checkArchiveEntry,
  checkDomain,
  fail,
  isSpokeError,
  openTarWriter,
  packTree,
  readTar,
  walkTree,
  type TarWriter,
} from '@spoke/shared';

/** A part of a backup and its checksum. */
export interface BackupPart {
  entries: number;
  bytes: number;
  sha256: string;
}

/** backup.json. */
export interface BackupMeta {
  format: 1;
  id: string;
  domain: string;
  aliases: string[];
  platform: string;
  kind: string;
  coreVersion: string | null;
  dbServer: string | null;
  dbName: string | null;
  /** Why it was taken: manual, pre-delete, pre-restore. */
  reason: string;
  createdMs: number;
  created: string;
  spokeVersion: string;
  /** The web server the files came from. */
  filesFrom: string | null;
  parts: { site: BackupPart; files: BackupPart; database: BackupPart };
}

/** A stored backup. */
export interface BackupInfo extends BackupMeta {
  path: string;
  /** Archive size. */
  archiveBytes: number;
}

/** A backup read back and checked: its parts, ready to restore, in a staging dir. */
export interface BackupParts {
  meta: BackupMeta;
  /** A plain tar of the site dir (names relative to the site dir). */
  siteTar: string;
  /** A plain tar with files/ and private/ (what SiteFilesUnpack takes). */
  filesTar: string;
  /** database.sql (complete). */
  dump: string;
}

const ID_RE = /^\d{8}T\d{6}\d{3}Z-[0-9a-f]{6}$/;

/** A new backup id: UTC time to the millisecond, then 6 random hex digits (sorts by time). */
export function newBackupId(nowMs: number = Date.now()): string {
  const iso = new Date(nowMs).toISOString(); // 2024-01-02T03:04:05.678Z
  const stamp = iso.replace(/[-:]/g, '').replace('.', '').replace(/Z$/, 'Z');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

/** SHA-256 over a tree part's entries (see the module comment). */
class PartHash {
  private readonly h = createHash('sha256');
  entries = 0;
  bytes = 0;

  entry(header: { name: string; type?: string | null; mode?: number; size?: number; linkname?: string | null }): void {
    this.entries++;
    this.h.update(`${header.type ?? ''}\t${header.name}\t${((header.mode ?? 0) & 0o7777).toString(8)}\t${header.size ?? 0}\t${header.linkname ?? ''}\n`);
  }

  data(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    this.h.update(chunk);
  }

  done(): BackupPart {
    return { entries: this.entries, bytes: this.bytes, sha256: this.h.digest('hex') };
  }
}

async function* hashed(body: AsyncIterable<Uint8Array>, ...sinks: ((c: Uint8Array) => void)[]): AsyncGenerator<Uint8Array> {
  for await (const c of body) {
    for (const s of sinks) s(c);
    yield c;
  }
}

/** What the writer puts into a new archive. */
export interface NewBackup {
  meta: Omit<BackupMeta, 'parts' | 'format' | 'spokeVersion' | 'created'>;
  /** The site dir in the master's tree (host path); null or missing: an empty `site/`. */
  siteDir: string | null;
  /** A plain tar of files/ and private/ (from SiteFilesPack). */
  filesTar: string;
  /** The database dump. */
  dump: string;
}

/** The backups directory of the master. */
export class BackupStore {
  constructor(readonly dir: string) {}

  private domainDir(domain: string): string {
    checkDomain(domain);
    return join(this.dir, domain);
  }

  /** A fresh staging dir for backup `id` of `domain` (removed by `write`, or by `discard`). */
  staging(domain: string, id: string): string {
    const d = join(this.domainDir(domain), `.partial-${id}`);
    mkdirSync(d, { recursive: true, mode: 0o700 });
    return d;
  }

  /** Removes a staging dir. */
  discard(domain: string, id: string): void {
    rmSync(join(this.domainDir(domain), `.partial-${id}`), { recursive: true, force: true });
  }

  /**
   * Writes the archive from the gathered parts: checks the dump, packs, gzips, fsyncs, renames
   * into place. On any failure nothing is left but the staging dir, which is removed.
   * @throws SpokeError DB_DUMP_INCOMPLETE, ARCHIVE_UNSAFE (a bad files tar), TREE_UNREADABLE
   */
  async write(b: NewBackup): Promise<BackupInfo> {
    const dir = this.domainDir(b.meta.domain);
    const staging = join(dir, `.partial-${b.meta.id}`);
    const tmp = join(staging, 'archive.tar.gz');
    try {
      checkDumpFile(b.dump, `the dump of ${b.meta.dbName ?? b.meta.domain}`);
      const tar = openTarWriter();
      const written = pipeline(tar.readable, createGzip({ level: 6 }), createWriteStream(tmp, { mode: 0o600 }));
      let parts: BackupMeta['parts'];
      try {
        parts = await fillArchive(tar, b);
      } catch (e) {
        tar.destroy(e as Error);
        await written.catch(() => undefined);
        throw e;
      }
      const meta: BackupMeta = {
        format: 1,
        ...b.meta,
        created: new Date(b.meta.createdMs).toISOString(),
        spokeVersion: SPOKE_VERSION,
        parts,
      };
      const json = `${JSON.stringify(meta, null, 2)}\n`;
      await tar.add({ name: 'backup.json', type: 'file', mode: 0o600, size: Buffer.byteLength(json) }, one(Buffer.from(json)));
      tar.end();
      await written;
      const fh = await open(tmp, 'r');
      await fh.sync();
      await fh.close();
      const final = join(dir, `${b.meta.id}.tar.gz`);
      writeFileSync(join(dir, `${b.meta.id}.json`), json, { mode: 0o600 });
      renameSync(tmp, final);
      await fsyncDir(dir);
      return { ...meta, path: final, archiveBytes: statSync(final).size };
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  /** Backups, newest last; of one domain or all. */
  list(domain?: string): BackupInfo[] {
    if (domain) checkDomain(domain);
    if (!existsSync(this.dir)) return [];
    const domains = domain ? [domain] : readdirSync(this.dir).filter((d) => !d.startsWith('.'));
    const out: BackupInfo[] = [];
    for (const d of domains) {
      const dd = join(this.dir, d);
      if (!existsSync(dd)) continue;
      for (const f of readdirSync(dd)) {
        const m = /^(.+)\.tar\.gz$/.exec(f);
        if (!m || !ID_RE.test(m[1] as string)) continue;
        out.push(this.info(d, m[1] as string));
      }
    }
    return out.sort((a, b) => a.createdMs - b.createdMs || a.id.localeCompare(b.id));
  }

  private info(domain: string, id: string): BackupInfo {
    const path = join(this.dir, domain, `${id}.tar.gz`);
    let meta: BackupMeta;
    try {
      meta = JSON.parse(readFileSync(join(this.dir, domain, `${id}.json`), 'utf8')) as BackupMeta;
    } catch {
      // The sidecar is gone: list what the name says (restore reads backup.json from the archive).
      const empty = { entries: 0, bytes: 0, sha256: '' };
      meta = {
        format: 1,
        id,
        domain,
        aliases: [],
        platform: '',
        kind: '',
        coreVersion: null,
        dbServer: null,
        dbName: null,
        reason: 'unknown',
        createdMs: 0,
        created: '',
        spokeVersion: '',
        filesFrom: null,
        parts: { site: empty, files: empty, database: empty },
      };
    }
    return { ...meta, id, domain, path, archiveBytes: statSync(path).size };
  }

  /** A backup by id (of `domain` when given). @throws SpokeError BACKUP_NOT_FOUND */
  find(id: string, domain?: string): BackupInfo {
    if (!ID_RE.test(id)) throw fail('BACKUP_NOT_FOUND', `${JSON.stringify(id)} is not a backup id (see: spoke site backup ls)`);
    const b = this.list(domain).find((x) => x.id === id);
    if (!b) throw fail('BACKUP_NOT_FOUND', `no backup ${id}${domain ? ` of ${domain}` : ''} (see: spoke site backup ls${domain ? ` ${domain}` : ''})`);
    return b;
  }

  /**
   * The backups of a site that was renamed from `from` to `to` move with it: every archive and
   * sidecar of `backups/<from>/` goes to `backups/<to>/` (renames on one filesystem; an id already
   * there is left where it is and returned in `kept`). Archives are not rewritten: their
   * backup.json still names the domain they were taken as, and a restore renames their data
   * (backuptasks.ts). Idempotent: nothing left to move is no error.
   * @throws SpokeError INVALID_DOMAIN
   */
  adopt(from: string, to: string): { moved: string[]; kept: string[] } {
    const src = this.domainDir(from);
    const dst = this.domainDir(to);
    const moved: string[] = [];
    const kept: string[] = [];
    if (from === to || !existsSync(src)) return { moved, kept };
    mkdirSync(dst, { recursive: true, mode: 0o700 });
    for (const f of readdirSync(src).sort()) {
      const m = /^(.+)\.tar\.gz$/.exec(f);
      if (!m || !ID_RE.test(m[1] as string)) continue;
      const id = m[1] as string;
      if (existsSync(join(dst, f))) {
        kept.push(id);
        continue;
      }
      // The sidecar first: an archive is listed from its sidecar when it has one.
      if (existsSync(join(src, `${id}.json`))) renameSync(join(src, `${id}.json`), join(dst, `${id}.json`));
      renameSync(join(src, f), join(dst, f));
      moved.push(id);
    }
    // The old directory goes when nothing of ours is left in it (staging dirs of a running backup stay).
    if (readdirSync(src).length === 0) rmSync(src, { recursive: true, force: true });
    return { moved, kept };
  }

  /** Deletes a backup. @throws SpokeError BACKUP_NOT_FOUND */
  remove(id: string): BackupInfo {
    const b = this.find(id);
    rmSync(b.path, { force: true });
    rmSync(join(this.dir, b.domain, `${b.id}.json`), { force: true });
    return b;
  }

  /**
   * Reads a backup into `stagingDir` and checks it all before anything is restored: every entry
   * passes the hostile-archive rules, only the known parts are there, the checksums match
   * backup.json, and the dump is complete.
   * @throws SpokeError BACKUP_INVALID, ARCHIVE_UNSAFE, DB_DUMP_INCOMPLETE
   */
  async read(path: string, stagingDir: string): Promise<BackupParts> {
    mkdirSync(stagingDir, { recursive: true, mode: 0o700 });
    const out = { siteTar: join(stagingDir, 'site.tar'), filesTar: join(stagingDir, 'files.tar'), dump: join(stagingDir, 'database.sql') };
    const site = openTarWriter();
    const files = openTarWriter();
    const siteDone = pipeline(site.readable, createWriteStream(out.siteTar, { mode: 0o600 }));
    const filesDone = pipeline(files.readable, createWriteStream(out.filesTar, { mode: 0o600 }));
    const hs = { site: new PartHash(), files: new PartHash() };
    const dbHash = createHash('sha256');
    const tail = new DumpTail();
    let metaText: string | null = null;
    let sawDump = false;
    try {
      const gunzip = createGunzip();
      const raw = createReadStream(path);
      raw.on('error', (e) => gunzip.destroy(e));
      raw.pipe(gunzip);
      for await (const entry of readTar(gunzip)) {
        const safe = checkArchiveEntry(entry.header);
        const top = safe.path.split('/')[0] ?? '';
        if (safe.type === 'hardlink') throw fail('BACKUP_INVALID', `${safe.path}: a backup holds no hard links`);
        const h = { name: safe.path, type: entry.header.type, mode: entry.header.mode, size: entry.header.size, linkname: entry.header.linkname };
        if (top === 'site') {
          hs.site.entry(h);
          if (safe.path === 'site') continue;
          const rel = safe.path.slice('site/'.length);
          await site.add({ ...tarHeader(safe), name: rel }, safe.type === 'file' ? hashed(entry.body, (c) => hs.site.data(c)) : undefined);
        } else if (top === 'files' || top === 'private') {
          hs.files.entry(h);
          await files.add({ ...tarHeader(safe), name: safe.path }, safe.type === 'file' ? hashed(entry.body, (c) => hs.files.data(c)) : undefined);
        } else if (safe.path === 'database.sql' && safe.type === 'file') {
          if (sawDump) throw fail('BACKUP_INVALID', 'database.sql appears twice');
          sawDump = true;
          await pipeline(
            hashed(
              entry.body,
              (c) => dbHash.update(c),
              (c) => tail.update(c),
            ),
            createWriteStream(out.dump, { mode: 0o600 }),
          );
        } else if (safe.path === 'backup.json' && safe.type === 'file') {
          if (safe.size > 1024 * 1024) throw fail('BACKUP_INVALID', 'backup.json is too large');
          const chunks: Buffer[] = [];
          for await (const c of entry.body) chunks.push(c);
          metaText = Buffer.concat(chunks).toString('utf8');
        } else {
          throw fail('BACKUP_INVALID', `${JSON.stringify(entry.header.name)} does not belong in a site backup`);
        }
      }
      site.end();
      files.end();
      await Promise.all([siteDone, filesDone]);
    } catch (e) {
      site.destroy(e as Error);
      files.destroy(e as Error);
      await Promise.allSettled([siteDone, filesDone]);
      if (isSpokeError(e)) throw e;
      throw fail('BACKUP_INVALID', `${path} cannot be read: ${(e as Error).message}`);
    }
    if (metaText === null) throw fail('BACKUP_INVALID', `${path} has no backup.json (not a Spoke backup, or cut short)`);
    let meta: BackupMeta;
    try {
      meta = JSON.parse(metaText) as BackupMeta;
    } catch {
      throw fail('BACKUP_INVALID', `${path}: backup.json is not JSON`);
    }
    if (meta.format !== 1 || !meta.parts) throw fail('BACKUP_INVALID', `${path}: backup.json has format ${String(meta.format)}; this master reads format 1`);
    if (!sawDump) throw fail('BACKUP_INVALID', `${path} holds no database.sql`);
    tail.check(`database.sql in ${path}`);
    const got = { site: hs.site.done(), files: hs.files.done(), database: dbHash.digest('hex') };
    const bad = [
      got.site.sha256 !== meta.parts.site?.sha256 ? 'site' : '',
      got.files.sha256 !== meta.parts.files?.sha256 ? 'files' : '',
      got.database !== meta.parts.database?.sha256 ? 'database' : '',
    ].filter(Boolean);
    if (bad.length) throw fail('BACKUP_INVALID', `${path}: checksum mismatch in ${bad.join(', ')}; the backup is damaged`);
    return { meta, ...out };
  }
}

/** Site dir, then files, then the dump: returns the parts' checksums. */
async function fillArchive(tar: TarWriter, b: NewBackup): Promise<BackupMeta['parts']> {
  const site = new PartHash();
  const add = async (
    h: PartHash,
    header: { name: string; type: 'file' | 'directory' | 'symlink'; mode: number; size?: number; linkname?: string },
    body?: AsyncIterable<Uint8Array>,
  ) => {
    h.entry(header);
    await tar.add(header, body ? hashed(body, (c) => h.data(c)) : undefined);
  };
  await add(site, { name: 'site', type: 'directory', mode: 0o755 });
  if (b.siteDir && existsSync(b.siteDir)) {
    const walk = await walkTree(b.siteDir, { defaultExcludes: false, exclude: ['files', 'private', '**/.spoke-staging-*'] });
    for await (const e of readTar(packTree(b.siteDir, buildManifest(walk.manifest.entries)))) {
      const safe = checkArchiveEntry(e.header);
      await add(site, { ...tarHeader(safe), name: `site/${safe.path}` }, safe.type === 'file' ? e.body : undefined);
    }
  }
  const files = new PartHash();
  for await (const e of readTar(createReadStream(b.filesTar))) {
    // From an agent: checked like any archive before it goes into a backup.
    const safe = checkArchiveEntry(e.header);
    const top = safe.path.split('/')[0];
    if (top !== 'files' && top !== 'private')
      throw fail('ARCHIVE_UNSAFE', `the site files tar holds ${JSON.stringify(safe.path)}, outside files/ and private/`);
    if (safe.type === 'hardlink') throw fail('ARCHIVE_UNSAFE', `the site files tar holds a hard link (${safe.path})`);
    await add(files, { ...tarHeader(safe), name: safe.path }, safe.type === 'file' ? e.body : undefined);
  }
  const size = statSync(b.dump).size;
  const db = createHash('sha256');
  await tar.add(
    { name: 'database.sql', type: 'file', mode: 0o600, size },
    hashed(createReadStream(b.dump), (c) => db.update(c)),
  );
  return { site: site.done(), files: files.done(), database: { entries: 1, bytes: size, sha256: db.digest('hex') } };
}

function tarHeader(e: ReturnType<typeof checkArchiveEntry>): {
  name: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  size?: number;
  linkname?: string;
  mtime?: Date;
} {
  const type = e.type === 'dir' ? 'directory' : e.type === 'symlink' ? 'symlink' : 'file';
  return {
    name: e.path,
    type,
    mode: e.mode,
    ...(type === 'file' ? { size: e.size } : {}),
    ...(e.linkTarget !== undefined && type === 'symlink' ? { linkname: e.linkTarget } : {}),
    ...(e.mtime ? { mtime: e.mtime } : {}),
  };
}

async function* one(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

/** @throws SpokeError DB_DUMP_INCOMPLETE */
function checkDumpFile(path: string, what: string): void {
  const tail = new DumpTail();
  const size = existsSync(path) ? statSync(path).size : 0;
  if (size > 0) {
    const n = Math.min(size, DUMP_TAIL_BYTES);
    const buf = Buffer.alloc(n);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, n, size - n);
    } finally {
      closeSync(fd);
    }
    tail.update(buf);
    tail.bytes = size;
  }
  tail.check(what);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
