/**
 * What the master decides for Drupal sites before an agent runs anything: which install profile a
 * new site gets (checked against the platform's registry), the locale, and how pending database
 * updates read in a task log. Pure functions; the agents run Drupal's own code (their site tool).
 */
import { fail } from '@spoke/shared';
import type { Registry } from '../platforms/registry/index.js';

/** Drupal kinds Spoke installs unattended (Drupal 6 is attempted and refused by the agent with its PHP version). */
export const DRUPAL_KINDS: ReadonlySet<string> = new Set(['drupal6', 'drupal7', 'drupal8']);

/**
 * The install profile for a new site on a platform. Named: it must be one of the platform's
 * profiles, hidden ones included (as drush and install.php?profile= allow). Not named: the
 * distribution's profile, else `standard` when it is offered, else the only profile offered, as
 * Drupal's installer itself picks.
 * @throws SpokeError PROFILE_NOT_FOUND (naming the profiles there are), PLATFORM_NOT_VERIFIED
 */
export function chooseProfile(platform: string, r: Pick<Registry, 'profiles' | 'distribution' | 'hiddenProfiles'>, requested: string | undefined): string {
  const visible = r.profiles.map((p) => p.name);
  const hidden = r.hiddenProfiles ?? [];
  const all = [...new Set([...visible, ...hidden])].sort();
  const listing = () =>
    all.length === 0
      ? 'it has none'
      : `it has ${visible.length ? visible.join(', ') : 'none offered'}${hidden.length ? ` (hidden, install only when named: ${hidden.join(', ')})` : ''}`;
  if (requested) {
    if (all.includes(requested)) return requested;
    const stale = r.hiddenProfiles === undefined ? `; if it is hidden, verify the platform first (spoke platform verify ${platform})` : '';
    throw fail('PROFILE_NOT_FOUND', `platform ${platform} has no install profile ${requested}: ${listing()}${stale}`);
  }
  if (r.distribution && visible.includes(r.distribution.profile)) return r.distribution.profile;
  if (visible.includes('standard')) return 'standard';
  if (visible.length === 1) return visible[0] as string;
  throw fail('PROFILE_NOT_FOUND', `platform ${platform} offers no default install profile: ${listing()}; choose one with --profile NAME`);
}

/** A Drupal langcode as the installer takes it. @throws SpokeError INVALID_ARGUMENT */
export function checkLocale(locale: string): string {
  if (!/^[a-z]{2,3}(-[a-z0-9]{2,8})?$/.test(locale))
    throw fail('INVALID_ARGUMENT', `locale ${JSON.stringify(locale)} is not a Drupal language code such as en, de or pt-br`);
  return locale;
}

/** Pending database updates as one line each, for a task log. */
export function describeUpdates(list: ReadonlyArray<{ module: string; update: string; description: string }>, max = 20): string[] {
  const lines = list
    .slice(0, max)
    .map((u) => `${u.module} ${u.update}${u.description ? `: ${u.description.length > 120 ? `${u.description.slice(0, 117)}...` : u.description}` : ''}`);
  if (list.length > max) lines.push(`... and ${list.length - max} more`);
  return lines;
}
