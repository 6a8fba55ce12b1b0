/**
 * Drush make files, INI (`.make`) and YAML (`.make.yml`), read into one normalised model, following
 * drush 8's make.utilities.inc and docs/make.md: shorthand projects (`projects[] = views`,
 * `projects[views] = 3.0`), `download` shorthand (a string is the URL; a download without a type is
 * git), `defaults` overlaid under every project/library, `includes` (later includes override earlier
 * ones, the including file overrides all) and `overrides` (override the including file), and
 * entries removed with `FALSE` / `~`. Parsing never touches the network: remote includes and
 * non-git/file/copy downloads are reported, not fetched.
 */
import { readFile, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fail } from '@spoke/shared';
import { parseInfoTree, parseYamlTree, phpToPlain, type InfoObject, type PhpArray, type PhpValue } from './info.js';

/** What a make project is. */
export type MakeProjectType = 'module' | 'theme' | 'profile' | 'core' | 'library';

/** A git checkout. `url` null means drupal.org's repository for the project. */
export interface GitDownload {
  type: 'git';
  url: string | null;
  branch: string | null;
  tag: string | null;
  revision: string | null;
  refspec: string | null;
  working_copy: boolean;
}

/** A direct download of an archive or file (drush `file`, formerly `get`). */
export interface FileDownload {
  type: 'file';
  url: string;
  md5: string | null;
  sha1: string | null;
  sha256: string | null;
  sha512: string | null;
  subtree: string | null;
  filename: string | null;
}

/** A copy of a local directory (absolute, or relative to the makefile). */
export interface CopyDownload {
  type: 'copy';
  url: string;
}

/** A download method Spoke does not implement (svn, bzr, hg, …); the caller should refuse it. */
export interface UnsupportedDownload {
  type: 'unsupported';
  method: string;
  url: string | null;
}

/** Where a project or library comes from, when not from drupal.org's release service. */
export type MakeDownload = GitDownload | FileDownload | CopyDownload | UnsupportedDownload;

/** One patch to apply. */
export interface MakePatch {
  url: string;
  md5: string | null;
}

/** One project of a makefile. */
export interface MakeProject {
  name: string;
  /** Null when the makefile does not say (drupal.org knows); `drupal` defaults to core. */
  type: MakeProjectType | null;
  /** Version to fetch from drupal.org (`7.x-1.0`, `3.0`, `1.x`), null for latest or when downloaded elsewhere. */
  version: string | null;
  subdir: string | null;
  directory_name: string | null;
  /** Where modules/themes/libraries go instead of the build's default (`sites/all` or the root). */
  contrib_destination: string | null;
  download: MakeDownload | null;
  /** Patch URLs, in order. */
  patch: string[];
  /** The same patches with their md5 checksums when given. */
  patches: MakePatch[];
  /** Alternative update XML server. */
  location: string | null;
  overwrite: boolean;
  /** False when the project's own makefile must not be followed (`do_recursion = 0`). */
  do_recursion: boolean;
}

/** One library of a makefile. */
export interface MakeLibrary {
  name: string;
  type: 'library';
  /** Target path relative to the contrib destination; drush's default is `libraries`. */
  destination: string;
  subdir: string | null;
  directory_name: string | null;
  /** Replaces the build's default contrib destination for this library. */
  contrib_destination: string | null;
  /** Null when no makefile defines one (the build cannot fetch this library). */
  download: MakeDownload | null;
  patch: string[];
  patches: MakePatch[];
  overwrite: boolean;
}

/** A makefile, normalised. */
export interface Makefile {
  /** Name or path the makefile was read from (for messages). */
  source: string;
  /** Core major as `N.x` (`7.x`), or null when the makefile has no core line. */
  core: string | null;
  /** The exact core release when `core` named one (`7.44`). */
  core_release: string | null;
  /** Make API version (2), or null when absent. */
  api: number | null;
  projects: MakeProject[];
  libraries: MakeLibrary[];
  /**
   * parseMakefile: the include entries as written (not followed). loadMakefile: absolute paths
   * of every file included or used as override, in load order.
   */
  includes: string[];
  /** The `defaults` block as written (already applied to projects and libraries). */
  defaults: InfoObject;
  /** `translations[]` language codes. */
  translations: string[];
}

/** Options for parseMakefile. */
export interface ParseMakefileOptions {
  format: 'ini' | 'yaml';
  /** Name used in error messages and as `source`. */
  name?: string;
}

const PROJECT_TYPES: ReadonlySet<string> = new Set(['module', 'theme', 'profile', 'core', 'library']);

function invalid(source: string, message: string): Error {
  return fail('CONFIG_INVALID', `${source}: ${message}`, { makefile: source });
}

function isMap(v: PhpValue | undefined): v is PhpArray {
  return v instanceof Map;
}

/** PHP truthiness of a raw value. */
function truthy(v: PhpValue | undefined): boolean {
  if (v === undefined || v === null || v === false) return false;
  if (typeof v === 'string') return v !== '' && v !== '0';
  if (v instanceof Map) return v.size > 0;
  return true;
}

function str(m: PhpArray, key: string): string | null {
  const v = m.get(key);
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

/** A drush make_safe_path(), stricter: no absolute paths and no `..` segment at all. */
function checkSafePath(source: string, what: string, value: string | null): void {
  if (value === null) return;
  if (value.startsWith('/') || value.split(/[\\/]/).includes('..')) {
    throw invalid(source, `illegal path "${value}" for ${what}`);
  }
}

/** PHP array_replace_recursive(base, over) on ordered trees. */
function replaceRecursive(base: PhpArray, over: PhpArray): PhpArray {
  const out: PhpArray = new Map(base);
  for (const [k, v] of over) {
    const cur = out.get(k);
    out.set(k, isMap(cur) && isMap(v) ? replaceRecursive(cur, v) : v);
  }
  return out;
}

/** Parses text into a raw tree (top-level map), throwing CONFIG_INVALID on syntax errors. */
function parseRaw(text: string, format: 'ini' | 'yaml', source: string): PhpArray {
  if (format === 'yaml') {
    const r = parseYamlTree(text);
    if (!r.ok) throw invalid(source, r.error);
    if (r.tree === null) return new Map();
    if (!r.mapping || !isMap(r.tree)) throw invalid(source, 'top level is not a mapping');
    return r.tree;
  }
  return parseInfoTree(text);
}

/**
 * Expands `projects[] = name` (list entries) to `projects[name] = {}` within one file, as drush's
 * make_normalize_info() does before merging includes, refusing a project declared twice.
 */
function expandShorthand(tree: PhpArray, source: string): PhpArray {
  const projects = tree.get('projects');
  if (projects === undefined || projects === null) return tree;
  if (!isMap(projects)) throw invalid(source, '"projects" must be a list or mapping');
  const out: PhpArray = new Map();
  for (const [key, value] of projects) {
    if (/^\d+$/.test(key) && typeof value === 'string') {
      const name = value.trim();
      if (out.has(name) || projects.has(name)) throw invalid(source, `project ${name} defined twice (remove the first projects[] = ${name})`);
      out.set(name, new Map());
    } else {
      out.set(key, value);
    }
  }
  const copy = new Map(tree);
  copy.set('projects', out);
  return copy;
}

function parseDownload(source: string, owner: string, raw: PhpValue | undefined, revision: string | null): MakeDownload | null {
  let m: PhpArray;
  if (typeof raw === 'string' && raw.trim() !== '') m = new Map([['url', raw.trim()]]);
  else if (isMap(raw) && raw.size > 0) m = raw;
  else if (revision !== null) m = new Map();
  else return null;
  if (revision !== null && !m.has('revision')) m = new Map([...m, ['revision', revision]]);
  const type = (str(m, 'type') ?? 'git').toLowerCase();
  const url = str(m, 'url');
  switch (type) {
    case 'git':
      return {
        type: 'git',
        url,
        branch: str(m, 'branch'),
        tag: str(m, 'tag'),
        revision: str(m, 'revision'),
        refspec: str(m, 'refspec'),
        working_copy: truthy(m.get('working-copy')) || truthy(m.get('working_copy')),
      };
    case 'file':
    case 'get':
      if (url === null) throw invalid(source, `${owner}: download of type ${type} needs a url`);
      return {
        type: 'file',
        url,
        md5: str(m, 'md5'),
        sha1: str(m, 'sha1'),
        sha256: str(m, 'sha256'),
        sha512: str(m, 'sha512'),
        subtree: str(m, 'subtree'),
        filename: str(m, 'filename'),
      };
    case 'copy':
      if (url === null) throw invalid(source, `${owner}: download of type copy needs a url`);
      return { type: 'copy', url };
    case 'pm':
      return null;
    default:
      return { type: 'unsupported', method: type, url };
  }
}

function parsePatches(source: string, owner: string, raw: PhpValue | undefined): MakePatch[] {
  if (raw === undefined || raw === null || raw === false) return [];
  if (typeof raw === 'string') return raw.trim() === '' ? [] : [{ url: raw.trim(), md5: null }];
  if (!isMap(raw)) throw invalid(source, `${owner}: "patch" must be a list of URLs`);
  const out: MakePatch[] = [];
  for (const [key, p] of raw) {
    if (typeof p === 'string' && p.trim() !== '') out.push({ url: p.trim(), md5: null });
    else if (isMap(p)) {
      const url = str(p, 'url');
      if (url === null) throw invalid(source, `${owner}: patch ${key} has no url`);
      out.push({ url, md5: str(p, 'md5') });
    } else if (p !== null && p !== false) throw invalid(source, `${owner}: patch ${key} is not a URL`);
  }
  return out;
}

function versionOf(m: PhpArray): string | null {
  return str(m, 'version');
}

/**
 * Turns one merged raw tree into the model: validates core/api, drops removed entries, converts
 * shorthands, applies defaults, checks paths.
 */
function normalise(tree: PhpArray, source: string, includes: string[]): Makefile {
  let core: string | null = null;
  let coreRelease: string | null = null;
  const rawCore = tree.get('core');
  if (rawCore !== undefined && rawCore !== null && rawCore !== '') {
    const m = typeof rawCore === 'string' ? /^(\d+)(\.(x|(\d+)(-[a-z0-9]+)?))?$/.exec(rawCore.trim()) : null;
    if (!m) throw invalid(source, `the 'core' attribute ${String(rawCore)} has an incorrect format`);
    core = `${m[1]}.x`;
    if (m[4] !== undefined) coreRelease = rawCore.toString().trim();
  }
  let api: number | null = null;
  const rawApi = tree.get('api');
  if (rawApi !== undefined && rawApi !== null) {
    if (rawApi !== '2') throw invalid(source, `api ${String(rawApi)} is not supported (only api = 2)`);
    api = 2;
  }

  const defaultsRaw = tree.get('defaults');
  const defaults: PhpArray = isMap(defaultsRaw) ? defaultsRaw : new Map();
  const withDefaults = (type: 'projects' | 'libraries', item: PhpArray): PhpArray => {
    const d = defaults.get(type);
    return isMap(d) ? replaceRecursive(d, item) : item;
  };

  const projects: MakeProject[] = [];
  const rawProjects = tree.get('projects');
  if (rawProjects !== undefined && rawProjects !== null) {
    if (!isMap(rawProjects)) throw invalid(source, '"projects" must be a list or mapping');
    for (const [key, value] of rawProjects) {
      if (value === null || value === false || value === '') continue; // removed (projects[x] = FALSE / x: ~)
      let item: PhpArray;
      let name = key;
      if (typeof value === 'string') {
        if (/^\d+$/.test(key)) {
          name = value.trim();
          item = new Map();
        } else item = new Map([['version', value]]);
      } else if (isMap(value)) item = value;
      else throw invalid(source, `project ${key} incorrectly specified`);
      if (projects.some((p) => p.name === name)) throw invalid(source, `project ${name} defined twice`);
      // Download shorthand before defaults, as drush does.
      const dl = item.get('download');
      if (typeof dl === 'string') item = new Map([...item, ['download', new Map([['url', dl]])]]);
      item = withDefaults('projects', item);
      const owner = `project ${name}`;
      const typeRaw = str(item, 'type');
      if (typeRaw !== null && !PROJECT_TYPES.has(typeRaw)) throw invalid(source, `${owner}: unknown type "${typeRaw}"`);
      const subdir = str(item, 'subdir');
      const directoryName = str(item, 'directory_name');
      checkSafePath(source, `subdir of ${owner}`, subdir);
      checkSafePath(source, `directory_name of ${owner}`, directoryName);
      checkSafePath(source, `contrib_destination of ${owner}`, str(item, 'contrib_destination'));
      const patches = parsePatches(source, owner, item.get('patch'));
      const recursion = item.get('do_recursion');
      projects.push({
        name,
        type: (typeRaw as MakeProjectType | null) ?? (name === 'drupal' ? 'core' : null),
        version: versionOf(item),
        subdir,
        directory_name: directoryName,
        contrib_destination: str(item, 'contrib_destination'),
        download: parseDownload(source, owner, item.get('download'), str(item, 'revision')),
        patch: patches.map((p) => p.url),
        patches,
        location: str(item, 'location'),
        overwrite: truthy(item.get('overwrite')),
        do_recursion: recursion === undefined || recursion === null ? true : truthy(recursion),
      });
    }
  }

  const libraries: MakeLibrary[] = [];
  const rawLibraries = tree.get('libraries');
  if (rawLibraries !== undefined && rawLibraries !== null) {
    if (!isMap(rawLibraries)) throw invalid(source, '"libraries" must be a mapping');
    for (const [name, value] of rawLibraries) {
      if (value === null || value === false || value === '') continue;
      if (!isMap(value)) throw invalid(source, `library ${name} incorrectly specified`);
      let item = value;
      const dl = item.get('download');
      if (typeof dl === 'string') item = new Map([...item, ['download', new Map([['url', dl]])]]);
      item = withDefaults('libraries', item);
      const owner = `library ${name}`;
      const destination = str(item, 'destination') ?? 'libraries';
      const subdir = str(item, 'subdir');
      const directoryName = str(item, 'directory_name');
      checkSafePath(source, `destination of ${owner}`, destination);
      checkSafePath(source, `subdir of ${owner}`, subdir);
      checkSafePath(source, `directory_name of ${owner}`, directoryName);
      checkSafePath(source, `contrib_destination of ${owner}`, str(item, 'contrib_destination'));
      const patches = parsePatches(source, owner, item.get('patch'));
      libraries.push({
        name,
        type: 'library',
        destination,
        subdir,
        directory_name: directoryName,
        contrib_destination: str(item, 'contrib_destination'),
        download: parseDownload(source, owner, item.get('download'), null),
        patch: patches.map((p) => p.url),
        patches,
        overwrite: truthy(item.get('overwrite')),
      });
    }
  }

  const translationsRaw = tree.get('translations');
  const translations = isMap(translationsRaw)
    ? [...translationsRaw.values()].filter((v): v is string => typeof v === 'string' && v.trim() !== '').map((v) => v.trim())
    : typeof translationsRaw === 'string' && translationsRaw.trim() !== ''
      ? [translationsRaw.trim()]
      : [];
  const defaultsPlain = phpToPlain(defaults);
  return {
    source,
    core,
    core_release: coreRelease,
    api,
    projects,
    libraries,
    includes,
    defaults: Array.isArray(defaultsPlain) || defaultsPlain === null || typeof defaultsPlain !== 'object' ? {} : defaultsPlain,
    translations,
  };
}

function includeEntries(tree: PhpArray, key: 'includes' | 'overrides', source: string): PhpValue[] {
  const raw = tree.get(key);
  if (raw === undefined || raw === null || raw === false || raw === '') return [];
  if (typeof raw === 'string') return [raw];
  if (!isMap(raw)) throw invalid(source, `"${key}" must be a list`);
  return [...raw.values()].filter((v) => v !== null && v !== false && v !== '');
}

/**
 * Parses one makefile's text into the model. Includes are listed as written in `includes` but
 * not followed (use loadMakefile for that). Throws CONFIG_INVALID on syntax errors, an unknown
 * project type, an unsupported api, a project declared twice, or an unsafe path.
 */
export function parseMakefile(text: string, options: ParseMakefileOptions): Makefile {
  const source = options.name ?? `makefile (${options.format})`;
  const tree = expandShorthand(parseRaw(text, options.format, source), source);
  const includes = includeEntries(tree, 'includes', source).map((v) => (typeof v === 'string' ? v : JSON.stringify(phpToPlain(v))));
  return normalise(tree, source, includes);
}

/** The format of a makefile by its name: `.yml`/`.yaml` is YAML, anything else INI. */
export function makefileFormat(path: string): 'ini' | 'yaml' {
  return /\.ya?ml$/i.test(path) ? 'yaml' : 'ini';
}

const REMOTE = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * Checks an include or override before it is read (the build's source policy); throws to refuse.
 * Gets the path as resolved, returns nothing.
 */
export type IncludeCheck = (path: string) => Promise<unknown>;

async function loadTree(path: string, stack: string[], loaded: string[], check: IncludeCheck | undefined): Promise<PhpArray> {
  if (check && stack.length > 0) await check(path);
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    const from = stack.at(-1);
    throw fail('CONFIG_INVALID', from ? `${from}: include file missing: ${path}` : `makefile not found: ${path}`, { makefile: path });
  }
  if (stack.includes(real)) {
    throw fail('CONFIG_INVALID', `makefile include cycle: ${[...stack, real].join(' -> ')}`, { makefile: real });
  }
  let text: string;
  try {
    text = await readFile(real, 'utf8');
  } catch (e) {
    throw fail('CONFIG_INVALID', `cannot read makefile ${real}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { makefile: real });
  }
  const merged = await mergeIncludes(text, real, dirname(real), stack, loaded, check);
  if (stack.length > 0 && !loaded.includes(real)) loaded.push(real);
  return merged;
}

/**
 * Parses one makefile's text (named `source`) and merges its includes and overrides, resolved
 * against `dir` (null: unknown, so only absolute ones can be followed).
 */
async function mergeIncludes(
  text: string,
  source: string,
  dir: string | null,
  stack: string[],
  loaded: string[],
  check: IncludeCheck | undefined,
): Promise<PhpArray> {
  const own = expandShorthand(parseRaw(text, makefileFormat(source), source), source);
  const resolveEntry = (entry: PhpValue, key: string): string => {
    if (typeof entry !== 'string') throw invalid(source, `${key} from a repository (git) are not supported; list a local file`);
    const e = entry.trim();
    if (REMOTE.test(e)) throw invalid(source, `remote ${key} are not supported: ${e}`);
    if (isAbsolute(e)) return e;
    if (dir === null) throw invalid(source, `cannot resolve ${key} entry ${e}: the makefile's directory is not known (give an absolute path)`);
    return resolve(dir, e);
  };
  const nextStack = [...stack, source];
  // Later includes override earlier ones; the including file overrides them all.
  let merged: PhpArray = new Map();
  for (const entry of includeEntries(own, 'includes', source)) {
    merged = replaceRecursive(merged, await loadTree(resolveEntry(entry, 'includes'), nextStack, loaded, check));
  }
  merged = replaceRecursive(merged, own);
  for (const entry of includeEntries(own, 'overrides', source)) {
    merged = replaceRecursive(merged, await loadTree(resolveEntry(entry, 'overrides'), nextStack, loaded, check));
  }
  merged.delete('includes');
  merged.delete('overrides');
  return merged;
}

/**
 * Reads a makefile from disk (format by extension) and follows its `includes` and `overrides`
 * recursively, each resolved relative to the file naming it. Throws CONFIG_INVALID for a missing
 * file, an include cycle, a remote or git include, or anything parseMakefile refuses;
 * `checkInclude` (when given) sees every include and override before it is read and may refuse it.
 */
export async function loadMakefile(path: string, options: { checkInclude?: IncludeCheck } = {}): Promise<Makefile> {
  const abs = resolve(path);
  const loaded: string[] = [];
  const tree = await loadTree(abs, [], loaded, options.checkInclude);
  return normalise(tree, abs, loaded);
}

/**
 * Like loadMakefile, for a makefile held as text (the master stores the makefile, not its file):
 * `name` decides the format (`.yml`/`.yaml` is YAML), and includes/overrides resolve against
 * `dir`, the directory the makefile was read from (null: unknown, so only absolute includes can be
 * followed). `source` is `dir/name` when the directory is known. `checkInclude` as for loadMakefile.
 */
export async function loadMakefileText(text: string, options: { name: string; dir: string | null; checkInclude?: IncludeCheck }): Promise<Makefile> {
  const source = options.dir ? resolve(options.dir, options.name) : options.name;
  const loaded: string[] = [];
  let real = source;
  if (options.dir) real = await realpath(source).catch(() => source);
  const tree = await mergeIncludes(text, source, options.dir, real === source ? [] : [real], loaded, options.checkInclude);
  return normalise(tree, source, loaded);
}

/**
 * True when the project can only be fetched from drupal.org's release service or git: it has no
 * download, or a git download without a URL. A caller that cannot reach drupal.org fails naming it.
 */
export function needsDrupalOrg(project: MakeProject): boolean {
  return project.download === null || (project.download.type === 'git' && project.download.url === null);
}

/**
 * Names drush make looks for inside a downloaded project to recurse into (when `do_recursion`
 * is not turned off), most specific first.
 */
export function nestedMakefileNames(project: Pick<MakeProject, 'name'>): string[] {
  return [`${project.name}.make.yml`, `${project.name}.make`, 'drupal-org.make.yml', 'drupal-org.make'];
}
