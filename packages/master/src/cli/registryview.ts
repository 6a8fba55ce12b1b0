/**
 * How `platform show` names a registry's add-ons: Drupal's modules and themes, WordPress'
 * plugins and themes, MediaWiki's extensions and skins (each listed with its version).
 */

interface RegistryView {
  kind: string;
  modules: { name: string; version: string | null; type: string }[];
  themes: { name: string; version: string | null; type: string }[];
}

/** What the two lists are called for a platform kind. */
export function addonNouns(kind: string): [string, string] {
  return kind === 'wordpress' ? ['plugins', 'themes'] : kind === 'mediawiki' ? ['extensions', 'skins'] : ['modules', 'themes'];
}

/**
 * Rows for `platform show` listing a WordPress or MediaWiki platform's add-ons with their versions
 * (`akismet 5.0.2, hello 1.7.2`; `-` when none is declared). None for other kinds: a Drupal
 * platform's modules run to hundreds (`-o json` has them).
 */
export function addonRows(json: string): [string, string][] {
  if (!json) return [];
  const r = JSON.parse(json) as RegistryView;
  if (r.kind !== 'wordpress' && r.kind !== 'mediawiki') return [];
  const [mods, themes] = addonNouns(r.kind);
  const list = (xs: RegistryView['modules']) =>
    xs.map((x) => `${x.name} ${x.version ?? '-'}${x.type === 'mu-plugin' ? ' (must-use)' : ''}`).join(', ') || 'none';
  return [
    [mods, list(r.modules)],
    [themes, list(r.themes)],
  ];
}
