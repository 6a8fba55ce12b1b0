/**
 * Drupal/Aegir-style version strings and their order: `7.x-1.0`, `8.x-2.3-beta1`, `7.x-1.x-dev`,
 * `7.98`, `10.3.1`, `2.0.0-rc1`, `6.2-alpha-55081`. Stability ranks dev < unstable < alpha < beta
 * < rc < release. A version that cannot be parsed (or is empty) compares as unknown (null), and so
 * does a `.x` dev branch against a release on that same branch (e.g. `1.x-dev` vs `1.4`): which is
 * newer cannot be told from the strings.
 */

/** Stability levels, lowest first. */
export const STABILITIES = ['dev', 'unstable', 'alpha', 'beta', 'rc', 'release'] as const;
/** One stability level. */
export type Stability = (typeof STABILITIES)[number];

/** A parsed version. */
export interface ParsedVersion {
  /** The input, trimmed. */
  raw: string;
  /** Drupal core compatibility prefix (7 for `7.x-1.0`), or null when there is none. */
  core: number | null;
  /** Numeric parts; a trailing `'x'` marks a development branch (`1.x`). */
  parts: Array<number | 'x'>;
  /** Stability of this version; 'release' when there is no suffix. */
  stability: Stability;
  /** Number after the stability (`beta2` → 2), 0 when absent. */
  stabilityNumber: number;
}

/** The result of comparing two versions: -1 (a older), 0 (same), 1 (a newer), or null (unknown). */
export type VersionOrder = -1 | 0 | 1 | null;

const VERSION_RE = /^v?(?:(\d+)\.x-)?(\d+(?:\.\d+)*(?:\.x)?)(?:[-.]?(dev|unstable|alpha|beta|rc)(?:[-.]?(\d+))?)?(?:\+[0-9A-Za-z.-]*)?$/i;

/**
 * Parses a version string; returns null for anything empty or not version-shaped (such as
 * `VERSION`, `1.45.0-wmf.6` or a git hash).
 */
export function parseVersion(input: string | null | undefined): ParsedVersion | null {
  if (typeof input !== 'string') return null;
  const raw = input.trim();
  if (raw === '') return null;
  const m = VERSION_RE.exec(raw);
  if (!m) return null;
  const parts: Array<number | 'x'> = (m[2] ?? '').split('.').map((p) => (p === 'x' ? 'x' : Number(p)));
  if (parts.some((p) => p !== 'x' && !Number.isSafeInteger(p))) return null;
  const stability = (m[3]?.toLowerCase() as Stability | undefined) ?? 'release';
  return {
    raw,
    core: m[1] !== undefined ? Number(m[1]) : null,
    parts,
    stability,
    stabilityNumber: m[4] !== undefined ? Number(m[4]) : 0,
  };
}

function sign(n: number): -1 | 0 | 1 {
  return n < 0 ? -1 : n > 0 ? 1 : 0;
}

/**
 * Compares two parsed versions. The core prefix decides first when both have one; when only one
 * has it (`8.x-1.5` vs `1.6.0`), it is ignored. Missing numeric parts count as 0.
 */
export function compareParsed(a: ParsedVersion, b: ParsedVersion): VersionOrder {
  if (a.core !== null && b.core !== null && a.core !== b.core) return sign(a.core - b.core);
  const n = Math.max(a.parts.length, b.parts.length);
  for (let i = 0; i < n; i++) {
    const pa = a.parts[i] ?? 0;
    const pb = b.parts[i] ?? 0;
    if (pa === 'x' || pb === 'x') {
      if (pa === 'x' && pb === 'x') break;
      return null;
    }
    if (pa !== pb) return sign(pa - pb);
  }
  const sa = STABILITIES.indexOf(a.stability);
  const sb = STABILITIES.indexOf(b.stability);
  if (sa !== sb) return sign(sa - sb);
  return sign(a.stabilityNumber - b.stabilityNumber);
}

/**
 * Compares two version strings: -1 when `a` is older, 1 when newer, 0 when the same, and null when
 * either is missing/unparseable or the order cannot be known. Identical strings are always 0.
 */
export function compareVersions(a: string | null | undefined, b: string | null | undefined): VersionOrder {
  if (typeof a === 'string' && typeof b === 'string' && a.trim() !== '' && a.trim() === b.trim()) return 0;
  const pa = parseVersion(a);
  const pb = parseVersion(b);
  if (!pa || !pb) return null;
  return compareParsed(pa, pb);
}
