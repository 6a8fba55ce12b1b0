import { describe, expect, it } from 'vitest';
import { compareVersions, parseVersion } from './version.js';

describe('parseVersion', () => {
  it.each([
    ['7.x-1.0', { core: 7, parts: [1, 0], stability: 'release', stabilityNumber: 0 }],
    ['8.x-2.3-beta1', { core: 8, parts: [2, 3], stability: 'beta', stabilityNumber: 1 }],
    ['7.x-1.x-dev', { core: 7, parts: [1, 'x'], stability: 'dev', stabilityNumber: 0 }],
    ['7.x-dev', { core: null, parts: [7, 'x'], stability: 'dev', stabilityNumber: 0 }],
    ['1.2.3', { core: null, parts: [1, 2, 3], stability: 'release', stabilityNumber: 0 }],
    ['2.0.0-rc1', { core: null, parts: [2, 0, 0], stability: 'rc', stabilityNumber: 1 }],
    ['2.0.0-RC.2', { core: null, parts: [2, 0, 0], stability: 'rc', stabilityNumber: 2 }],
    ['6.x-2.0-unstable3', { core: 6, parts: [2, 0], stability: 'unstable', stabilityNumber: 3 }],
    ['6.2-alpha-55081', { core: null, parts: [6, 2], stability: 'alpha', stabilityNumber: 55081 }],
    ['v1.4.0+build.7', { core: null, parts: [1, 4, 0], stability: 'release', stabilityNumber: 0 }],
    [' 7.98 ', { raw: '7.98', core: null, parts: [7, 98], stability: 'release', stabilityNumber: 0 }],
  ])('%s', (input, expected) => {
    expect(parseVersion(input)).toMatchObject(expected);
  });

  it.each([[''], ['   '], [null], [undefined], ['VERSION'], ['1.45.0-wmf.6'], ['abc'], ['7.x-'], ['1..2'], ['1.x.2']])('unknown: %j', (input) => {
    expect(parseVersion(input)).toBeNull();
  });
});

describe('compareVersions', () => {
  // Each list is strictly increasing.
  const chains: string[][] = [
    [
      '7.x-1.0-unstable1',
      '7.x-1.0-alpha1',
      '7.x-1.0-alpha2',
      '7.x-1.0-beta1',
      '7.x-1.0-rc1',
      '7.x-1.0-rc2',
      '7.x-1.0',
      '7.x-1.1',
      '7.x-1.9',
      '7.x-1.10',
      '7.x-2.0-beta1',
      '7.x-2.0',
    ],
    ['2.0.0-dev', '2.0.0-unstable1', '2.0.0-alpha', '2.0.0-alpha1', '2.0.0-beta', '2.0.0-rc1', '2.0.0', '2.0.1', '2.1.0', '10.0.0'],
    ['7.x-3.24', '8.x-1.0', '8.x-1.13'],
    ['6.38', '7.9', '7.98', '7.100', '9.5.11', '10.3.1', '11.0.0-alpha1', '11.0.0'],
    ['6.2-alpha-55081', '6.2-beta1', '6.2', '6.4.2'],
    ['7.x-1.x-dev', '7.x-2.0'],
    ['7.x-1.5', '7.x-2.x-dev'],
  ];
  for (const chain of chains) {
    it(`orders ${chain.join(' < ')}`, () => {
      for (let i = 0; i < chain.length; i++) {
        for (let j = 0; j < chain.length; j++) {
          const expected = i < j ? -1 : i > j ? 1 : 0;
          expect(compareVersions(chain[i], chain[j]), `${chain[i]} vs ${chain[j]}`).toBe(expected);
        }
      }
    });
  }

  it.each([
    ['7.x-1.0', '7.x-1.0.0'],
    ['1.0', '1.0.0'],
    ['2.0.0-RC1', '2.0.0-rc1'],
    ['8.x-2.3', '2.3.0'],
    ['7.x-1.x-dev', '7.x-1.x-dev'],
    ['custom-build', 'custom-build'],
  ])('%s equals %s', (a, b) => {
    expect(compareVersions(a, b)).toBe(0);
    expect(compareVersions(b, a)).toBe(0);
  });

  it('ignores the core prefix when only one side has it', () => {
    expect(compareVersions('8.x-1.5', '2.0.0')).toBe(-1);
    expect(compareVersions('2.0.0', '8.x-1.5')).toBe(1);
  });

  it.each([
    ['', '7.x-1.0'],
    [null, '1.0'],
    ['1.0', undefined],
    ['VERSION', '7.98'],
    ['7.x-1.x-dev', '7.x-1.3'],
    ['7.x-dev', '7.98'],
    ['1.45.0-wmf.6', '1.45.0'],
    ['', ''],
    [null, null],
  ])('unknown: %j vs %j', (a, b) => {
    expect(compareVersions(a, b)).toBeNull();
    expect(compareVersions(b, a)).toBeNull();
  });
});
