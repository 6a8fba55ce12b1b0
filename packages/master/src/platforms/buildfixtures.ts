/**
 * Test helper (not exported from index): real archives and repositories for build tests and the
 * build fuzz suite — tar (plain, gzip, bzip2, xz) by GNU tar, zip by Info-ZIP `zip`, git
 * repositories by git — and snapshots of a directory tree to prove a build changed nothing
 * outside its own staging dir and target.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

/** An archive format a build unpacks. */
export type ArchiveFormat = 'tar' | 'tar.gz' | 'tar.bz2' | 'tar.xz' | 'zip';

/** Every archive format, for tests that cover them all. */
export const ARCHIVE_FORMATS: readonly ArchiveFormat[] = ['tar', 'tar.gz', 'tar.bz2', 'tar.xz', 'zip'];

const TAR_FLAG: Record<Exclude<ArchiveFormat, 'zip'>, string[]> = { tar: [], 'tar.gz': ['-z'], 'tar.bz2': ['-j'], 'tar.xz': ['-J'] };

/**
 * Packs the names `entries` of directory `stage` into `out` as `format` (symlinks stored as
 * links, never followed). Returns `out`.
 */
export function packArchive(stage: string, entries: string[], out: string, format: ArchiveFormat): string {
  if (format === 'zip') execFileSync('zip', ['-q', '-r', '-y', out, ...entries], { cwd: stage, stdio: ['ignore', 'ignore', 'pipe'] });
  else execFileSync('tar', ['-c', ...TAR_FLAG[format], '-f', out, '-C', stage, '--', ...entries], { stdio: ['ignore', 'ignore', 'pipe'] });
  return out;
}

const GIT = [
  '-c',
  'user.name=Spoke Test',
  '-c',
  'user.email=test@example.com',
  '-c',
  'init.defaultBranch=main',
  '-c',
  'commit.gpgsign=false',
  '-c',
  'core.symlinks=true',
];

/** Turns directory `dir` (its files and links as they are) into a git repository with one commit. */
export function commitRepo(dir: string): string {
  const git = (...args: string[]) => execFileSync('git', [...GIT, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  git('init', '-q');
  git('add', '-A');
  git('commit', '-q', '--allow-empty', '-m', 'fixture');
  return dir;
}

/** A git-style patch that creates the symlink `path` -> `target` (GNU patch applies these). */
export function symlinkPatch(path: string, target: string): string {
  return [
    `diff --git a/${path} b/${path}`,
    'new file mode 120000',
    'index 0000000..1111111',
    '--- /dev/null',
    `+++ b/${path}`,
    '@@ -0,0 +1 @@',
    `+${target}`,
    '\\ No newline at end of file',
    '',
  ].join('\n');
}

/** A unified patch that creates the file `path` holding `text` (one line). */
export function filePatch(path: string, text: string): string {
  return [`diff --git a/${path} b/${path}`, 'new file mode 100644', '--- /dev/null', `+++ b/${path}`, '@@ -0,0 +1 @@', `+${text}`, ''].join('\n');
}

/**
 * A stored zip written byte by byte (what `zip` never writes: the same name twice); `link`
 * entries are Unix symlinks whose body is the target.
 */
export function rawZip(entries: { name: string; body: string; link?: boolean }[]): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const data = Buffer.from(e.body);
    const crc = crc32(data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(10, 4);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    locals.push(lh, name, data);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE((3 << 8) | 30, 4);
    ch.writeUInt16LE(10, 6);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(((e.link ? 0o120777 : 0o100644) << 16) >>> 0, 38); // made by Unix: the mode
    ch.writeUInt32LE(offset, 42);
    central.push(ch, name);
    offset += 30 + name.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** One entry of a snapshot: type, mode and content hash (files) or target (links). */
export type Snapshot = Map<string, string>;

/**
 * Everything under `root` (not following links), except the relative paths `skip` and what lies
 * under them: path → "type mode hash-or-target".
 */
export function snapshot(root: string, skip: (rel: string) => boolean = () => false): Snapshot {
  const out: Snapshot = new Map();
  const visit = (rel: string): void => {
    const abs = rel ? join(root, rel) : root;
    const st = lstatSync(abs);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out.set(rel, `link ${readlinkSync(abs)}`);
    else if (st.isFile()) out.set(rel, `file ${mode} ${createHash('sha1').update(readFileSync(abs)).digest('hex')}`);
    else if (st.isDirectory()) {
      out.set(rel, `dir ${mode}`);
      for (const n of readdirSync(abs).sort()) {
        const r = rel ? `${rel}/${n}` : n;
        if (!skip(r)) visit(r);
      }
    } else out.set(rel, `other ${mode}`);
  };
  visit('');
  return out;
}

/** What differs between two snapshots, one line per path ("+ added", "- removed", "~ changed"). */
export function snapshotDiff(before: Snapshot, after: Snapshot): string[] {
  const out: string[] = [];
  for (const [k, v] of before) {
    const w = after.get(k);
    if (w === undefined) out.push(`- ${k} (${v})`);
    else if (w !== v) out.push(`~ ${k} (${v} -> ${w})`);
  }
  for (const [k, v] of after) if (!before.has(k)) out.push(`+ ${k} (${v})`);
  return out;
}
