import { describe, expect, it } from 'vitest';
import { isSpokeError } from '../errors.js';
import { compileExcludes, DEFAULT_EXCLUDES } from './exclude.js';

describe('compileExcludes', () => {
  const cases: Array<[pattern: string, path: string, matches: boolean]> = [
    ['**/.git', '.git', true],
    ['**/.git', 'modules/x/.git', true],
    ['**/.git', '.gitignore', false],
    ['**/.git', 'a.git', false],
    ['sites/*/files', 'sites/default/files', true],
    ['sites/*/files', 'sites/example.com/files', true],
    ['sites/*/files', 'sites/files', false],
    ['sites/*/files', 'sites/a/b/files', false],
    ['sites/*/files', 'web/sites/default/files', false],
    ['*.log', 'error.log', true],
    ['*.log', 'logs/error.log', false],
    ['**/*.log', 'logs/error.log', true],
    ['**/*.log', 'error.log', true],
    ['cache/**', 'cache/a/b', true],
    ['cache/**', 'cache', false],
    ['a/**/z', 'a/z', true],
    ['a/**/z', 'a/b/c/z', true],
    ['a/**/z', 'a/b/c/zz', false],
    ['*', '.hidden', true],
    ['*', 'a/b', false],
    ['**', 'a/b', true],
    ['/tmp', 'tmp', true],
    ['a.b', 'axb', false], // '.' is literal
    ['(x)+', '(x)+', true],
    ['日本/*', '日本/x', true],
  ];
  it.each(cases)('%j on %j → %j', (pattern, path, matches) => {
    expect(compileExcludes([pattern]).matchesSelf(path)).toBe(matches);
  });

  it('excludes() also looks at parents, for watcher events', () => {
    const m = compileExcludes(DEFAULT_EXCLUDES);
    expect(m.excludes('sites/default/files/a/b.jpg')).toBe(true);
    expect(m.excludes('vendor/x/.git/HEAD')).toBe(true);
    expect(m.excludes('sites/default/settings.php')).toBe(false);
    expect(m.matchesSelf('sites/default/files/a/b.jpg')).toBe(false);
    expect(m.excludes('sites/x/.spoke-staging-Ab12/f')).toBe(true);
  });

  it('matches nothing when empty', () => {
    expect(compileExcludes([]).excludes('a')).toBe(false);
  });

  it.each([[''], ['a//b'], ['a/../b'], ['./a']])('refuses pattern %j', (p) => {
    try {
      compileExcludes([p]);
      expect.unreachable();
    } catch (err) {
      expect(isSpokeError(err, 'INVALID_ARGUMENT')).toBe(true);
    }
  });
});
