/**
 * The add-ons of WordPress and MediaWiki platforms, for the registry (`platform show`, `platform
 * diff`), read as the applications themselves read them:
 * - WordPress plugins: `wp-content/plugins/<file>.php` and `wp-content/plugins/<dir>/<file>.php`
 *   whose header (first 8 KiB, as get_file_data reads) has `Plugin Name:`; `Version:` gives the
 *   version. Machine name: the directory (or the file name without `.php`), as WordPress' plugin
 *   slug. Must-use plugins (`wp-content/mu-plugins/*.php`) too, with their own type.
 * - WordPress themes: `wp-content/themes/<dir>/style.css` with `Theme Name:` (and `Version:`).
 * - MediaWiki extensions and skins: `extensions/<dir>/extension.json`, `skins/<dir>/skin.json`
 *   (`name`, `version`), as ExtensionRegistry reads them; a directory without one (an old-style
 *   extension loaded by a PHP entry point) is listed with no version.
 * Broken files are listed as problems; nothing here fails the scan.
 */
import type { Problem } from './detect.js';

/** File access the scan gives this module (cached by mtime/size in the registry scanner). */
export interface AddonIO {
  /** Names of subdirectories of `rel` (sorted; none when it does not exist). */
  subdirs(rel: string): Promise<string[]>;
  /** Names of regular files directly in `rel` (sorted). */
  files(rel: string): Promise<string[]>;
  /** The first `limit` bytes of a file as text (whole file without a limit); undefined when missing. */
  head(rel: string, limit?: number): Promise<string | undefined>;
}

/** One plugin, theme, extension or skin (the registry's Extension, without Drupal-only fields). */
export interface Addon {
  name: string;
  humanName: string;
  version: string | null;
  path: string;
  type: 'plugin' | 'mu-plugin' | 'theme' | 'extension' | 'skin';
}

/** How much of a PHP file WordPress reads for its header (get_file_data). */
const HEADER_BYTES = 8192;

/**
 * One header field as WordPress' get_file_data finds it: `Name:` at the start of a line after
 * optional whitespace, `*`, `#`, `@` or `//`; the value ends at the line's end (a closing `*\/`
 * or `?>` cut off), trimmed.
 */
export function wpHeader(text: string, field: string): string | null {
  const re = new RegExp(`^(?:[ \\t]*<\\?php)?[ \\t/*#@]*${field.replace(/ /g, '[ \\t]')}:(.*)$`, 'mi');
  const m = re.exec(text.replace(/\r\n?/g, '\n'));
  if (!m) return null;
  const v = (m[1] as string).replace(/\s*(?:\*\/|\?>).*$/, '').trim();
  return v === '' ? null : v;
}

async function wpPlugins(io: AddonIO, dir: string, type: 'plugin' | 'mu-plugin'): Promise<Addon[]> {
  const out: Addon[] = [];
  const fromFile = async (rel: string, name: string, path: string): Promise<boolean> => {
    const text = await io.head(rel, HEADER_BYTES);
    const human = text === undefined ? null : wpHeader(text, 'Plugin Name');
    if (!human) return false;
    out.push({ name, humanName: human, version: wpHeader(text as string, 'Version'), path, type });
    return true;
  };
  for (const f of await io.files(dir)) if (f.endsWith('.php')) await fromFile(`${dir}/${f}`, f.slice(0, -4), `${dir}/${f}`);
  if (type === 'plugin') {
    for (const d of await io.subdirs(dir)) {
      for (const f of await io.files(`${dir}/${d}`)) {
        if (f.endsWith('.php') && (await fromFile(`${dir}/${d}/${f}`, d, `${dir}/${d}`))) break;
      }
    }
  }
  return out;
}

async function wpThemes(io: AddonIO, problems: Problem[]): Promise<Addon[]> {
  const out: Addon[] = [];
  for (const d of await io.subdirs('wp-content/themes')) {
    const rel = `wp-content/themes/${d}/style.css`;
    const text = await io.head(rel, HEADER_BYTES);
    if (text === undefined) continue;
    const human = wpHeader(text, 'Theme Name');
    if (!human) {
      problems.push({ path: rel, error: 'no "Theme Name:" header; WordPress does not offer this theme' });
      continue;
    }
    out.push({ name: d, humanName: human, version: wpHeader(text, 'Version'), path: `wp-content/themes/${d}`, type: 'theme' });
  }
  return out;
}

async function mwAddons(io: AddonIO, dir: 'extensions' | 'skins', problems: Problem[]): Promise<Addon[]> {
  const type = dir === 'extensions' ? 'extension' : 'skin';
  const file = dir === 'extensions' ? 'extension.json' : 'skin.json';
  const out: Addon[] = [];
  for (const d of await io.subdirs(dir)) {
    const rel = `${dir}/${d}/${file}`;
    const text = await io.head(rel);
    if (text === undefined) {
      out.push({ name: d, humanName: d, version: null, path: `${dir}/${d}`, type });
      continue;
    }
    let j: unknown;
    try {
      j = JSON.parse(text);
    } catch (e) {
      problems.push({ path: rel, error: `invalid JSON: ${e instanceof Error ? e.message : String(e)}` });
      continue;
    }
    const o = j !== null && typeof j === 'object' && !Array.isArray(j) ? (j as Record<string, unknown>) : {};
    const str = (k: string): string | null => (typeof o[k] === 'string' && (o[k] as string).trim() !== '' ? (o[k] as string).trim() : null);
    out.push({ name: d, humanName: str('name') ?? d, version: str('version'), path: `${dir}/${d}`, type });
  }
  return out;
}

/**
 * The add-ons of a WordPress or MediaWiki platform: `modules` (plugins, must-use plugins,
 * extensions) and `themes` (themes, skins). Empty for other kinds.
 */
export async function scanAddons(kind: string, io: AddonIO): Promise<{ modules: Addon[]; themes: Addon[]; problems: Problem[] }> {
  const problems: Problem[] = [];
  if (kind === 'wordpress') {
    const modules = [...(await wpPlugins(io, 'wp-content/plugins', 'plugin')), ...(await wpPlugins(io, 'wp-content/mu-plugins', 'mu-plugin'))];
    return { modules, themes: await wpThemes(io, problems), problems };
  }
  if (kind === 'mediawiki') {
    return { modules: await mwAddons(io, 'extensions', problems), themes: await mwAddons(io, 'skins', problems), problems };
  }
  return { modules: [], themes: [], problems };
}
