import { describe, expect, it } from 'vitest';
import { expectCode } from '../testkit.js';
import { checkEntryPath, checkLinkTarget, checkSymlinkTarget, comparePaths, nameProblem } from './paths.js';

describe('checkEntryPath', () => {
  it.each([
    ['a', 'a'],
    ['a/b/c.php', 'a/b/c.php'],
    ['./a/b', 'a/b'],
    ['dir/', 'dir'],
    ['.', ''],
    ['./', ''],
    ['with space/é/日本.txt', 'with space/é/日本.txt'],
    ['.htaccess', '.htaccess'],
    ['..foo', '..foo'],
  ])('accepts %j as %j', (input, want) => {
    expect(checkEntryPath(input)).toBe(want);
  });

  it.each([
    ['/etc/passwd'],
    ['../x'],
    ['a/../../x'],
    ['a/..'],
    ['a/./b'],
    ['a//b'],
    ['a\u0000b'],
    ['a\\..\\..\\x'],
    ['C:/x'],
    ['new\nline'],
    ['x'.repeat(256)],
    [`${'d/'.repeat(2100)}f`],
  ])('refuses %j', (input) => {
    expectCode(() => checkEntryPath(input), 'ARCHIVE_UNSAFE');
  });

  it('counts name length in UTF-8 bytes', () => {
    expect(nameProblem('é'.repeat(127))).toBeUndefined(); // 254 bytes
    expect(nameProblem('é'.repeat(128))).toMatch(/longer/); // 256 bytes
  });
});

describe('checkSymlinkTarget', () => {
  it.each([
    ['l', 'target'],
    ['l', './target'],
    ['d/l', '../x'],
    ['d/l', '..'],
    ['d/e/l', '../../vendor/bin/x'],
    ['l', 'dir/'],
  ])('accepts %j -> %j', (link, target) => {
    expect(checkSymlinkTarget(link, target)).toBe(target);
  });

  it.each([
    ['l', '/etc'],
    ['l', ''],
    ['l', '..'],
    ['a', '../../..'],
    ['d/l', '../../x'],
    ['d/l', 'x/../..'], // '..' after a name: lexical checks lie when x is a symlink
    ['d/l', 'x/l1/..'],
    ['l', 'a\\b'],
    ['l', 'a\nb'],
  ])('refuses %j -> %j', (link, target) => {
    expectCode(() => checkSymlinkTarget(link, target), 'ARCHIVE_UNSAFE');
  });
});

describe('checkLinkTarget (manifests: links are kept, never followed)', () => {
  it.each([
    ['l', 'target'],
    ['.htaccess', '/etc/wordpress/htaccess'],
    ['wp-includes/js/underscore.js', '../../../javascript/underscore/underscore.js'],
    ['extensions', '/var/lib/mediawiki/extensions'],
    ['l', '..'],
    ['d/l', 'x/../..'],
    ['l', 'dir/'],
  ])('keeps %j -> %j', (link, target) => {
    expect(checkLinkTarget(link, target)).toBe(target);
  });

  it.each([
    ['l', ''],
    ['l', 'a\\b'],
    ['l', 'a\nb'],
    ['l', '\u007f'],
    ['l', `/${'x'.repeat(4095)}`],
  ])('refuses %j -> %j', (link, target) => {
    expectCode(() => checkLinkTarget(link, target), 'ARCHIVE_UNSAFE');
  });
});

describe('comparePaths', () => {
  it('orders by UTF-8 bytes, parents before children', () => {
    const paths = ['b', 'a/b', 'a b', 'a', '\u{1F600}', '\uFF5E', 'é', 'Z', 'a-b'];
    const sorted = [...paths].sort(comparePaths);
    const byBytes = [...paths].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect(sorted).toEqual(byBytes);
    expect(sorted.indexOf('a')).toBeLessThan(sorted.indexOf('a/b'));
  });
});
