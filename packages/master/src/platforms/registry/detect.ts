/**
 * Tells what kind of codebase a directory holds (Drupal 6, 7, 8+, WordPress, MediaWiki, or
 * generic) and its core version, from a handful of marker files. Each kind needs its version file
 * *and* structural companions, so a stray file does not fool detection.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** What kind of codebase a platform is. `drupal8` covers Drupal 8 through 11+. */
export type PlatformKind = 'drupal6' | 'drupal7' | 'drupal8' | 'wordpress' | 'mediawiki' | 'generic';

/** Something wrong with one file, reported instead of failing the whole scan. */
export interface Problem {
  /** Path relative to the platform root. */
  path: string;
  /** One-line description. */
  error: string;
}

/** What detection found. */
export interface Detection {
  kind: PlatformKind;
  /** Core version as written in the code (`7.98`, `10.3.1`, `6.4.2`), or null when unreadable. */
  coreVersion: string | null;
  /** Marker files that looked wrong (e.g. a Drupal.php without the rest of core). */
  problems: Problem[];
}

/**
 * File access used by detection, so the registry scanner can serve it from its cache. `extract`
 * reads a file (relative path) and returns the first capture group of `pattern` (trimmed), null when
 * the pattern does not match, or undefined when the file does not exist or cannot be read.
 */
export interface DetectIO {
  exists(rel: string): Promise<boolean>;
  extract(rel: string, pattern: RegExp): Promise<string | null | undefined>;
}

/** The first capture group of `pattern` in `text`, trimmed, or null. */
export function captureFirst(text: string, pattern: RegExp): string | null {
  return pattern.exec(text)?.[1]?.trim() ?? null;
}

/** A DetectIO reading straight from disk under `root`. */
export function diskIO(root: string): DetectIO {
  return {
    async exists(rel) {
      try {
        await stat(join(root, rel));
        return true;
      } catch {
        return false;
      }
    },
    async extract(rel, pattern) {
      try {
        return captureFirst(await readFile(join(root, rel), 'utf8'), pattern);
      } catch {
        return undefined;
      }
    },
  };
}

const Q = `['"]`;
/** `define('VERSION', '7.98');` (any quotes/spacing), capturing the value. */
const DEFINE_VERSION = new RegExp(`define\\(\\s*${Q}VERSION${Q}\\s*,\\s*${Q}([^'"]+)${Q}\\s*\\)`);
/** `const VERSION = '10.3.1';` in core/lib/Drupal.php. */
const CONST_VERSION = new RegExp(`const\\s+VERSION\\s*=\\s*${Q}([^'"]+)${Q}\\s*;`);
/** `$wp_version = '6.4.2';` in wp-includes/version.php. */
const WP_VERSION = new RegExp(`\\$wp_version\\s*=\\s*${Q}([^'"]+)${Q}\\s*;`);
/** `define( 'MW_VERSION', '1.39.5' );` in includes/Defines.php (MediaWiki 1.35+ and backports). */
const MW_VERSION = new RegExp(`define\\(\\s*${Q}MW_VERSION${Q}\\s*,\\s*${Q}([^'"]+)${Q}\\s*\\)`);
/** `$wgVersion = '1.31.0';` in includes/DefaultSettings.php (older MediaWiki). */
const WG_VERSION = new RegExp(`\\$wgVersion\\s*=\\s*${Q}([^'"]+)${Q}\\s*;`);

async function anyExists(io: DetectIO, rels: string[]): Promise<boolean> {
  for (const rel of rels) if (await io.exists(rel)) return true;
  return false;
}

/**
 * Detects the platform kind and core version of the tree at `root`.
 * Drupal 8+: core/lib/Drupal.php `const VERSION` (major ≥ 8) plus core/core.services.yml or
 * core/modules/system/system.info.yml. Drupal 7: includes/bootstrap.inc `define('VERSION', '7.…')`
 * plus modules/system/system.info and system.module. Drupal 6: modules/system/system.module
 * `define('VERSION', '6.…')` plus system.info and includes/bootstrap.inc. WordPress:
 * wp-includes/version.php `$wp_version` plus wp-load.php and wp-settings.php. MediaWiki:
 * includes/Defines.php `MW_VERSION` (or includes/DefaultSettings.php `$wgVersion`) plus index.php
 * or api.php. Anything else is generic.
 */
export async function detectPlatform(root: string, io: DetectIO = diskIO(root)): Promise<Detection> {
  const problems: Problem[] = [];

  // Drupal 8 and later.
  const d8 = await io.extract('core/lib/Drupal.php', CONST_VERSION);
  if (d8 !== undefined) {
    const major = d8 ? Number.parseInt(d8, 10) : NaN;
    const structural = await anyExists(io, ['core/core.services.yml', 'core/modules/system/system.info.yml']);
    if (!structural) {
      problems.push({
        path: 'core/lib/Drupal.php',
        error: 'found, but core/core.services.yml and core/modules/system/system.info.yml are missing: not treated as Drupal',
      });
    } else if (d8 === null) {
      problems.push({ path: 'core/lib/Drupal.php', error: 'no "const VERSION = …;" found: core version unknown' });
      return { kind: 'drupal8', coreVersion: null, problems };
    } else if (major >= 8) {
      return { kind: 'drupal8', coreVersion: d8, problems };
    } else {
      problems.push({ path: 'core/lib/Drupal.php', error: `VERSION ${d8} is not Drupal 8 or later: not treated as Drupal` });
    }
  }

  // Drupal 7: VERSION lives in includes/bootstrap.inc.
  const d7 = await io.extract('includes/bootstrap.inc', DEFINE_VERSION);
  if (d7 && d7.startsWith('7.')) {
    if (await allExist(io, ['modules/system/system.info', 'modules/system/system.module'])) {
      return { kind: 'drupal7', coreVersion: d7, problems };
    }
    problems.push({
      path: 'includes/bootstrap.inc',
      error: 'defines a Drupal 7 VERSION, but modules/system/system.info or system.module is missing: not treated as Drupal',
    });
  }

  // Drupal 6: VERSION lives in modules/system/system.module.
  const d6 = await io.extract('modules/system/system.module', DEFINE_VERSION);
  if (d6 && d6.startsWith('6.')) {
    if (await allExist(io, ['modules/system/system.info', 'includes/bootstrap.inc'])) {
      return { kind: 'drupal6', coreVersion: d6, problems };
    }
    problems.push({
      path: 'modules/system/system.module',
      error: 'defines a Drupal 6 VERSION, but modules/system/system.info or includes/bootstrap.inc is missing: not treated as Drupal',
    });
  }

  // WordPress.
  const wp = await io.extract('wp-includes/version.php', WP_VERSION);
  if (wp !== undefined) {
    if (await allExist(io, ['wp-load.php', 'wp-settings.php'])) {
      if (wp === null) problems.push({ path: 'wp-includes/version.php', error: 'no "$wp_version = …;" found: version unknown' });
      return { kind: 'wordpress', coreVersion: wp, problems };
    }
    problems.push({
      path: 'wp-includes/version.php',
      error: 'found, but wp-load.php or wp-settings.php is missing: not treated as WordPress',
    });
  }

  // MediaWiki (upstream tarball layout; Debian's /usr/share/mediawiki is the same tree).
  const mwDefines = await io.extract('includes/Defines.php', MW_VERSION);
  const mwOld = mwDefines ? null : await io.extract('includes/DefaultSettings.php', WG_VERSION);
  const mw = mwDefines ?? mwOld ?? null;
  if (mw) {
    if (await anyExists(io, ['index.php', 'api.php'])) return { kind: 'mediawiki', coreVersion: mw, problems };
    problems.push({
      path: mwDefines ? 'includes/Defines.php' : 'includes/DefaultSettings.php',
      error: 'defines a MediaWiki version, but index.php and api.php are missing: not treated as MediaWiki',
    });
  }

  return { kind: 'generic', coreVersion: null, problems };
}

async function allExist(io: DetectIO, rels: string[]): Promise<boolean> {
  for (const rel of rels) if (!(await io.exists(rel))) return false;
  return true;
}
