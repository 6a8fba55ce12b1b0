/**
 * Platform verify, the pure part: walk a codebase tree and produce its registry (kind, core
 * version, distribution, install profiles, modules, themes, sites present on disk). Only
 * directories are walked; only info, install, profile and version files are read, and an optional
 * cache keyed by absolute path lets a re-verify skip files whose mtime and size did not change.
 */
import type { Dirent } from 'node:fs';
import { open, readFile, readdir, realpath, stat } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';
import { fail } from '@spoke/shared';
import { captureFirst, detectPlatform, type DetectIO, type PlatformKind, type Problem } from './detect.js';
import { scanAddons, type Addon } from './addons.js';
import { infoString, parseInfoIni, parseInfoYaml, phpTruthy, type InfoObject, type InfoParseResult } from './info.js';

/**
 * The type of an extension: Drupal's (module, theme, profile, theme_engine), WordPress' (plugin,
 * mu-plugin, theme) and MediaWiki's (extension, skin).
 */
export type ExtensionType = 'module' | 'theme' | 'profile' | 'theme_engine' | 'plugin' | 'mu-plugin' | 'extension' | 'skin';

/** One module, theme or theme engine (WordPress: plugin or theme; MediaWiki: extension or skin) found in the platform. */
export interface Extension {
  /** Machine name. */
  name: string;
  /** Human-readable name from the info file (the machine name when the file has none). */
  humanName: string;
  /** Version from the info file (`VERSION` means the core version), or null when there is none. */
  version: string | null;
  /** drupal.org project the extension belongs to (added by packaging), or null. */
  project: string | null;
  /** `package` from the info file, or null. */
  package: string | null;
  /** Highest hook_update_N in the module's .install file, or null. */
  schemaVersion: number | null;
  /** Directory of the extension, relative to the platform root (forward slashes). */
  path: string;
  type: ExtensionType;
  /** The sites/<dir> it belongs to for site-specific extensions, null for platform-wide ones. */
  site: string | null;
}

/** An install profile offered by the platform (hidden profiles are left out). */
export interface ProfileInfo {
  /** Machine name. */
  name: string;
  humanName: string;
  version: string | null;
  hidden: false;
  /** Directory of the profile, relative to the platform root. */
  path: string;
}

/** The distribution a platform carries: its non-core install profile. */
export interface Distribution {
  /** Declared distribution name, else the profile's human name. */
  name: string;
  version: string | null;
  /** Machine name of the profile. */
  profile: string;
}

/** Fields of the platform's top-level composer.json. */
export interface ComposerInfo {
  name: string | null;
  version: string | null;
  description: string | null;
}

/** What verify found in a platform. JSON-serialisable. */
export interface Registry {
  kind: PlatformKind;
  coreVersion: string | null;
  distribution: Distribution | null;
  profiles: ProfileInfo[];
  /**
   * Machine names of install profiles marked `hidden` (Drupal's installer lists them only when
   * named, as Pantheon's Drupal 7 does with standard and minimal): a site can be installed with
   * one by naming it, never by default. Absent in registries written before it was recorded.
   */
  hiddenProfiles?: string[];
  modules: Extension[];
  /** Themes and theme engines. */
  themes: Extension[];
  /** Directories under sites/ holding a settings.php (WordPress: wp-config.php), except default, all and symlinks. */
  sites: string[];
  composer: ComposerInfo | null;
  /** Files that could not be used; never fatal. */
  problems: Problem[];
}

/** What the cache keeps for one file. */
export type CachedParse =
  | { kind: 'info'; result: InfoParseResult }
  | { kind: 'schema'; module: string; schema: number | null }
  | { kind: 'extract'; pattern: string; value: string | null }
  | { kind: 'json'; result: { ok: true; value: unknown } | { ok: false; error: string } };

/** One cached file, valid while mtime and size are unchanged. */
export interface ScanCacheEntry {
  mtimeMs: number;
  size: number;
  parsed: CachedParse;
}

/** Parse cache keyed by absolute file path. */
export type ScanCache = Map<string, ScanCacheEntry>;

/** Options for scanPlatform. */
export interface ScanOptions {
  /** Cache returned by an earlier scan; only files whose mtime or size changed are re-parsed. */
  previous?: ReadonlyMap<string, ScanCacheEntry>;
}

/** A registry plus the cache to hand to the next scan. */
export interface ScanResult {
  registry: Registry;
  /** Entries for exactly the files read by this scan. */
  cache: ScanCache;
}

const NAME_RE = /^[A-Za-z_\u007f-\uffff][A-Za-z0-9_\u007f-\uffff]*$/;
/** Directories Drupal 8+ extension discovery never descends into (RecursiveExtensionFilterIterator). */
const D8_SKIP = new Set([
  'src',
  'lib',
  'vendor',
  'assets',
  'css',
  'files',
  'images',
  'js',
  'misc',
  'templates',
  'includes',
  'fixtures',
  'Drupal',
  'node_modules',
  'bower_components',
]);
/** Directories skipped when looking for Drupal 6/7 extensions. */
const D7_SKIP = new Set(['CVS', 'node_modules', 'bower_components']);
const CORE_PROFILES: Record<'drupal6' | 'drupal7', Set<string>> = {
  drupal6: new Set(['default']),
  drupal7: new Set(['standard', 'minimal', 'testing']),
};
const WALK_CONCURRENCY = 16;

interface Root {
  rel: string;
  site: string | null;
  /** D6/D7 only: what this root holds. */
  holds: 'modules' | 'themes' | 'any';
}

interface ProfileRecord extends ProfileInfo {
  isCore: boolean;
  distributionName: string | null;
  exclusive: boolean;
}

class Scanner {
  readonly root: string;
  readonly problems: Problem[] = [];
  readonly cache: ScanCache = new Map();
  private readonly previous: ReadonlyMap<string, ScanCacheEntry> | undefined;
  private readonly walkedReal = new Set<string>();

  constructor(root: string, previous?: ReadonlyMap<string, ScanCacheEntry>) {
    this.root = root;
    this.previous = previous;
  }

  abs(rel: string): string {
    return join(this.root, rel);
  }

  async statFile(rel: string): Promise<{ mtimeMs: number; size: number } | null> {
    try {
      const s = await stat(this.abs(rel));
      return s.isFile() ? { mtimeMs: s.mtimeMs, size: s.size } : null;
    } catch {
      return null;
    }
  }

  async isDir(rel: string): Promise<boolean> {
    try {
      return (await stat(this.abs(rel))).isDirectory();
    } catch {
      return false;
    }
  }

  /**
   * Reads `rel` and computes `parse(text)`, unless the previous cache holds an entry with the same
   * mtime and size that `matches`. Returns undefined when the file is missing or unreadable.
   */
  async cached(rel: string, matches: (p: CachedParse) => boolean, parse: (text: string) => CachedParse): Promise<CachedParse | undefined> {
    const key = this.abs(rel);
    const st = await this.statFile(rel);
    if (!st) return undefined;
    const prev = this.previous?.get(key);
    if (prev && prev.mtimeMs === st.mtimeMs && prev.size === st.size && matches(prev.parsed)) {
      this.cache.set(key, prev);
      return prev.parsed;
    }
    let text: string;
    try {
      text = await readFile(key, 'utf8');
    } catch (e) {
      this.problems.push({ path: rel, error: `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}` });
      return undefined;
    }
    const parsed = parse(text);
    this.cache.set(key, { mtimeMs: st.mtimeMs, size: st.size, parsed });
    return parsed;
  }

  async info(rel: string): Promise<InfoParseResult | undefined> {
    const yaml = rel.endsWith('.yml');
    const p = await this.cached(
      rel,
      (c) => c.kind === 'info',
      (text) => ({ kind: 'info', result: yaml ? parseInfoYaml(text) : parseInfoIni(text) }),
    );
    return p?.kind === 'info' ? p.result : undefined;
  }

  async schema(rel: string, module: string): Promise<number | null> {
    const p = await this.cached(
      rel,
      (c) => c.kind === 'schema' && c.module === module,
      (text) => ({ kind: 'schema', module, schema: highestUpdate(text, module) }),
    );
    return p?.kind === 'schema' ? p.schema : null;
  }

  detectIO(): DetectIO {
    return {
      exists: async (rel) => (await this.statFile(rel)) !== null,
      extract: async (rel, pattern) => {
        const p = await this.cached(
          rel,
          (c) => c.kind === 'extract' && c.pattern === pattern.source,
          (text) => ({ kind: 'extract', pattern: pattern.source, value: captureFirst(text, pattern) }),
        );
        return p?.kind === 'extract' ? p.value : undefined;
      },
    };
  }

  async listDir(rel: string): Promise<Dirent[]> {
    try {
      return await readdir(this.abs(rel), { withFileTypes: true });
    } catch {
      return [];
    }
  }

  /** Subdirectory names of `rel` (real directories, or symlinks to directories when `followLinks`). */
  async subdirs(rel: string, followLinks: boolean): Promise<string[]> {
    const out: string[] = [];
    for (const d of await this.listDir(rel)) {
      if (d.name.startsWith('.')) continue;
      if (d.isDirectory() || (followLinks && d.isSymbolicLink() && (await this.isDir(posix.join(rel, d.name))))) {
        out.push(d.name);
      }
    }
    return out.sort();
  }

  /**
   * Walks `rel` recursively, skipping dot directories and `skip` names, following symlinked
   * directories once each. Returns wanted file names grouped by directory (relative paths).
   */
  async walk(rel: string, skip: ReadonlySet<string>, want: (name: string) => boolean): Promise<Map<string, Set<string>>> {
    const found = new Map<string, Set<string>>();
    if (!(await this.isDir(rel))) return found;
    try {
      const real = await realpath(this.abs(rel));
      if (this.walkedReal.has(real)) return found;
      this.walkedReal.add(real);
    } catch {
      return found;
    }
    const queue: string[] = [rel];
    const visit = async (dir: string): Promise<void> => {
      for (const d of await this.listDir(dir)) {
        const name = d.name;
        const child = posix.join(dir, name);
        let isDir = d.isDirectory();
        let isFile = d.isFile();
        if (d.isSymbolicLink()) {
          try {
            const st = await stat(this.abs(child));
            isDir = st.isDirectory();
            isFile = st.isFile();
            if (isDir && !name.startsWith('.') && !skip.has(name)) {
              // Follow a symlinked directory once, and never into one of its own ancestors.
              const real = await realpath(this.abs(child));
              const parentReal = await realpath(this.abs(dir));
              if (this.walkedReal.has(real) || parentReal === real || parentReal.startsWith(real + '/')) continue;
              this.walkedReal.add(real);
            }
          } catch {
            continue;
          }
        }
        if (isDir) {
          if (!name.startsWith('.') && !skip.has(name)) queue.push(child);
        } else if (isFile && want(name)) {
          let set = found.get(dir);
          if (!set) found.set(dir, (set = new Set()));
          set.add(name);
        }
      }
    };
    await new Promise<void>((done) => {
      let active = 0;
      const pump = (): void => {
        while (active < WALK_CONCURRENCY && queue.length > 0) {
          const dir = queue.pop() as string;
          active++;
          void visit(dir)
            .catch(() => undefined)
            .then(() => {
              active--;
              if (active === 0 && queue.length === 0) done();
              else pump();
            });
        }
      };
      pump();
    });
    return found;
  }
}

/** Highest N among `function <module>_update_N(` definitions at the start of a line, or null. */
export function highestUpdate(text: string, module: string): number | null {
  const escaped = module.replace(/[^A-Za-z0-9_]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const re = new RegExp(`^[ \\t]*function\\s+${escaped}_update_(\\d+)\\s*\\(`, 'gmi');
  let best: number | null = null;
  for (const m of text.matchAll(re)) {
    const n = Number(m[1]);
    if (Number.isSafeInteger(n) && (best === null || n > best)) best = n;
  }
  return best;
}

function resolveVersion(v: string | null, coreVersion: string | null): string | null {
  return v === 'VERSION' ? coreVersion : v;
}

async function buildExtension(
  s: Scanner,
  info: InfoObject,
  infoRel: string,
  name: string,
  type: ExtensionType,
  site: string | null,
  coreVersion: string | null,
  installFile: string | null,
): Promise<Extension> {
  const humanName = infoString(info, 'name');
  if (humanName === null) s.problems.push({ path: infoRel, error: 'missing "name"' });
  return {
    name,
    humanName: humanName ?? name,
    version: resolveVersion(infoString(info, 'version'), coreVersion),
    project: infoString(info, 'project'),
    package: infoString(info, 'package'),
    schemaVersion: installFile ? await s.schema(installFile, name) : null,
    path: posix.dirname(infoRel),
    type,
    site,
  };
}

function objectAt(info: InfoObject, key: string): InfoObject | null {
  const v = Object.prototype.hasOwnProperty.call(info, key) ? info[key] : undefined;
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : null;
}

function distributionNameOf(info: InfoObject): string | null {
  return infoString(info, 'distribution_name') ?? (objectAt(info, 'distribution') ? infoString(objectAt(info, 'distribution')!, 'name') : null);
}

async function loadInfo(s: Scanner, rel: string): Promise<InfoObject | null> {
  const r = await s.info(rel);
  if (!r) return null;
  if (!r.ok) {
    s.problems.push({ path: rel, error: r.error });
    return null;
  }
  return r.data;
}

/**
 * Sites dirs (not symlinks, not default/all) that hold a settings file: `settings.php` (Drupal),
 * `wp-config.php` (WordPress: Spoke's per-site config, loaded by its dispatcher).
 */
async function findSites(s: Scanner, file = 'settings.php'): Promise<string[]> {
  const out: string[] = [];
  for (const d of await s.listDir('sites')) {
    if (!d.isDirectory() || d.name.startsWith('.') || d.name === 'default' || d.name === 'all') continue;
    if (await s.statFile(`sites/${d.name}/${file}`)) out.push(d.name);
  }
  return out.sort();
}

/** Every real (non-symlink) sites/<dir> except all, for site-specific extensions. */
async function siteDirs(s: Scanner): Promise<string[]> {
  const out: string[] = [];
  for (const d of await s.listDir('sites')) {
    if (d.isDirectory() && !d.name.startsWith('.') && d.name !== 'all') out.push(d.name);
  }
  return out.sort();
}

async function scanD67(
  s: Scanner,
  kind: 'drupal6' | 'drupal7',
  coreVersion: string | null,
): Promise<{ modules: Extension[]; themes: Extension[]; profiles: ProfileRecord[]; hidden: string[] }> {
  const profiles: ProfileRecord[] = [];
  const hidden: string[] = [];
  const roots: Root[] = [
    { rel: 'modules', site: null, holds: 'modules' },
    { rel: 'themes', site: null, holds: 'themes' },
  ];
  for (const p of await s.subdirs('profiles', true)) {
    const dir = `profiles/${p}`;
    roots.push({ rel: `${dir}/modules`, site: null, holds: 'modules' }, { rel: `${dir}/themes`, site: null, holds: 'themes' });
    if (!NAME_RE.test(p)) continue;
    if (kind === 'drupal6') {
      const rel = `${dir}/${p}.profile`;
      const p6 = await s.cached(
        rel,
        (c) => c.kind === 'extract' && c.pattern === D6_PROFILE_NAME.source,
        (text) => ({ kind: 'extract', pattern: D6_PROFILE_NAME.source, value: captureFirst(text, D6_PROFILE_NAME) }),
      );
      if (!p6) continue;
      const human = p6.kind === 'extract' ? p6.value : null;
      profiles.push({
        name: p,
        humanName: human ?? p,
        version: null,
        hidden: false,
        path: dir,
        isCore: CORE_PROFILES.drupal6.has(p),
        distributionName: null,
        exclusive: false,
      });
    } else {
      const rel = `${dir}/${p}.info`;
      if (!(await s.statFile(rel))) continue;
      const info = await loadInfo(s, rel);
      if (info && phpTruthy(info.hidden)) hidden.push(p);
      if (!info || phpTruthy(info.hidden)) continue;
      profiles.push({
        name: p,
        humanName: infoString(info, 'name') ?? p,
        version: resolveVersion(infoString(info, 'version'), coreVersion),
        hidden: false,
        path: dir,
        isCore: CORE_PROFILES.drupal7.has(p),
        distributionName: distributionNameOf(info),
        exclusive: phpTruthy(info.exclusive),
      });
    }
  }
  roots.push({ rel: 'sites/all/modules', site: null, holds: 'modules' }, { rel: 'sites/all/themes', site: null, holds: 'themes' });
  for (const site of await siteDirs(s)) {
    roots.push({ rel: `sites/${site}/modules`, site, holds: 'modules' }, { rel: `sites/${site}/themes`, site, holds: 'themes' });
  }

  const want = (n: string): boolean => /\.(info|module|install|engine)$/.test(n);
  const walks = await Promise.all(roots.map((r) => s.walk(r.rel, D7_SKIP, want)));
  const modules: Extension[] = [];
  const themes: Extension[] = [];
  const jobs: Array<Promise<void>> = [];
  roots.forEach((root, i) => {
    for (const [dir, files] of walks[i] ?? []) {
      for (const file of files) {
        const dot = file.lastIndexOf('.');
        const name = file.slice(0, dot);
        const ext = file.slice(dot + 1);
        if (!NAME_RE.test(name)) continue;
        const infoRel = `${dir}/${name}.info`;
        if (root.holds === 'modules' && ext === 'module' && files.has(`${name}.info`)) {
          jobs.push(
            (async () => {
              const info = await loadInfo(s, infoRel);
              if (!info || phpTruthy(info.hidden)) return;
              const install = files.has(`${name}.install`) ? `${dir}/${name}.install` : null;
              modules.push(await buildExtension(s, info, infoRel, name, 'module', root.site, coreVersion, install));
            })(),
          );
        } else if (root.holds === 'themes' && ext === 'info') {
          jobs.push(
            (async () => {
              const info = await loadInfo(s, infoRel);
              if (!info || phpTruthy(info.hidden)) return;
              themes.push(await buildExtension(s, info, infoRel, name, 'theme', root.site, coreVersion, null));
            })(),
          );
        } else if (root.holds === 'themes' && ext === 'engine') {
          // Engines have no info file; the ones shipped in core's themes/engines carry the core version.
          themes.push({
            name,
            humanName: name,
            version: dir.startsWith('themes/engines/') ? coreVersion : null,
            project: dir.startsWith('themes/engines/') ? 'drupal' : null,
            package: null,
            schemaVersion: null,
            path: dir,
            type: 'theme_engine',
            site: root.site,
          });
        }
      }
    }
  });
  await Promise.all(jobs);
  return { modules, themes, profiles, hidden };
}

/** `'name' => 'Drupal'` (or st('…')) inside a Drupal 6 *_profile_details() function. */
const D6_PROFILE_NAME = /_profile_details\s*\(\s*\)\s*\{[\s\S]{0,2000}?['"]name['"]\s*=>\s*(?:st\(\s*)?['"]([^'"]+)['"]/;

async function scanD8(
  s: Scanner,
  coreVersion: string | null,
): Promise<{ modules: Extension[]; themes: Extension[]; profiles: ProfileRecord[]; hidden: string[] }> {
  const roots: Root[] = [
    { rel: 'core/modules', site: null, holds: 'any' },
    { rel: 'core/themes', site: null, holds: 'any' },
    { rel: 'core/profiles', site: null, holds: 'any' },
    { rel: 'modules', site: null, holds: 'any' },
    { rel: 'themes', site: null, holds: 'any' },
    { rel: 'profiles', site: null, holds: 'any' },
    { rel: 'sites/all/modules', site: null, holds: 'any' },
    { rel: 'sites/all/themes', site: null, holds: 'any' },
  ];
  for (const site of await siteDirs(s)) {
    roots.push({ rel: `sites/${site}/modules`, site, holds: 'any' }, { rel: `sites/${site}/themes`, site, holds: 'any' });
  }
  const want = (n: string): boolean => n.endsWith('.info.yml') || n.endsWith('.install');
  const walks = await Promise.all(roots.map((r) => s.walk(r.rel, D8_SKIP, want)));
  const hidden: string[] = [];
  const modules: Extension[] = [];
  const themes: Extension[] = [];
  const profiles: ProfileRecord[] = [];
  const jobs: Array<Promise<void>> = [];
  roots.forEach((root, i) => {
    for (const [dir, files] of walks[i] ?? []) {
      for (const file of files) {
        if (!file.endsWith('.info.yml')) continue;
        const name = file.slice(0, -'.info.yml'.length);
        if (!NAME_RE.test(name)) continue;
        const infoRel = `${dir}/${file}`;
        jobs.push(
          (async () => {
            const info = await loadInfo(s, infoRel);
            if (info && phpTruthy(info.hidden) && infoString(info, 'type') === 'profile' && root.site === null) hidden.push(name);
            if (!info || phpTruthy(info.hidden)) return;
            const type = infoString(info, 'type');
            if (type === 'module') {
              const install = files.has(`${name}.install`) ? `${dir}/${name}.install` : null;
              modules.push(await buildExtension(s, info, infoRel, name, 'module', root.site, coreVersion, install));
            } else if (type === 'theme' || type === 'theme_engine') {
              themes.push(await buildExtension(s, info, infoRel, name, type, root.site, coreVersion, null));
            } else if (type === 'profile' && root.site === null) {
              const dist = objectAt(info, 'distribution');
              profiles.push({
                name,
                humanName: infoString(info, 'name') ?? name,
                version: resolveVersion(infoString(info, 'version'), coreVersion),
                hidden: false,
                path: dir,
                isCore: dir.startsWith('core/'),
                distributionName: dist ? infoString(dist, 'name') : null,
                exclusive: dist !== null,
              });
            }
            // Files without a type are skipped silently, as Drupal's ExtensionDiscovery does.
          })(),
        );
      }
    }
  });
  await Promise.all(jobs);
  return { modules, themes, profiles, hidden };
}

function pickDistribution(profiles: ProfileRecord[]): Distribution | null {
  const candidates = profiles
    .filter((p) => !p.isCore)
    .sort(
      (a, b) =>
        Number(b.distributionName !== null) - Number(a.distributionName !== null) ||
        Number(b.exclusive) - Number(a.exclusive) ||
        (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    );
  const p = candidates[0];
  if (!p) return null;
  return { name: p.distributionName ?? p.humanName, version: p.version, profile: p.name };
}

async function readComposer(s: Scanner): Promise<ComposerInfo | null> {
  const p = await s.cached(
    'composer.json',
    (c) => c.kind === 'json',
    (text) => {
      try {
        return { kind: 'json', result: { ok: true, value: JSON.parse(text) as unknown } };
      } catch (e) {
        return { kind: 'json', result: { ok: false, error: `invalid JSON: ${e instanceof Error ? e.message : String(e)}` } };
      }
    },
  );
  if (!p || p.kind !== 'json') return null;
  if (!p.result.ok) {
    s.problems.push({ path: 'composer.json', error: p.result.error });
    return null;
  }
  const v = p.result.value;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    s.problems.push({ path: 'composer.json', error: 'top level is not an object' });
    return null;
  }
  const o = v as Record<string, unknown>;
  const str = (k: string): string | null => (typeof o[k] === 'string' && (o[k] as string).trim() !== '' ? (o[k] as string) : null);
  return { name: str('name'), version: str('version'), description: str('description') };
}

/** WordPress plugins/themes, MediaWiki extensions/skins (addons.ts) as registry extensions. */
async function scanAddonsOf(
  s: Scanner,
  kind: PlatformKind,
): Promise<{ modules: Extension[]; themes: Extension[]; profiles: ProfileRecord[]; hidden: string[] }> {
  const r = await scanAddons(kind, {
    subdirs: (rel) => s.subdirs(rel, true),
    files: async (rel) =>
      (await s.listDir(rel))
        .filter((d) => d.isFile())
        .map((d) => d.name)
        .sort(),
    head: async (rel, limit) => {
      try {
        const fh = await open(s.abs(rel), 'r');
        try {
          const buf = Buffer.alloc(limit ?? (await fh.stat()).size);
          const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
          return buf.subarray(0, bytesRead).toString('utf8');
        } finally {
          await fh.close();
        }
      } catch {
        return undefined;
      }
    },
  });
  s.problems.push(...r.problems);
  const ext = (a: Addon): Extension => ({
    name: a.name,
    humanName: a.humanName,
    version: a.version,
    project: null,
    package: null,
    schemaVersion: null,
    path: a.path,
    type: a.type,
    site: null,
  });
  return { modules: r.modules.map(ext), themes: r.themes.map(ext), profiles: [], hidden: [] };
}

function byNameThenPath(a: { name: string; path: string }, b: { name: string; path: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/**
 * Scans the platform tree at `dir` and returns its registry together with the parse cache to
 * pass as `previous` next time. Broken files are listed in `problems`; only a missing or
 * non-directory `dir` throws (INVALID_ARGUMENT).
 */
export async function scanPlatformCached(dir: string, options: ScanOptions = {}): Promise<ScanResult> {
  const root = resolve(dir);
  let isDir: boolean;
  try {
    isDir = (await stat(root)).isDirectory();
  } catch {
    throw fail('INVALID_ARGUMENT', `platform directory not found: ${root}`);
  }
  if (!isDir) throw fail('INVALID_ARGUMENT', `platform path is not a directory: ${root}`);
  const s = new Scanner(root, options.previous);
  const detection = await detectPlatform(root, s.detectIO());
  s.problems.push(...detection.problems);
  const { kind, coreVersion } = detection;

  let found: { modules: Extension[]; themes: Extension[]; profiles: ProfileRecord[]; hidden: string[] } = { modules: [], themes: [], profiles: [], hidden: [] };
  if (kind === 'drupal6' || kind === 'drupal7') found = await scanD67(s, kind, coreVersion);
  else if (kind === 'drupal8') found = await scanD8(s, coreVersion);
  else if (kind === 'wordpress' || kind === 'mediawiki') found = await scanAddonsOf(s, kind);
  const isDrupal = kind === 'drupal6' || kind === 'drupal7' || kind === 'drupal8';

  const profiles = found.profiles.sort(byNameThenPath);
  const registry: Registry = {
    kind,
    coreVersion,
    distribution: pickDistribution(profiles),
    profiles: profiles.map(({ name, humanName, version, path }) => ({ name, humanName, version, hidden: false as const, path })),
    hiddenProfiles: [...new Set(found.hidden)].sort(),
    modules: found.modules.sort(byNameThenPath),
    themes: found.themes.sort(byNameThenPath),
    sites: isDrupal ? await findSites(s) : kind === 'wordpress' ? await findSites(s, 'wp-config.php') : [],
    composer: await readComposer(s),
    problems: s.problems.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
  };
  return { registry, cache: s.cache };
}

/**
 * Scans the platform tree at `dir` and returns its registry. `previous` (from scanPlatformCached)
 * only speeds the scan up; use scanPlatformCached to get the new cache back.
 */
export async function scanPlatform(dir: string, options: ScanOptions = {}): Promise<Registry> {
  return (await scanPlatformCached(dir, options)).registry;
}
