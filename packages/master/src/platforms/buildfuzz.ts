/**
 * Generated-case fuzzing of platform builds (issue 16): random trees of files, directories and
 * symlinks (relative, absolute, dangling, chains, `..`) packed as tar (plain, gzip, bzip2, xz),
 * zip, git repositories and copy sources; placed by random makefiles with `subtree`,
 * `destination`, `subdir`, `directory_name`, `overwrite` and patches that create links or write
 * through them; some reading sources they may not (the state dir, a directory outside the
 * makefile's). Each case runs the real PlatformBuilder inside its own directory whose snapshot
 * (paths, types, modes, contents, link targets) must be the same afterwards except for the
 * build's target, and a built target must hold no link leaving it and nothing it was not allowed
 * to read. Deterministic per (seed, case): `pnpm fuzz:build --seed S --only N --keep` replays one.
 *
 * Not part of the product (not exported from the package index): buildfuzz.test.ts runs a few
 * hundred cases in CI, bench/fuzz-build.ts (`pnpm fuzz:build`) any number by hand.
 */
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { checkSymlinkTarget, isSpokeError, silentLogger } from '@spoke/shared';
import { PlatformBuilder } from './build.js';
import { commitRepo, filePatch, packArchive, snapshot, snapshotDiff, symlinkPatch, type ArchiveFormat } from './buildfixtures.js';

/** What to run. */
export interface FuzzOptions {
  cases: number;
  seed: number;
  /** Scratch directory (one subdirectory per case). */
  dir: string;
  /** Run only this case number (with the same seed it is the same case). */
  only?: number;
  /** Keep the directories of cases that violated an invariant (the others are always removed). */
  keep?: boolean;
  /** Environment of the build tools (PATH, HOME), as the master's `buildEnv`. */
  env: Record<string, string | undefined>;
  /** Cases run at once (each spawns tar, zip, git, patch). @default 1 */
  concurrency?: number;
  /** Progress and violations, one line each. */
  log?: (line: string) => void;
}

/** What a run found. */
export interface FuzzReport {
  cases: number;
  built: number;
  /** Refusals by error code. */
  refused: Record<string, number>;
  /** Cases whose build went through a link inside the tree to a real directory (the resolver at work). */
  followedLinks: number;
  /** One line per broken invariant, naming seed and case. */
  violations: string[];
  ms: number;
}

/** Codes a refused build may carry; anything else (INTERNAL, a raw Error) is a violation. */
const EXPECTED_CODES = new Set([
  'BUILD_PATH_ESCAPE',
  'BUILD_SOURCE_NOT_ALLOWED',
  'BUILD_LIMIT_EXCEEDED',
  'ARCHIVE_UNSAFE',
  'ARCHIVE_PATH_EXISTS',
  'PLATFORM_BUILD_FAILED',
  'CONFIG_INVALID',
]);

const SECRET = 'fuzz-secret-do-not-publish\n';
const CA_KEY = '-----BEGIN PRIVATE KEY-----\nfuzz\n-----END PRIVATE KEY-----\n';

/** mulberry32: small, fast, good enough to pick cases; the same seed gives the same cases. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rand {
  constructor(readonly next: () => number) {}
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)] as T;
  }
}

/** Few names, so destinations, links and directories collide often. */
const NAMES = ['a', 'b', 'lib', 'esc', 'up', 'x', 'modules', 'libraries', 'sites', 'all', 'OUT'];
/** Levels between the case dir and the build's parent: escapes of up to 8 `..` stay in the case dir. */
const PAD = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8'];

type Node = { kind: 'file'; text: string } | { kind: 'dir' } | { kind: 'link'; target: string };

interface CaseDirs {
  /** Everything the case owns; snapshotted. */
  root: string;
  /** The makefile's directory (allowed sources). */
  src: string;
  /** Where targets go (the staging dir is made beside the target). */
  out: string;
  state: string;
  outside: string;
}

/** A random tree: relative path → node, parents listed before children. */
function randomTree(r: Rand, dirs: CaseDirs, maxNodes: number, hostile: boolean): Map<string, Node> {
  const tree = new Map<string, Node>();
  const dirsOf = (): string[] => ['', ...[...tree].filter(([, n]) => n.kind === 'dir').map(([p]) => p)];
  const count = r.int(1, maxNodes);
  for (let i = 0; i < count; i++) {
    const parent = r.pick(dirsOf());
    const name = r.chance(0.7) ? r.pick(NAMES) : `${r.pick(NAMES)}${r.int(0, 9)}`;
    const path = parent ? `${parent}/${name}` : name;
    if (tree.has(path)) continue;
    const roll = r.next();
    if (roll < 0.45) tree.set(path, { kind: 'file', text: `${path} ${r.int(0, 1e9)}\n` });
    else if (roll < 0.75) tree.set(path, { kind: 'dir' });
    else tree.set(path, { kind: 'link', target: hostile ? randomTarget(r, path, tree, dirs) : insideTarget(r, path, tree) });
  }
  return tree;
}

/** A relative target that stays inside the tree (to another node, maybe dangling, maybe a chain). */
function insideTarget(r: Rand, path: string, tree: Map<string, Node>): string {
  const depth = path.split('/').length - 1;
  const existing = [...tree.keys()];
  if (existing.length && r.chance(0.7)) return `${'../'.repeat(depth)}${r.pick(existing)}`;
  return r.chance(0.5) ? r.pick(NAMES) : '.';
}

function randomTarget(r: Rand, path: string, tree: Map<string, Node>, dirs: CaseDirs): string {
  const depth = path.split('/').length - 1;
  const existing = [...tree.keys()];
  const roll = r.next();
  if (roll < 0.25) {
    // `..` chains: inside the archive, at its edge, or out of it (the extractor or the scan refuses those)
    // one more than the link's depth is legal in an archive with one top directory and leaves the
    // platform once that directory is stripped; more leaves the archive itself
    const ups = Math.min(8, Math.max(1, r.chance(0.5) ? depth + 1 : r.int(1, depth + 3)));
    return `${'../'.repeat(ups)}${r.chance(0.5) ? r.pick(NAMES) : ''}`.replace(/\/$/, '') || '..';
  }
  if (roll < 0.4)
    return r.pick([dirs.root, dirs.outside, dirs.out, dirs.state, join(dirs.root, PAD[0] as string)]) + (r.chance(0.3) ? `/${r.pick(NAMES)}` : '');
  if (roll < 0.55) return r.pick(['.', './', '..']);
  if (roll < 0.75 && existing.length) {
    // to another node (file, dir or link: chains), from this link's directory
    const to = r.pick(existing);
    return `${'../'.repeat(depth)}${to}`;
  }
  return `${r.pick(NAMES)}${r.chance(0.5) ? `/${r.pick(NAMES)}` : ''}`; // dangling or lucky
}

/** Writes a tree (parents are always directory nodes, listed first, so nothing is written through a link). */
function writeNodes(root: string, tree: Map<string, Node>): void {
  mkdirSync(root, { recursive: true });
  for (const [p, n] of tree) {
    const abs = join(root, p);
    if (n.kind === 'dir') mkdirSync(abs);
    else if (n.kind === 'file') writeFileSync(abs, n.text);
    else symlinkSync(n.target, abs);
  }
}

type Download = 'tar' | 'tar.gz' | 'tar.bz2' | 'tar.xz' | 'zip' | 'git' | 'copy' | 'plain' | 'secret' | 'cakey';
const CORE_DOWNLOADS: readonly Download[] = ['tar', 'tar.gz', 'tar.bz2', 'tar.xz', 'zip', 'git', 'copy'];
const ITEM_DOWNLOADS: readonly Download[] = [...CORE_DOWNLOADS, 'plain'];

/** Makes a source of kind `dl` from a random tree; returns makefile download lines (after `download`). */
function makeSource(
  r: Rand,
  dirs: CaseDirs,
  id: string,
  dl: Download,
  forbidden: { used: boolean },
  hostile: boolean,
  /** Plant the issue's link: `esc` at the top of what is placed, aimed just outside the platform. */
  plant = false,
): { lines: string[]; subtreeable: string[]; links: string[]; subtree?: string } {
  if (dl === 'plain') {
    writeFileSync(join(dirs.src, `${id}.txt`), `${id}\n`);
    return { lines: ['[type] = file', `[url] = ${id}.txt`], subtreeable: [], links: [] };
  }
  if (dl === 'secret' || dl === 'cakey') {
    forbidden.used = true;
    const file = dl === 'secret' ? join(dirs.outside, 'secret.txt') : join(dirs.state, 'pki', 'ca.key');
    return { lines: ['[type] = file', `[url] = ${r.chance(0.5) ? file : `file://${file}`}`], subtreeable: [], links: [] };
  }
  const stage = join(dirs.src, 'stage', id);
  // one top directory (stripped from archives), or several names at the top
  const wrap = (plant && dl !== 'git' && dl !== 'copy') || r.chance(0.6) ? r.pick(NAMES.filter((n) => n !== 'esc')) : '';
  let tree = randomTree(r, dirs, 14, hostile);
  let plantedSubtree: string | null = null;
  if (plant) {
    tree.delete('esc');
    for (const k of [...tree.keys()]) if (k.startsWith('esc/')) tree.delete(k);
    if (dl === 'git' || dl === 'copy') {
      // a repository or a copy carries an absolute link as it is
      tree.set('esc', { kind: 'link', target: r.pick([dirs.outside, dirs.out, join(dirs.root, 'p1')]) });
    } else {
      // In an archive `top/s/t/esc -> ../../..` is legal; placed with subtree top/s/t it becomes
      // the root's `esc -> ../../..`, which leads past the staging dir into the case dir.
      tree = new Map<string, Node>([['s', { kind: 'dir' }], ['s/t', { kind: 'dir' }], ...[...tree].map(([k, v]): [string, Node] => [`s/t/${k}`, v])]);
      tree.set('s/t/esc', { kind: 'link', target: '../../..' });
      plantedSubtree = `${wrap}/s/t`;
    }
  }
  writeNodes(wrap ? join(stage, wrap) : stage, tree);
  const entries = readdirSync(stage);
  if (entries.length === 0) writeFileSync(join(stage, 'empty.txt'), 'e\n');
  const subtreeable = [...tree].filter(([, n]) => n.kind === 'dir').map(([p]) => (wrap ? `${wrap}/${p}` : p));
  // Where its links land in the platform when it is placed at the root without a subtree (an
  // archive's single top directory is stripped; a repository or copy is placed as it is).
  const links = [...tree].filter(([, n]) => n.kind === 'link').map(([p]) => (wrap && (dl === 'git' || dl === 'copy') ? `${wrap}/${p}` : p));
  if (dl === 'git') {
    commitRepo(stage);
    return { lines: ['[type] = git', `[url] = ${r.chance(0.5) ? stage : relative(dirs.src, stage)}`], subtreeable: [], links };
  }
  if (dl === 'copy') return { lines: ['[type] = copy', `[url] = ${relative(dirs.src, stage)}`], subtreeable: [], links };
  const file = join(dirs.src, `${id}.${dl}`);
  packArchive(stage, readdirSync(stage), file, dl as ArchiveFormat);
  return { lines: ['[type] = file', `[url] = ${id}.${dl}`], subtreeable, links, ...(plantedSubtree ? { subtree: plantedSubtree } : {}) };
}

/** One generated case: its makefile (INI) and whether it asks for something it may not read. */
function generate(r: Rand, dirs: CaseDirs): { makefile: string; forbidden: boolean } {
  const forbidden = { used: false };
  // Half the cases are hostile (links and patches aimed out of the tree); the others keep their
  // links inside, so they build and exercise placement through links that may be followed.
  const hostile = r.chance(0.5);
  const downloadFor = (): Download => (hostile && r.chance(0.1) ? r.pick(['secret', 'cakey'] as const) : r.pick(ITEM_DOWNLOADS));
  // Hostile cases are Drupal 8+ (contrib at the root), so a library's destination can start at a
  // link the core planted at the root: the attack of issue 16.
  const lines = [`core = ${hostile || r.chance(0.8) ? '8.x' : '7.x'}`, 'api = 2'];
  if (hostile && r.chance(0.05)) {
    forbidden.used = true;
    lines.push(`includes[] = ${join(dirs.outside, 'inc.make')}`);
  }
  const plant = hostile && r.chance(0.4);
  const core = makeSource(r, dirs, 'core', r.pick(CORE_DOWNLOADS), forbidden, hostile, plant);
  lines.push('projects[drupal][type] = core', ...core.lines.map((l) => `projects[drupal][download]${l}`));
  const subtree = core.subtree !== undefined || (core.subtreeable.length > 0 && r.chance(0.3));
  if (subtree) lines.push(`projects[drupal][download][subtree] = ${core.subtree ?? r.pick(core.subtreeable)}`);
  const planted = subtree ? [] : core.links;
  const patches = (owner: string): string[] => {
    const out: string[] = [];
    for (let i = r.int(0, 2); i > 0; i--) {
      const name = `${owner.replace(/\W/g, '_')}-${i}.patch`;
      const at = `${r.pick(NAMES)}${r.chance(0.4) ? `/${r.pick(NAMES)}` : ''}`;
      const text =
        hostile && r.chance(0.5)
          ? symlinkPatch(at, r.pick(['..', '../..', '../../../..', dirs.outside, dirs.root, 'a', '../lib']))
          : r.chance(0.3)
            ? symlinkPatch(at, r.pick(NAMES))
            : filePatch(`${at}/pwned${i}.txt`, 'pwned');
      writeFileSync(join(dirs.src, name), text);
      out.push(`${owner}[patch][] = ${name}`);
    }
    return out;
  };
  lines.push(...patches('projects[drupal]'));
  if (plant) {
    const p = makeSource(r, dirs, 'payload', r.pick(ITEM_DOWNLOADS), forbidden, false);
    lines.push(...p.lines.map((l) => `libraries[payload][download]${l}`), `libraries[payload][destination] = esc${r.chance(0.5) ? '/OUT' : ''}`);
  }
  const items = r.int(0, 3);
  for (let i = 0; i < items; i++) {
    const lib = r.chance(0.6);
    const name = `i${i}${r.pick(NAMES)}`;
    const owner = lib ? `libraries[${name}]` : `projects[${name}]`;
    const src = makeSource(r, dirs, name, downloadFor(), forbidden, hostile);
    lines.push(...src.lines.map((l) => `${owner}[download]${l}`));
    if (src.subtreeable.length && r.chance(0.3)) lines.push(`${owner}[download][subtree] = ${r.pick(src.subtreeable)}`);
    const path = () => Array.from({ length: r.int(1, 3) }, () => r.pick(NAMES)).join('/');
    if (lib && hostile && planted.length && r.chance(0.6)) lines.push(`${owner}[destination] = ${r.pick(planted)}${r.chance(0.5) ? `/${r.pick(NAMES)}` : ''}`);
    else if (lib && r.chance(0.8)) lines.push(`${owner}[destination] = ${path()}`);
    if (!lib) {
      lines.push(`${owner}[type] = ${r.pick(['module', 'theme', 'profile', 'library'])}`);
      if (r.chance(0.5)) lines.push(`${owner}[subdir] = ${path()}`);
    }
    if (r.chance(0.4)) lines.push(`${owner}[directory_name] = ${r.pick(NAMES)}`);
    if (r.chance(0.3)) lines.push(`${owner}[overwrite] = 1`);
    lines.push(...patches(owner));
  }
  return { makefile: `${lines.join('\n')}\n`, forbidden: forbidden.used };
}

/** Every symlink under `root` must stay inside it, and no file may hold a forbidden source. */
function checkTarget(target: string): string[] {
  const bad: string[] = [];
  const real = realpathSync(target);
  const visit = (abs: string): void => {
    const st = lstatSync(abs);
    const rel = relative(target, abs).split(sep).join('/');
    if (st.isSymbolicLink()) {
      const t = readlinkSync(abs);
      try {
        checkSymlinkTarget(rel, t);
      } catch {
        bad.push(`link ${rel} -> ${t} leaves the platform`);
      }
      let to: string | null = null;
      try {
        to = realpathSync(abs);
      } catch {
        /* dangling or a loop: nothing to check */
      }
      if (to !== null && to !== real && !to.startsWith(real + sep)) bad.push(`link ${rel} resolves to ${to}, outside the platform`);
      return;
    }
    if (st.isFile()) {
      const text = readFileSync(abs, 'utf8');
      if (text === SECRET || text === CA_KEY) bad.push(`${rel} holds a file the build may not read`);
      return;
    }
    if (st.isDirectory()) for (const n of readdirSync(abs)) visit(join(abs, n));
  };
  visit(target);
  return bad;
}

/** Did the build place something through a link (its target has a link whose real path is a directory with content)? */
function followedALink(target: string): boolean {
  let found = false;
  const visit = (abs: string): void => {
    if (found) return;
    const st = lstatSync(abs);
    if (st.isSymbolicLink()) {
      try {
        if (lstatSync(realpathSync(abs)).isDirectory() && readdirSync(abs).length > 0) found = true;
      } catch {
        /* dangling */
      }
      return;
    }
    if (st.isDirectory()) for (const n of readdirSync(abs)) visit(join(abs, n));
  };
  visit(target);
  return found;
}

/** Runs the cases; never throws for a broken invariant (it is reported). */
export async function runBuildFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const t0 = performance.now();
  const log = opts.log ?? (() => undefined);
  const report: FuzzReport = { cases: 0, built: 0, refused: {}, followedLinks: 0, violations: [], ms: 0 };
  const env = opts.env;
  const first = opts.only ?? 0;
  const last = opts.only ?? opts.cases - 1;
  let nextCase = first;
  const worker = async (): Promise<void> => {
    while (nextCase <= last) await runCase(nextCase++);
  };
  const runCase = async (n: number): Promise<void> => {
    const r = new Rand(prng((opts.seed * 1_000_003 + n) >>> 0));
    const root = join(opts.dir, `case-${opts.seed}-${n}`);
    rmSync(root, { recursive: true, force: true });
    const deep = join(root, ...PAD);
    const dirs: CaseDirs = { root, src: join(deep, 'src'), out: join(deep, 'out'), state: join(deep, 'state'), outside: join(deep, 'outside') };
    for (const d of [dirs.src, dirs.out, join(dirs.state, 'pki'), dirs.outside]) mkdirSync(d, { recursive: true });
    // Canaries at every level an escape could reach.
    PAD.forEach((_, i) => writeFileSync(join(root, ...PAD.slice(0, i), 'canary.txt'), `level ${i}\n`));
    writeFileSync(join(dirs.outside, 'secret.txt'), SECRET);
    writeFileSync(join(dirs.outside, 'inc.make'), 'projects[evil][download][url] = /nonexistent\n');
    writeFileSync(join(dirs.state, 'pki', 'ca.key'), CA_KEY);
    mkdirSync(join(dirs.out, 'sibling', 'a'), { recursive: true });
    writeFileSync(join(dirs.out, 'sibling', 'a', 'keep.txt'), 'keep\n');

    const { makefile, forbidden } = generate(r, dirs);
    writeFileSync(join(dirs.src, 'fuzz.make'), makefile);
    const targetRel = `${PAD.join('/')}/out/plat`;
    const skip = (rel: string) => rel === targetRel || rel.startsWith(`${targetRel}/`);
    const before = snapshot(root, skip);
    const builder = new PlatformBuilder({
      env,
      log: silentLogger(),
      stateDir: dirs.state,
      limits: { maxBytes: 64 * 1024 * 1024, maxEntries: 5_000, maxRatio: 100 },
      commandTimeoutMs: 60_000,
    });
    const target = join(dirs.out, 'plat');
    const where = `seed ${opts.seed} case ${n}`;
    const problems: string[] = [];
    let outcome: string;
    try {
      await builder.ensure(
        { log: () => undefined, signal: new AbortController().signal },
        { platform: 'plat', target, source: { kind: 'makefile', makefile, makefileName: 'fuzz.make', makefileDir: dirs.src } },
      );
      report.built++;
      outcome = 'built';
      problems.push(...checkTarget(target));
      if (forbidden) problems.push('the build read a source it may not and succeeded');
      if (followedALink(target)) report.followedLinks++;
    } catch (e) {
      const code = isSpokeError(e) ? e.code : 'NOT_A_SPOKE_ERROR';
      report.refused[code] = (report.refused[code] ?? 0) + 1;
      outcome = `${code}: ${e instanceof Error ? e.message : String(e)}`;
      if (!EXPECTED_CODES.has(code)) problems.push(`unexpected error ${outcome}`);
      if (e instanceof Error && e.message.includes('\n')) problems.push('the error message has more than one line');
      try {
        lstatSync(target);
        problems.push('a failed build left its target');
      } catch {
        /* expected */
      }
    }
    const changed = snapshotDiff(before, snapshot(root, skip));
    if (changed.length) problems.push(`changed outside the target: ${changed.slice(0, 5).join('; ')}${changed.length > 5 ? ` (+${changed.length - 5})` : ''}`);
    report.cases++;
    if (problems.length) {
      for (const p of problems) report.violations.push(`${where}: ${p}`);
      log(
        `VIOLATION ${where}: ${problems.join(' | ')}\n  outcome: ${outcome}\n  makefile:\n${makefile.replace(/^/gm, '    ')}${opts.keep ? `  kept: ${root}` : ''}`,
      );
    }
    if (!problems.length || !opts.keep) rmSync(root, { recursive: true, force: true });
    if (opts.only !== undefined) log(`${where}: ${outcome}\n${makefile}`);
    else if (report.cases % 100 === 0) log(`${report.cases} cases: ${report.built} built, ${report.violations.length} violations`);
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 1) }, worker));
  report.ms = performance.now() - t0;
  return report;
}
