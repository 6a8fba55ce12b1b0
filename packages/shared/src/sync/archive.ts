/**
 * Archive safety: which tar entries may be written at all, and an extractor that writes them so
 * that nothing lands outside the destination, nothing is written through a symlink, and a refused
 * archive leaves nothing behind.
 *
 * Strategy (chosen over a validate-first pass, which would need the whole stream buffered): each
 * entry's header is checked before that entry is written, and everything is written into a fresh
 * private staging directory (`<destRoot>/.spoke-staging-XXXXXX`, mode 0700, same filesystem).
 * Only when the whole archive was read and accepted are the staged top-level names renamed into
 * destRoot; on any refusal or error the staging directory is removed and destRoot is as before.
 * Staging lives under destRoot (not beside it) because destRoot is what the caller may write to:
 * an agent's configured roots need not include their parents.
 */
import { constants as FS } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { fail, isSpokeError } from '../errors.js';
import { errnoText, hasErrno, isErrno } from './fsx.js';
import { checkEntryPath, checkSymlinkTarget, comparePaths, parentOf, STAGING_PREFIX } from './paths.js';
import { readTar, type ByteSource, type TarEntry } from './tario.js';

export { checkEntryPath, checkSymlinkTarget, STAGING_PREFIX } from './paths.js';

/** What an accepted archive entry creates. A hardlink's `linkTarget` is a tree-relative path. */
export type SafeEntryType = 'file' | 'dir' | 'symlink' | 'hardlink';

/** An archive entry that passed checkArchiveEntry, normalised. `path` '' is the root ('./'). */
export interface SafeEntry {
  path: string;
  type: SafeEntryType;
  /** Permission bits (0o777 at most: special bits are refused, not stripped). */
  mode: number;
  size: number;
  linkTarget?: string;
  mtime?: Date;
}

const SPECIAL_BITS = 0o7000; // setuid, setgid, sticky

/**
 * The header fields checkArchiveEntry reads. Deliberately looser than tar-stream's own type: the
 * parser hands over `null` and extension types for typeflags it does not know, and a checker of
 * hostile input must not assume the declared union.
 */
export interface ArchiveHeader {
  name: string;
  type?: string | null;
  mode?: number;
  size?: number;
  linkname?: string | null;
  mtime?: Date;
}

/**
 * Checks one tar header on its own (stateful checks — duplicates, parents, hardlink targets —
 * happen during extraction). Refused: device files, FIFOs, unknown entry types, unsafe paths
 * (see checkEntryPath), symlinks that are absolute or leave the tree (see checkSymlinkTarget),
 * hardlinks to an unsafe path, setuid/setgid/sticky bits, and non-file entries carrying data.
 * @throws SpokeError ARCHIVE_UNSAFE
 */
export function checkArchiveEntry(header: ArchiveHeader): SafeEntry {
  const path = checkEntryPath(header.name);
  const what = JSON.stringify(header.name);
  const type = entryType(header.type, what);
  const rawMode = (header.mode ?? (type === 'dir' ? 0o755 : 0o644)) & 0o7777;
  if (rawMode & SPECIAL_BITS) {
    throw fail('ARCHIVE_UNSAFE', `${what} has setuid, setgid or sticky bits (mode ${rawMode.toString(8)})`);
  }
  const size = header.size ?? 0;
  if (type !== 'file' && size !== 0) throw fail('ARCHIVE_UNSAFE', `${what} is a ${type} but carries data`);
  if (path === '' && type !== 'dir') throw fail('ARCHIVE_UNSAFE', `${what} names the root but is not a directory`);
  const safe: SafeEntry = { path, type, mode: rawMode, size };
  if (header.mtime) safe.mtime = header.mtime;
  if (type === 'symlink') safe.linkTarget = checkSymlinkTarget(path, header.linkname ?? '');
  if (type === 'hardlink') {
    const target = checkEntryPath(header.linkname ?? '');
    if (target === '' || target === path) throw fail('ARCHIVE_UNSAFE', `hardlink ${what} has no usable target`);
    safe.linkTarget = target;
  }
  return safe;
}

function entryType(t: ArchiveHeader['type'], what: string): SafeEntryType {
  switch (t) {
    case 'file':
    case 'contiguous-file':
      return 'file';
    case 'directory':
      return 'dir';
    case 'symlink':
      return 'symlink';
    case 'link':
      return 'hardlink';
    case 'character-device':
    case 'block-device':
    case 'fifo':
      throw fail('ARCHIVE_UNSAFE', `${what} is a ${t}; device files and FIFOs are never extracted`);
    default:
      throw fail('ARCHIVE_UNSAFE', `${what} has an unsupported entry type (${String(t)})`);
  }
}

/** Options for extractArchive. */
export interface ExtractOptions {
  /** Called after each entry was written into staging (progress). */
  onEntry?: (entry: SafeEntry) => void;
  /** Refuse archives with more entries than this. */
  maxEntries?: number;
  /** Refuse archives whose files add up to more bytes than this (checked from headers, before writing). */
  maxBytes?: number;
  /**
   * Called with each accepted entry before it is written (after the built-in checks); throwing
   * refuses the archive like any other refusal (the caller's own limits, with its own error).
   */
  beforeEntry?: (entry: SafeEntry) => void;
}

/** What extractArchive wrote. */
export interface ExtractResult {
  entries: number;
  bytes: number;
  /** The names created directly in destRoot. */
  topLevel: string[];
}

type Kind = SafeEntryType | 'implicit-dir';

interface Staging {
  root: string;
  seen: Map<string, Kind>;
  dirModes: Map<string, number>;
  entries: number;
  bytes: number;
}

/**
 * Extracts a tar into destRoot (created if missing) safely; see the module comment for how.
 * Directories are created 0700 while being filled and get their modes at the end (a 0555 entry
 * must not stop its own children from being written); implicit parents get 0755. Owners are not
 * restored. Fails, without touching destRoot, when a top-level name already exists there.
 * @throws SpokeError ARCHIVE_UNSAFE (refused or malformed archive), ARCHIVE_PATH_EXISTS
 */
export async function extractArchive(source: ByteSource, destRoot: string, opts: ExtractOptions = {}): Promise<ExtractResult> {
  await fsp.mkdir(destRoot, { recursive: true });
  const root = await fsp.mkdtemp(join(destRoot, STAGING_PREFIX));
  const st: Staging = { root, seen: new Map(), dirModes: new Map(), entries: 0, bytes: 0 };
  try {
    for await (const entry of readTar(source)) {
      const safe = checkArchiveEntry(entry.header);
      if (safe.path === '') continue; // './': destRoot's own mode is not the archive's to set
      admit(st, safe, opts);
      opts.beforeEntry?.(safe);
      await ensureParents(st, safe.path);
      await writeEntry(st, safe, entry);
      opts.onEntry?.(safe);
    }
    await applyDirModes(st);
    const topLevel = await moveIntoPlace(root, destRoot);
    return { entries: st.entries, bytes: st.bytes, topLevel };
  } catch (err) {
    await fsp.rm(root, { recursive: true, force: true }).catch(() => undefined);
    // File system errors (ENOSPC, EACCES…) get a code; a failing source's own error passes through.
    if (isSpokeError(err) || !hasErrno(err)) throw err;
    throw fail('INTERNAL', `extracting into ${destRoot} failed: ${errnoText(err)}`);
  }
}

/** Stateful checks: duplicates, limits. */
function admit(st: Staging, e: SafeEntry, opts: ExtractOptions): void {
  const prev = st.seen.get(e.path);
  if (prev !== undefined && !(prev === 'implicit-dir' && e.type === 'dir')) {
    throw fail('ARCHIVE_UNSAFE', `${JSON.stringify(e.path)} appears twice in the archive`);
  }
  st.entries++;
  if (e.type === 'file') st.bytes += e.size;
  if (opts.maxEntries !== undefined && st.entries > opts.maxEntries) {
    throw fail('ARCHIVE_UNSAFE', `archive has more than ${opts.maxEntries} entries`);
  }
  if (opts.maxBytes !== undefined && st.bytes > opts.maxBytes) {
    throw fail('ARCHIVE_UNSAFE', `archive holds more than ${opts.maxBytes} bytes`);
  }
}

/**
 * Makes sure every parent of `path` is a real directory we created: missing ones are created,
 * one that is a symlink, file or hardlink in this archive is refused (that would be writing
 * through it). The lstat of the direct parent guards against anything we did not track.
 */
async function ensureParents(st: Staging, path: string): Promise<void> {
  const segs = path.split('/');
  for (let i = 1; i < segs.length; i++) {
    const dir = segs.slice(0, i).join('/');
    const kind = st.seen.get(dir);
    if (kind === 'dir' || kind === 'implicit-dir') continue;
    if (kind !== undefined) {
      throw fail('ARCHIVE_UNSAFE', `${JSON.stringify(path)} would be written through ${kind} ${JSON.stringify(dir)}`);
    }
    await fsp.mkdir(join(st.root, dir), { mode: 0o700 });
    st.seen.set(dir, 'implicit-dir');
    st.dirModes.set(dir, 0o755);
  }
  const parent = parentOf(path);
  const pst = await fsp.lstat(parent === '' ? st.root : join(st.root, parent));
  if (!pst.isDirectory()) throw fail('ARCHIVE_UNSAFE', `parent of ${JSON.stringify(path)} is not a real directory`);
}

async function writeEntry(st: Staging, e: SafeEntry, entry: TarEntry): Promise<void> {
  const abs = join(st.root, e.path);
  switch (e.type) {
    case 'dir':
      if (st.seen.get(e.path) !== 'implicit-dir') await fsp.mkdir(abs, { mode: 0o700 });
      st.dirModes.set(e.path, e.mode);
      break;
    case 'file':
      await writeFile(abs, e, entry);
      break;
    case 'symlink':
      await fsp.symlink(e.linkTarget as string, abs);
      break;
    case 'hardlink': {
      // Only to a regular file from this same archive: linking to one of its symlinks would
      // re-anchor that symlink's relative target in another directory (and maybe outside).
      const target = e.linkTarget as string;
      if (st.seen.get(target) !== 'file') {
        throw fail('ARCHIVE_UNSAFE', `hardlink ${JSON.stringify(e.path)} must point to a file earlier in the archive`);
      }
      await fsp.link(join(st.root, target), abs);
      break;
    }
  }
  st.seen.set(e.path, e.type);
}

/** O_EXCL|O_NOFOLLOW: never reuses or follows whatever might already sit at the path. */
async function writeFile(abs: string, e: SafeEntry, entry: TarEntry): Promise<void> {
  const fh = await fsp.open(abs, FS.O_WRONLY | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW, 0o600);
  try {
    let written = 0;
    for await (const buf of entry.body) {
      await fh.write(buf, 0, buf.length);
      written += buf.length;
    }
    if (written !== e.size) throw fail('ARCHIVE_UNSAFE', `${JSON.stringify(e.path)} is truncated`);
    await fh.chmod(e.mode);
    if (e.mtime) await fh.utimes(e.mtime, e.mtime);
  } finally {
    await fh.close();
  }
}

/** Final directory modes, deepest first, inside the private staging dir (no one can swap them). */
async function applyDirModes(st: Staging): Promise<void> {
  const dirs = [...st.dirModes.keys()].sort((a, b) => comparePaths(b, a));
  for (const d of dirs) await fsp.chmod(join(st.root, d), st.dirModes.get(d) as number);
}

/** Renames staged top-level names into destRoot after checking none of them exists there. */
async function moveIntoPlace(staging: string, destRoot: string): Promise<string[]> {
  const names = (await fsp.readdir(staging)).sort(comparePaths);
  for (const name of names) {
    const exists = await fsp.lstat(join(destRoot, name)).then(
      () => true,
      (err: unknown) => (isErrno(err, 'ENOENT') ? false : Promise.reject(err)),
    );
    if (exists) throw fail('ARCHIVE_PATH_EXISTS', `${join(destRoot, name)} already exists`);
  }
  for (const name of names) await fsp.rename(join(staging, name), join(destRoot, name));
  await fsp.rmdir(staging);
  return names;
}
