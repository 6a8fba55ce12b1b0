/**
 * Compares two registries the way an operator does before migrating sites from platform A to B:
 * per module/theme/profile, is B's copy an upgrade, a downgrade, the same, missing, added, or
 * unknown; and how do core versions and schema versions compare.
 */
import type { PlatformKind } from './detect.js';
import type { Extension, Registry } from './registry.js';
import { compareVersions } from './version.js';

/** How an item changes from A to B. */
export type DiffStatus = 'upgrade' | 'downgrade' | 'missing' | 'added' | 'same' | 'unknown';

/** How a schema version (highest hook_update_N) changes from A to B. */
export type SchemaStatus = 'upgrade' | 'downgrade' | 'same' | 'unknown';

/** One module, theme or profile compared across the two platforms. */
export interface DiffEntry {
  name: string;
  /** Extension type in B when present there, else in A. */
  type: Extension['type'];
  /** Version in A (null when absent or unknown). */
  from: string | null;
  /** Version in B (null when absent or unknown). */
  to: string | null;
  status: DiffStatus;
  schemaFrom: number | null;
  schemaTo: number | null;
  /** 'downgrade' means sites with A's schema cannot safely move to B's code. */
  schema: SchemaStatus;
  /** Path in A / B, for the operator. */
  pathFrom: string | null;
  pathTo: string | null;
}

/** The full comparison. */
export interface RegistryDiff {
  core: { kindFrom: PlatformKind; kindTo: PlatformKind; from: string | null; to: string | null; status: DiffStatus };
  modules: DiffEntry[];
  themes: DiffEntry[];
  profiles: DiffEntry[];
  /** Count of entries per status across modules, themes and profiles. */
  summary: Record<DiffStatus, number>;
  /** Entries whose schema goes down (from modules), the usual migrate blocker. */
  schemaDowngrades: string[];
}

/**
 * Versions compared: equal strings are 'same'; a missing or unparseable version on either side,
 * or an order that cannot be known (`1.x-dev` vs `1.3`), is 'unknown'.
 */
export function versionStatus(from: string | null, to: string | null): Exclude<DiffStatus, 'missing' | 'added'> {
  if (from === null || to === null) return 'unknown';
  const c = compareVersions(from, to);
  return c === null ? 'unknown' : c < 0 ? 'upgrade' : c > 0 ? 'downgrade' : 'same';
}

function isDrupal(kind: PlatformKind): boolean {
  return kind === 'drupal6' || kind === 'drupal7' || kind === 'drupal8';
}

function schemaStatus(from: number | null, to: number | null): SchemaStatus {
  if (from === null || to === null) return from === to ? 'same' : 'unknown';
  return from < to ? 'upgrade' : from > to ? 'downgrade' : 'same';
}

/**
 * Rank of where an extension lives; the higher rank wins when a machine name appears twice, as
 * in Drupal (core < profile < top-level modules/themes (D8+) < sites/all).
 */
function precedence(path: string, kind: PlatformKind): number {
  if (path.startsWith('core/')) return 0;
  if (kind !== 'drupal8' && (path.startsWith('modules/') || path.startsWith('themes/'))) return 0;
  if (path.startsWith('profiles/')) return 1;
  if (path.startsWith('sites/all/')) return 3;
  return 2;
}

/** The copy of each platform-wide extension that Drupal would use, keyed by machine name. */
export function effectiveExtensions(list: Extension[], kind: PlatformKind): Map<string, Extension> {
  const out = new Map<string, Extension>();
  for (const ext of list) {
    if (ext.site !== null) continue;
    const cur = out.get(ext.name);
    if (!cur || precedence(ext.path, kind) > precedence(cur.path, kind)) out.set(ext.name, ext);
  }
  return out;
}

interface Comparable {
  name: string;
  type: Extension['type'];
  version: string | null;
  schemaVersion: number | null;
  path: string;
}

function diffMaps(a: Map<string, Comparable>, b: Map<string, Comparable>): DiffEntry[] {
  const names = [...new Set([...a.keys(), ...b.keys()])].sort();
  return names.map((name) => {
    const x = a.get(name);
    const y = b.get(name);
    const status: DiffStatus = !y ? 'missing' : !x ? 'added' : versionStatus(x.version, y.version);
    const schemaFrom = x?.schemaVersion ?? null;
    const schemaTo = y?.schemaVersion ?? null;
    return {
      name,
      type: (y ?? x)!.type,
      from: x?.version ?? null,
      to: y?.version ?? null,
      status,
      schemaFrom,
      schemaTo,
      schema: x && y ? schemaStatus(schemaFrom, schemaTo) : 'unknown',
      pathFrom: x?.path ?? null,
      pathTo: y?.path ?? null,
    };
  });
}

/**
 * Compares registry `a` (where sites are now) with `b` (where they would go). Only platform-wide
 * extensions are compared (site-specific ones move with their site); when a machine name exists
 * twice, the copy Drupal would load is used.
 */
export function diffRegistries(a: Registry, b: Registry): RegistryDiff {
  const profileMap = (r: Registry): Map<string, Comparable> =>
    new Map(r.profiles.map((p) => [p.name, { name: p.name, type: 'profile' as const, version: p.version, schemaVersion: null, path: p.path }]));
  const modules = diffMaps(effectiveExtensions(a.modules, a.kind), effectiveExtensions(b.modules, b.kind));
  const themes = diffMaps(effectiveExtensions(a.themes, a.kind), effectiveExtensions(b.themes, b.kind));
  const profiles = diffMaps(profileMap(a), profileMap(b));
  const summary: Record<DiffStatus, number> = { upgrade: 0, downgrade: 0, missing: 0, added: 0, same: 0, unknown: 0 };
  for (const e of [...modules, ...themes, ...profiles]) summary[e.status]++;
  return {
    core: {
      kindFrom: a.kind,
      kindTo: b.kind,
      from: a.coreVersion,
      to: b.coreVersion,
      // Versions of different products (WordPress vs Drupal) do not compare; Drupal 7 vs 10 does.
      status: a.kind !== b.kind && !(isDrupal(a.kind) && isDrupal(b.kind)) ? 'unknown' : versionStatus(a.coreVersion, b.coreVersion),
    },
    modules,
    themes,
    profiles,
    summary,
    schemaDowngrades: modules.filter((m) => m.schema === 'downgrade').map((m) => m.name),
  };
}
