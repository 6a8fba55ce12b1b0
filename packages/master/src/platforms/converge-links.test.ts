/**
 * An existing tree keeps links that point outside it (Debian's WordPress does); the registry
 * lists them among its problems so the operator sees them (issue 16).
 */
import { describe, expect, it } from 'vitest';
import type { Manifest } from '@spoke/shared';
import { outsideLinks } from './registryscan.js';

const link = (path: string, target: string) => ({ path, type: 'symlink' as const, mode: 0o777, size: 0, hash: '', target });

describe('outsideLinks', () => {
  it('lists absolute links and links climbing above the root, not the ones that stay inside', () => {
    const m: Manifest = {
      rootHash: 'x',
      entries: [
        { path: 'index.php', type: 'file', mode: 0o644, size: 1, hash: 'h' },
        link('.htaccess', '/etc/wordpress/htaccess'),
        link('wp-includes/js/underscore.js', '../../../javascript/underscore/underscore.js'),
        link('wp-includes/js/ok.js', '../ok.js'),
        link('up', '..'),
        link('a/b/c', '../../x'),
        link('weird', 'a/../../b'),
      ],
    };
    expect(outsideLinks(m)).toEqual([
      { path: '.htaccess', error: 'link to /etc/wordpress/htaccess points outside the platform (kept as it is; a build would refuse it)' },
      {
        path: 'wp-includes/js/underscore.js',
        error: 'link to ../../../javascript/underscore/underscore.js points outside the platform (kept as it is; a build would refuse it)',
      },
      { path: 'up', error: 'link to .. points outside the platform (kept as it is; a build would refuse it)' },
      { path: 'weird', error: 'link to a/../../b points outside the platform (kept as it is; a build would refuse it)' },
    ]);
  });
});
