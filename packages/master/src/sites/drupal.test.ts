import { describe, expect, it } from 'vitest';
import { checkLocale, chooseProfile, describeUpdates } from './drupal.js';

const prof = (...names: string[]) => names.map((name) => ({ name, humanName: name, version: null, hidden: false as const, path: `profiles/${name}` }));

describe('chooseProfile', () => {
  it.each([
    // [what, profiles offered, hidden, distribution profile, asked, chosen]
    ['standard by default', ['minimal', 'standard'], [], null, undefined, 'standard'],
    ["the distribution's profile first", ['commerce_kickstart', 'minimal', 'standard'], [], 'commerce_kickstart', undefined, 'commerce_kickstart'],
    ['the only one offered when standard is hidden (Pantheon drops-7)', ['pantheon'], ['minimal', 'standard', 'testing'], null, undefined, 'pantheon'],
    ['a named one', ['minimal', 'standard'], [], null, 'minimal', 'minimal'],
    ['a hidden one, when named', ['pantheon'], ['minimal', 'standard', 'testing'], null, 'standard', 'standard'],
  ])('%s', (_what, offered, hidden, dist, asked, chosen) => {
    const r = { profiles: prof(...offered), hiddenProfiles: hidden, distribution: dist ? { name: dist, version: null, profile: dist } : null };
    expect(chooseProfile('d', r, asked)).toBe(chosen);
  });

  it('refuses an unknown profile naming the ones there are, hidden ones apart', () => {
    const r = { profiles: prof('pantheon'), hiddenProfiles: ['minimal', 'standard'], distribution: null };
    expect(() => chooseProfile('d7', r, 'umami')).toThrow(
      'platform d7 has no install profile umami: it has pantheon (hidden, install only when named: minimal, standard)',
    );
    expect(() => chooseProfile('d7', r, 'umami')).toThrow(expect.objectContaining({ code: 'PROFILE_NOT_FOUND' }));
  });

  it('a registry from before hidden profiles were recorded says to verify the platform', () => {
    const r = { profiles: prof('pantheon'), distribution: null };
    expect(() => chooseProfile('d7', r, 'standard')).toThrow(/verify the platform first \(spoke platform verify d7\)$/);
  });

  it('refuses to guess between several profiles without standard', () => {
    const r = { profiles: prof('a', 'b'), hiddenProfiles: [], distribution: null };
    expect(() => chooseProfile('x', r, undefined)).toThrow('platform x offers no default install profile: it has a, b; choose one with --profile NAME');
  });
});

describe('checkLocale and describeUpdates', () => {
  it('takes language codes only', () => {
    expect(checkLocale('en')).toBe('en');
    expect(checkLocale('pt-br')).toBe('pt-br');
    for (const bad of ['', 'EN', 'en_US', 'en; x', 'english']) expect(() => checkLocale(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('one line per update, cut after max', () => {
    const u = (n: number) => ({ module: 'm', update: String(n), description: n === 1 ? 'x'.repeat(200) : '' });
    expect(describeUpdates([u(1), u(2), u(3)], 2)).toEqual([`m 1: ${'x'.repeat(117)}...`, 'm 2', '... and 1 more']);
  });
});
