/**
 * A platform's registry on the master: parsed from its canonical tree on a verify (kind, core
 * version, profiles, modules, themes, sites on disk), and parsed again only when a file it is
 * read from changed; links that leave the tree are listed among its problems.
 */
import { checkSymlinkTarget, type Manifest } from '@spoke/shared';
import type { Namespace } from '../namespace/namespace.js';
import type { TaskContext } from '../tasks/engine.js';
import type { PlatformInfo } from '../types.js';
import { scanPlatformCached, type Registry, type ScanCache } from './registry/index.js';
import type { TreeStore } from './trees.js';

/** Files the registry is read from (see platform/registry.ts and platform/detect.ts). */
const REGISTRY_FILES =
  /(^|\/)([^/]+\.(info|info\.yml|install|profile|module)|composer\.json|settings\.php|wp-config\.php|version\.php|Defines\.php|DefaultSettings\.php|bootstrap\.inc|Drupal\.php|core\.services\.yml|wp-load\.php|wp-settings\.php|index\.php|api\.php|style\.css|extension\.json|skin\.json)$|^wp-content\/(mu-)?plugins\/[^/]+(\/[^/]+)?\.php$/;

/** Keeps each platform's registry current (PlatformSync owns one). */
export class RegistryScanner {
  private readonly ns: Namespace;
  private readonly trees: TreeStore;
  /** Parsed info files per platform path, so a re-verify parses only what changed. */
  private readonly scanCaches = new Map<string, ScanCache>();
  /** The tree root hash each stored registry was parsed from. */
  private readonly registryRoots = new Map<string, string>();

  constructor(deps: { ns: Namespace; trees: TreeStore }) {
    this.ns = deps.ns;
    this.trees = deps.trees;
  }

  /** Brings the platform's stored registry up to `manifest` (a verify's tree), parsing only when needed. */
  async update(ctx: TaskContext, p: PlatformInfo, manifest: Manifest): Promise<void> {
    if (p.registryJson && (await this.registryUnaffected(p, manifest.rootHash))) this.registryRoots.set(p.path, manifest.rootHash);
    if (this.registryRoots.get(p.path) !== manifest.rootHash || !p.registryJson) {
      await this.scanRegistry(ctx, p, manifest);
      this.registryRoots.set(p.path, manifest.rootHash);
    }
  }

  /**
   * True when nothing the registry is read from changed since it was parsed: no info, install,
   * profile, version or settings file among the paths that differ. Unknown history → false.
   */
  private async registryUnaffected(p: PlatformInfo, rootHash: string): Promise<boolean> {
    const base = this.registryRoots.get(p.path);
    if (!base || base === rootHash) return base === rootHash;
    const d = await this.trees.delta(p.path, p.excludes, base);
    if (!d) return false;
    // A link added, changed or removed may change the outside links listed among its problems.
    if (d.upserts.some((e) => e.type === 'symlink')) return false;
    const listed = new Set(p.registryJson ? (JSON.parse(p.registryJson) as Registry).problems.map((x) => x.path) : []);
    return ![...d.upserts.map((e) => e.path), ...d.removed].some((path) => REGISTRY_FILES.test(path) || listed.has(path));
  }

  /**
   * Parses the platform into its registry (kind, core version, profiles, modules, themes, sites);
   * links of the tree that point outside it are listed among its problems (an existing tree keeps
   * them, a build refuses them).
   */
  private async scanRegistry(ctx: TaskContext, p: PlatformInfo, manifest: Manifest): Promise<void> {
    const t0 = Date.now();
    const r = await scanPlatformCached(this.trees.hostPath(p.path), { previous: this.scanCaches.get(p.path) });
    this.scanCaches.set(p.path, r.cache);
    const reg = r.registry;
    reg.problems = [...reg.problems, ...outsideLinks(manifest)].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    this.ns.setRegistry(p.name, JSON.stringify(reg));
    const dist = reg.distribution ? `, distribution ${reg.distribution.name} ${reg.distribution.version ?? ''}`.trimEnd() : '';
    ctx.log(
      `${p.name}: ${reg.kind}${reg.coreVersion ? ` ${reg.coreVersion}` : ''}${dist}; ${reg.profiles.length} profiles, ${reg.modules.length} modules, ${reg.themes.length} themes, ${reg.sites.length} sites on disk (${Date.now() - t0} ms)`,
    );
    for (const pr of reg.problems.slice(0, 20)) ctx.log(`${p.name}: ${pr.path}: ${pr.error}`, 'warn');
    const known = new Set(this.ns.listSites(p.name).map((x) => x.domain));
    const strangers = reg.sites.filter((d) => !known.has(d));
    if (strangers.length)
      ctx.log(`${p.name}: sites on disk not in Spoke: ${strangers.join(', ')} (import them: spoke site import DOMAIN --platform ${p.name})`, 'warn');
  }
}

/** Symlinks of a tree whose target leaves it (absolute, or climbing above its root), as registry problems. */
export function outsideLinks(manifest: Manifest): { path: string; error: string }[] {
  const out: { path: string; error: string }[] = [];
  for (const e of manifest.entries) {
    if (e.type !== 'symlink' || e.target === undefined) continue;
    try {
      checkSymlinkTarget(e.path, e.target);
    } catch {
      out.push({ path: e.path, error: `link to ${e.target} points outside the platform (kept as it is; a build would refuse it)` });
    }
  }
  return out;
}
