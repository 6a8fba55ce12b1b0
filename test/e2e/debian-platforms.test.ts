/**
 * Real code nobody here wrote: Debian's `wordpress` and `mediawiki` packages (installed by
 * scripts/test-all.sh) are copied onto the master as platforms and converged to an agent. Checks
 * that detection reads the kind and core version the package ships, that the agent's copy equals
 * the master's byte for byte — including the symlinks Debian puts in these trees, absolute
 * (`.htaccess -> /etc/wordpress/htaccess`, `extensions -> /var/lib/mediawiki/extensions`) or
 * climbing out of the tree (`wp-includes/js/underscore.js -> ../../../javascript/…`), which stay
 * links — and that nothing is ever written through such a link.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentUnderTest, BIN, MasterUnderTest, cleanup, runNode, scratch, until } from '../harness.js';

interface Pkg {
  pkg: 'wordpress' | 'mediawiki';
  /** Where Debian installs the tree. */
  tree: string;
  /** The version file of the tree and how upstream writes the version in it. */
  versionFile: string;
  versionRe: RegExp;
}

const PACKAGES: Pkg[] = [
  { pkg: 'wordpress', tree: '/usr/share/wordpress', versionFile: 'wp-includes/version.php', versionRe: /^\$wp_version\s*=\s*'([^']+)';/m },
  { pkg: 'mediawiki', tree: '/usr/share/mediawiki', versionFile: 'includes/Defines.php', versionRe: /^define\(\s*'MW_VERSION',\s*'([^']+)'\s*\);/m },
];

interface TaskJson {
  id: number;
  state: string;
  error: { code: string; message: string } | null;
  result: { rootHash: string; files: number; servers: { server: string; inSync: boolean; filesFetched: number }[] } | null;
}

interface PlatformJson {
  name: string;
  status: string;
  desiredRootHash: string;
  registry: {
    kind: string;
    coreVersion: string | null;
    problems: { path: string; error: string }[];
    modules: { name: string; type: string; version: string | null }[];
    themes: { name: string; type: string; version: string | null }[];
  } | null;
}

const dir = scratch('spoke-debian-');
const master = new MasterUnderTest(dir);
const web = new AgentUnderTest(dir, 'web1');
const nsPath = (p: Pkg) => `/var/www/${p.pkg}`;
const masterTree = (p: Pkg) => join(master.root, nsPath(p));
const agentTree = (p: Pkg) => join(web.root, nsPath(p));

/** The installed version of a Debian package, or a clear error naming the package to install. */
function installedVersion(pkg: string): string {
  let out = '';
  try {
    out = execFileSync('dpkg-query', ['-W', '-f=${Status}\t${Version}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    // not known to dpkg at all (or no dpkg): same message
  }
  const [status, version] = out.split('\t');
  if (status !== 'install ok installed' || !version) {
    throw new Error(
      `the Debian package "${pkg}" is not installed; this test converges its real tree. Install it with: apt-get install ${pkg} (scripts/test-all.sh does)`,
    );
  }
  return version;
}

/**
 * The upstream version inside a Debian version: no epoch (`1:`), no Debian revision (`-1+deb12u1`),
 * no repack suffix (`+dfsg1`, `~ds`, `+repack2`): `1:6.1.1+dfsg1-1` → `6.1.1`.
 */
function upstreamOf(debianVersion: string): string {
  let v = debianVersion.replace(/^\d+:/, '');
  const dash = v.lastIndexOf('-');
  if (dash > 0) v = v.slice(0, dash);
  return v.replace(/[+~](dfsg|ds|repack)\d*$/i, '');
}

/** What a tree holds, by an independent walk (lstat, never following links): path → description. */
function listing(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of readdirSync(rel ? join(root, rel) : root).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = join(root, r);
      const st = lstatSync(abs);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out.set(r, `link -> ${readlinkSync(abs)}`);
      else if (st.isDirectory()) {
        out.set(r, `dir ${mode}`);
        walk(r);
      } else if (st.isFile()) out.set(r, `file ${mode} ${st.size} ${createHash('sha256').update(readFileSync(abs)).digest('hex')}`);
      else out.set(r, `special ${st.mode.toString(8)}`);
    }
  };
  walk('');
  return out;
}

/** Listing of whatever is at `path` (a file, a directory, or nothing), for "untouched" checks. */
function snapshot(path: string): string {
  if (!existsSync(path)) return 'absent';
  const st = lstatSync(path);
  if (!st.isDirectory()) return `${st.mode.toString(8)} ${st.size} ${st.isFile() ? createHash('sha256').update(readFileSync(path)).digest('hex') : ''}`;
  return JSON.stringify([...listing(path)]);
}

/** Symlinks of a tree whose target is absolute or climbs above the tree root. */
function linksOutOfTree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [rel, what] of listing(root)) {
    if (!what.startsWith('link -> ')) continue;
    const target = what.slice('link -> '.length);
    const depth = rel.split('/').length - 1;
    let level = depth;
    let leaves = target.startsWith('/');
    for (const seg of target.split('/')) {
      if (seg === '..') level--;
      else if (seg !== '' && seg !== '.') level++;
      if (level < 0) leaves = true;
    }
    if (leaves) out.set(rel, target);
  }
  return out;
}

/** Runs the CLI with room for a 280 MB first converge on a busy 2-core box. */
async function spoke(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runNode(BIN.spoke, ['--state-dir', master.stateDir, ...args], {}, 300_000);
}

async function task(...args: string[]): Promise<TaskJson> {
  const r = await spoke('-o', 'json', ...args);
  const at = r.stdout.lastIndexOf('\n{');
  if (at < 0 && !r.stdout.startsWith('{')) throw new Error(`spoke ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout.slice(at + 1)) as TaskJson;
}

async function show(name: string): Promise<PlatformJson> {
  const r = await spoke('-o', 'json', 'platform', 'show', name);
  if (r.code !== 0) throw new Error(`platform show ${name} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as PlatformJson;
}

const versions = new Map<string, string>();
/** Absolute link targets on this host (where the agent's links point), before the converges. */
const hostTargets = new Map<string, string>();

/** Set when a package is missing: every test then fails with it (a skip would hide that nothing was tested). */
let missingPackages: Error | undefined;
function requirePackages(): void {
  if (missingPackages) throw missingPackages;
}

beforeAll(async () => {
  const missing = PACKAGES.filter((p) => {
    try {
      versions.set(p.pkg, installedVersion(p.pkg));
      return !existsSync(join(p.tree, p.versionFile));
    } catch {
      return true;
    }
  });
  if (missing.length) {
    const names = missing.map((p) => p.pkg).join(' ');
    missingPackages = new Error(
      `Debian package(s) not installed: ${names}. These tests converge their real trees; install with: apt-get install ${names} (scripts/test-all.sh does)`,
    );
    return;
  }
  for (const p of PACKAGES) {
    mkdirSync(dirname(masterTree(p)), { recursive: true });
    execFileSync('cp', ['-a', p.tree, masterTree(p)]); // symlinks stay symlinks
    for (const target of linksOutOfTree(p.tree).values()) {
      if (target.startsWith('/')) hostTargets.set(target, snapshot(target));
    }
  }
  await master.start();
  const token = await master.cli('server', 'token', web.name);
  const r = await web.enroll(master.listen, token.stdout.trim());
  if (r.code !== 0) throw new Error(`enroll failed: ${r.stderr}`);
  web.run({ SPOKE_DRIFT_INTERVAL_MS: '1000' });
  await until('agent online', async () => (await master.json<{ online: boolean }>('server', 'show', web.name)).online);
}, 300_000);

afterAll(async () => {
  await web.daemon?.stop('SIGKILL');
  await master.daemon?.stop('SIGKILL');
  cleanup(dir);
});

describe('Debian wordpress and mediawiki trees as platforms', () => {
  for (const p of PACKAGES) {
    it(`${p.pkg}: kind and core version match the package, and the agent's copy equals the master's byte for byte`, async () => {
      requirePackages();
      const add = await spoke('platform', 'add', p.pkg, '--path', nsPath(p), '--server', web.name, '--no-verify');
      expect(add.code, add.stdout + add.stderr).toBe(0);
      const t = await task('platform', 'verify', p.pkg);
      expect(t.state, JSON.stringify(t.error)).toBe('succeeded');
      expect(t.result?.servers.map((s) => s.server)).toEqual([web.name]);

      // kind and version: what the tree's own version file says, and what the package says
      const shown = await show(p.pkg);
      expect(shown.status).toBe('ready');
      const treeVersion = p.versionRe.exec(readFileSync(join(p.tree, p.versionFile), 'utf8'))?.[1];
      expect(treeVersion, `${p.versionFile} of the package declares no version`).toBeTruthy();
      expect(shown.registry?.kind).toBe(p.pkg);
      expect(shown.registry?.coreVersion).toBe(treeVersion);
      const pkgVersion = versions.get(p.pkg) as string;
      expect(treeVersion, `package version ${pkgVersion}`).toBe(upstreamOf(pkgVersion));
      // the only problems: Debian's links out of the tree, listed (kept as they are, never refused)
      const outside = [...linksOutOfTree(p.tree).keys()].sort();
      expect(outside.length).toBeGreaterThan(0);
      expect(shown.registry?.problems.map((x) => x.path).sort()).toEqual(outside);
      // the add-ons the package ships, with the versions their own files declare
      if (p.pkg === 'wordpress') {
        const v = /^\s*\*?\s*Version:\s*(\S+)/m.exec(readFileSync(join(p.tree, 'wp-content/plugins/akismet/akismet.php'), 'utf8'))?.[1];
        expect(shown.registry?.modules.find((m) => m.name === 'akismet')).toMatchObject({ type: 'plugin', version: v });
        const human = await spoke('platform', 'show', p.pkg);
        expect(human.stdout).toMatch(new RegExp(`^plugins: +akismet ${(v as string).replace(/\./g, '\\.')}`, 'm'));
      } else {
        const skins = readdirSync(join(p.tree, 'skins')).filter((d) => existsSync(join(p.tree, 'skins', d, 'skin.json')));
        expect(skins.length).toBeGreaterThan(0);
        expect(
          shown.registry?.themes
            .filter((t) => t.type === 'skin')
            .map((t) => t.name)
            .sort(),
        ).toEqual(skins.sort());
        const vector = JSON.parse(readFileSync(join(p.tree, 'skins/Vector/skin.json'), 'utf8')) as { version?: string };
        expect(shown.registry?.themes.find((t) => t.name === 'Vector')?.version).toBe(vector.version ?? null);
      }
      for (const pr of shown.registry?.problems ?? []) expect(pr.error, pr.path).toMatch(/^link to .+ points outside the platform/);

      // byte for byte: every path, type, mode, size, content and link target
      const want = listing(masterTree(p));
      const got = listing(agentTree(p));
      const diff = [...new Set([...want.keys(), ...got.keys()])].filter((k) => want.get(k) !== got.get(k));
      expect(diff.slice(0, 20).map((k) => `${k}: master ${want.get(k) ?? 'absent'}, agent ${got.get(k) ?? 'absent'}`)).toEqual([]);
      expect(got.size).toBe(want.size);
      // and the master's copy is the package's tree (cp -a kept every link as a link)
      expect(want).toEqual(listing(p.tree));
      expect(t.result?.files).toBe([...want.values()].filter((v) => v.startsWith('file ')).length);

      // Debian's links that point out of the tree arrived as links, with their targets verbatim
      const out = linksOutOfTree(p.tree);
      expect([...out.values()].some((x) => x.startsWith('/'))).toBe(true);
      for (const [rel, target] of out) {
        expect(lstatSync(join(agentTree(p), rel)).isSymbolicLink(), rel).toBe(true);
        expect(readlinkSync(join(agentTree(p), rel)), rel).toBe(target);
      }

      // links climbing out of the tree point at nothing on the agent, and nothing was created there
      for (const n of readdirSync(dirname(agentTree(p)))) {
        expect(n.startsWith('.spoke-staging-') || PACKAGES.some((q) => q.pkg === n), n).toBe(true);
      }

      // the agent reports what it holds: observed = desired
      await until(`${p.pkg} observed in sync`, async () => {
        const st = await master.json<{ desiredRootHash: string; servers: { observedRootHash: string | null; inSync: boolean }[] }>('platform', 'status', p.pkg);
        return st.servers[0]?.inSync === true && st.servers[0].observedRootHash === st.desiredRootHash;
      });
      // nothing was written where the absolute links point on this host
      for (const [target, before] of hostTargets) expect(snapshot(target), target).toBe(before);
    }, 300_000);
  }

  it('a linked directory that becomes a real one is replaced on the agent, never written through', async () => {
    requirePackages();
    const mw = PACKAGES.find((p) => p.pkg === 'mediawiki') as Pkg;
    const link = join(agentTree(mw), 'extensions');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    const target = readlinkSync(link);
    const before = snapshot(target);
    // the operator vendors an extension into the platform: extensions is now a real directory
    rmSync(join(masterTree(mw), 'extensions'));
    mkdirSync(join(masterTree(mw), 'extensions/SpokeTest'), { recursive: true });
    writeFileSync(join(masterTree(mw), 'extensions/SpokeTest/extension.json'), '{"name": "SpokeTest"}\n');
    // and retargets another absolute link
    rmSync(join(masterTree(mw), 'images'));
    execFileSync('ln', ['-s', '/srv/spoke-test/images', join(masterTree(mw), 'images')]);
    const t = await task('platform', 'verify', mw.pkg);
    expect(t.state, JSON.stringify(t.error)).toBe('succeeded');
    expect(t.result?.servers[0]?.filesFetched).toBe(1);
    expect(lstatSync(link).isDirectory()).toBe(true);
    expect(readFileSync(join(link, 'SpokeTest/extension.json'), 'utf8')).toContain('SpokeTest');
    expect(readlinkSync(join(agentTree(mw), 'images'))).toBe('/srv/spoke-test/images');
    expect(snapshot(target)).toBe(before);
    expect(existsSync('/srv/spoke-test')).toBe(false);
    expect(listing(agentTree(mw))).toEqual(listing(masterTree(mw)));
    // still the same MediaWiki
    expect((await show(mw.pkg)).registry).toMatchObject({ kind: 'mediawiki', coreVersion: upstreamOf(versions.get('mediawiki') as string) });
  }, 300_000);
});
