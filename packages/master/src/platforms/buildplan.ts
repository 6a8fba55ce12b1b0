/**
 * A drush makefile as a build plan (see build.ts for the drush semantics followed): where each
 * project and library goes, in build order, with every download, copy and patch checked before
 * anything is fetched; and the checks `platform add` makes of a makefile or git source.
 */
import { basename, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkEntryPath, fail } from '@spoke/shared';
import { SourcePolicy } from './buildfs.js';
import { loadMakefileText, needsDrupalOrg, type MakeDownload, type Makefile, type MakeLibrary, type MakePatch, type MakeProject } from './registry/index.js';
import type { PlatformSource } from '../types.js';

const REMOTE = /^[a-z][a-z0-9+.-]*:\/\//i;

/** A located project or library to build. */
export interface Item {
  kind: 'project' | 'library';
  name: string;
  /** `core …`, `project …` or `library …` (for messages). */
  label: string;
  /** Path relative to the build root ('' for core). */
  rel: string;
  download: MakeDownload;
  patches: MakePatch[];
  overwrite: boolean;
  /** For projects that may carry their own makefile: where its projects go. */
  recurse: string | null;
}

/** A relative path inside the build (never absolute, never `..`). */
export function safeRel(...parts: (string | null | undefined)[]): string {
  const rel = parts
    .filter((x): x is string => !!x && x !== '.')
    .join('/')
    .replace(/\/+/g, '/')
    .replace(/^\/|\/$/g, '');
  return rel === '' ? '' : checkEntryPath(rel);
}

/** Where a file download, copy or patch lives on the master's disk. */
export function localPath(url: string, dir: string | null, what: string): string {
  if (/^file:\/\//i.test(url)) {
    try {
      return fileURLToPath(url);
    } catch (e) {
      throw fail('CONFIG_INVALID', `${what}: bad file URL ${url}: ${(e as Error).message}`);
    }
  }
  if (REMOTE.test(url)) {
    throw fail('CONFIG_INVALID', `${what}: remote URL ${url} is not supported; put the file next to the makefile and give its path (or a file:// URL)`);
  }
  if (isAbsolute(url)) return url;
  if (!dir)
    throw fail('CONFIG_INVALID', `${what}: relative path ${url} cannot be resolved: the makefile's directory is not known (re-add the platform with the CLI)`);
  return resolve(dir, url);
}

/** A git URL: URLs and scp-like `host:path` as written; a local relative path against the makefile's directory. */
export function gitUrl(url: string, dir: string | null, what: string): string {
  if (url.startsWith('-')) throw fail('CONFIG_INVALID', `${what}: git URL ${url} must not start with "-"`);
  if (REMOTE.test(url) || /^[^/]+:/.test(url) || isAbsolute(url)) return url;
  if (!dir) throw fail('CONFIG_INVALID', `${what}: relative git path ${url} cannot be resolved: the makefile's directory is not known`);
  return resolve(dir, url);
}

function checkRef(ref: string | null, what: string): void {
  if (ref !== null && (ref.startsWith('-') || /[\s\0]/.test(ref))) throw fail('CONFIG_INVALID', `${what}: git ref ${JSON.stringify(ref)} is not valid`);
}

/**
 * Checks a git platform's repository and ref as the operator gave them: the URL is a URL,
 * `host:path` or an absolute path and never starts with `-` (git would read it as an option);
 * the ref (may be empty: the default branch) never starts with `-` and has no blanks.
 * @throws SpokeError CONFIG_INVALID
 */
export function checkGitSource(url: string, ref: string): void {
  if (url.startsWith('-') || /[\0\n\r]/.test(url) || !(REMOTE.test(url) || /^[^/]+:/.test(url) || isAbsolute(url))) {
    throw fail('CONFIG_INVALID', `repository ${JSON.stringify(url)} must be a URL, host:path, or an absolute path`);
  }
  checkRef(ref || null, 'git platform');
}

/** Drush's default contrib destination: `sites/all` before Drupal 8, the root from 8 on. */
export function contribDestination(core: string | null): string {
  const n = core ? Number.parseInt(core, 10) : NaN;
  return Number.isFinite(n) && n < 8 ? 'sites/all' : '';
}

/**
 * Where a project goes, relative to the build root (see the module comment). `dest` is the
 * contrib destination in force ('' = the root).
 */
export function projectPath(p: Pick<MakeProject, 'name' | 'type' | 'subdir' | 'directory_name'>, dest: string): string {
  const dir = p.directory_name ?? p.name;
  switch (p.type ?? 'module') {
    case 'core':
      return '';
    case 'profile':
      return safeRel('profiles', p.subdir, dir);
    case 'theme':
      return safeRel(dest, 'themes', p.subdir, dir);
    case 'library':
      return safeRel(dest, 'libraries', p.subdir, dir);
    default:
      return safeRel(dest, 'modules', p.subdir, dir);
  }
}

/** Where a library goes, relative to the build root. */
export function libraryPath(l: Pick<MakeLibrary, 'name' | 'destination' | 'subdir' | 'directory_name'>, dest: string): string {
  return safeRel(dest, l.destination, l.subdir, l.directory_name ?? l.name);
}

/** A project's own `contrib_destination` (drush: `.` means the root), or null. */
function ownDestination(d: string | null): string | null {
  if (d === null) return null;
  return d === '.' ? '' : safeRel(d);
}

/** What a makefile asks for, checked: the items in build order. */
export interface Plan {
  core: MakeProject | null;
  items: Item[];
  skipped: string[];
}

/**
 * Checks a makefile before anything is fetched and puts its projects in build order. Refuses
 * (CONFIG_INVALID) a top-level makefile without a `core` line or without exactly one core
 * project, unsupported download methods, remote files and patches; refuses
 * (MAKEFILE_NEEDS_DRUPAL_ORG) projects that only drupal.org could provide, naming them all.
 */
export function plan(
  mf: Makefile,
  opts: { top: boolean; dest: string; dir: string | null; skip: (kind: 'project' | 'library', name: string) => boolean },
): Plan {
  const src = basename(mf.source);
  const bad = (msg: string) => fail('CONFIG_INVALID', `${src}: ${msg}`, { makefile: mf.source });
  if (opts.top && mf.core === null) throw bad("the makefile has no 'core' line (for example core = 7.x)");
  const cores = mf.projects.filter((p) => p.type === 'core');
  if (opts.top && cores.length === 0) throw bad('no core project (a project of type core, or one named drupal)');
  if (opts.top && cores.length > 1) throw bad(`more than one core project: ${cores.map((p) => p.name).join(', ')}`);
  const skipped: string[] = [];
  const projects = mf.projects.filter((p) => {
    if (p.type === 'core' && !opts.top) {
      skipped.push(`core ${p.name} (a nested makefile's core is ignored)`);
      return false;
    }
    if (p.type !== 'core' && opts.skip('project', p.name)) {
      skipped.push(`project ${p.name} (defined by the top-level makefile or already built)`);
      return false;
    }
    return true;
  });
  const libraries = mf.libraries.filter((l) => {
    if (opts.skip('library', l.name)) {
      skipped.push(`library ${l.name} (defined by the top-level makefile or already built)`);
      return false;
    }
    return true;
  });
  const needy = projects.filter(needsDrupalOrg);
  if (needy.length) {
    const names = needy.map((p) => `${p.name}${p.version ? ` (version ${p.version})` : ''}`).join(', ');
    throw fail(
      'MAKEFILE_NEEDS_DRUPAL_ORG',
      `${src}: ${needy.length === 1 ? 'project' : 'projects'} ${names} ${needy.length === 1 ? 'has' : 'have'} no download URL and would need drupal.org, which Spoke does not contact; give ${needy.length === 1 ? 'it' : 'each'} a download (git url, a local file or copy)`,
      { makefile: mf.source, projects: needy.map((p) => p.name) },
    );
  }
  const noDl = libraries.filter((l) => l.download === null || (l.download.type === 'git' && l.download.url === null));
  if (noDl.length)
    throw bad(`${noDl.length === 1 ? 'library' : 'libraries'} ${noDl.map((l) => l.name).join(', ')} ${noDl.length === 1 ? 'has' : 'have'} no download url`);

  const check = (label: string, d: MakeDownload, patches: MakePatch[]): void => {
    if (d.type === 'unsupported') throw bad(`${label}: download type ${d.method} is not supported (git, file or copy)`);
    if (d.type === 'file' || d.type === 'copy') localPath(d.url, opts.dir, `${src}: ${label}`);
    if (d.type === 'git') {
      gitUrl(d.url ?? '', opts.dir, `${src}: ${label}`);
      for (const r of [d.branch, d.tag, d.revision, d.refspec]) checkRef(r, `${src}: ${label}`);
    }
    if (d.type === 'file' && d.subtree !== null) safeRel(d.subtree);
    if (d.type === 'file' && d.filename !== null && (d.filename.includes('/') || d.filename === '..' || d.filename === '.')) {
      throw bad(`${label}: filename ${d.filename} must be a plain file name`);
    }
    for (const p of patches) localPath(p.url, opts.dir, `${src}: ${label}: patch`);
  };

  const items: Item[] = [];
  const core = projects.find((p) => p.type === 'core') ?? null;
  for (const p of [...(core ? [core] : []), ...projects.filter((x) => x !== core)]) {
    const label = p.type === 'core' ? `core ${p.name}` : `project ${p.name}`;
    const d = p.download as MakeDownload; // needsDrupalOrg() was false
    check(label, d, p.patches);
    const dest = ownDestination(p.contrib_destination) ?? opts.dest;
    const rel = projectPath(p, dest);
    items.push({
      kind: 'project',
      name: p.name,
      label,
      rel,
      download: d,
      patches: p.patches,
      overwrite: p.overwrite,
      recurse: p.do_recursion ? (p.type === 'profile' ? rel : dest) : null,
    });
  }
  for (const l of libraries) {
    const label = `library ${l.name}`;
    const d = l.download as MakeDownload;
    check(label, d, l.patches);
    const rel = libraryPath(l, ownDestination(l.contrib_destination) ?? opts.dest);
    items.push({ kind: 'library', name: l.name, label, rel, download: d, patches: l.patches, overwrite: l.overwrite, recurse: null });
  }
  return { core, items, skipped };
}

/**
 * Reads and checks a makefile source as `platform add` receives it (includes are followed from
 * its directory on the master's disk), so a makefile that cannot build is refused before the
 * platform is registered: includes, local downloads, copies, patches and local git repositories
 * must lie where `policy` allows (by default the makefile's own directory tree).
 * @throws SpokeError CONFIG_INVALID, MAKEFILE_NEEDS_DRUPAL_ORG, BUILD_SOURCE_NOT_ALLOWED
 */
export async function checkMakefileSource(
  source: Extract<PlatformSource, { kind: 'makefile' }>,
  policy: SourcePolicy = new SourcePolicy([], []),
): Promise<Makefile> {
  const dir = source.makefileDir ?? null;
  const roots = policy.roots(dir);
  const mf = await loadMakefileText(source.makefile, {
    name: source.makefileName || 'platform.make',
    dir,
    checkInclude: (p) => policy.check(p, roots, `${source.makefileName || 'makefile'}: include`),
  });
  const p = plan(mf, { top: true, dest: contribDestination(mf.core), dir, skip: () => false });
  for (const item of p.items) {
    for (const [path, what] of localSources(item, dir)) await policy.check(path, roots, `${basename(mf.source)}: ${what}`);
  }
  return mf;
}

/** The local paths an item reads (file, copy, local git repository, patches), with what each is. */
export function localSources(item: Item, dir: string | null): [string, string][] {
  const out: [string, string][] = [];
  const d = item.download;
  if (d.type === 'file' || d.type === 'copy') out.push([localPath(d.url, dir, item.label), `${item.label}: download`]);
  if (d.type === 'git') {
    const local = localGitPath(gitUrl(d.url ?? '', dir, item.label));
    if (local !== null) out.push([local, `${item.label}: git repository`]);
  }
  for (const p of item.patches) out.push([localPath(p.url, dir, `${item.label}: patch`), `${item.label}: patch`]);
  return out;
}

/** The directory a git URL reads on the master's own disk (an absolute path or file://), else null. */
export function localGitPath(url: string): string | null {
  if (/^file:\/\//i.test(url)) {
    try {
      return fileURLToPath(url);
    } catch {
      return null; // git itself refuses it
    }
  }
  return isAbsolute(url) ? url : null;
}
