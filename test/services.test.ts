/**
 * The test helpers must not depend on which recommended packages the machine has (issue 23 item
 * 18): prepareWordPress against a Debian-like tree whose wp-content is a link into the packages'
 * dir and holds wordpress-theme-twentytwentythree.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanup, scratch } from './harness.js';
import { prepareWordPress } from './services.js';

const dir = scratch('spoke-services-');
afterAll(() => cleanup(dir));

describe('prepareWordPress', () => {
  it('gives the copy its own theme and never writes into the packages’ theme dirs', () => {
    // what /usr/share/wordpress may look like with the theme package installed
    const varlib = join(dir, 'var-lib-wordpress', 'wp-content');
    const block = join(varlib, 'themes', 'twentytwentythree');
    mkdirSync(join(block, 'templates'), { recursive: true });
    writeFileSync(join(block, 'theme.json'), '{"version": 2}');
    writeFileSync(join(block, 'templates', 'index.html'), '<!-- wp:post-title /-->');
    writeFileSync(join(block, 'style.css'), '/*\nTheme Name: Twenty Twenty-Three\n*/\n');
    mkdirSync(join(varlib, 'plugins'), { recursive: true });
    const share = join(dir, 'usr-share-wordpress');
    mkdirSync(share, { recursive: true });
    writeFileSync(join(share, 'wp-settings.php'), '<?php\n');
    symlinkSync(varlib, join(share, 'wp-content'));

    const target = join(dir, 'master-root', 'var', 'www', 'wp');
    prepareWordPress(target, {}, share);

    // the packages' dirs are as they were
    expect(readdirSync(block).sort()).toEqual(['style.css', 'templates', 'theme.json']);
    expect(readdirSync(join(varlib, 'themes'))).toEqual(['twentytwentythree']);
    // the copy has only the test's theme, and WordPress is told to use it
    expect(readdirSync(join(target, 'wp-content', 'themes'))).toEqual(['spoke-test']);
    expect(readFileSync(join(target, 'wp-content', 'themes', 'spoke-test', 'index.php'), 'utf8')).toContain('<h1 id="site-title">');
    expect(readFileSync(join(target, 'wp-content', 'mu-plugins', 'spoke-test-theme.php'), 'utf8')).toContain("define('WP_DEFAULT_THEME', 'spoke-test');");
    expect(existsSync(join(target, 'wp-content', 'plugins'))).toBe(true);
  });
});

describe('scripts/test-all.sh', () => {
  it('waits for the dpkg lock instead of failing when another apt-get holds it', () => {
    const script = readFileSync(join(import.meta.dirname, '..', 'scripts', 'test-all.sh'), 'utf8');
    const calls = [...script.matchAll(/apt-get\b[^\n&|;]*/g)].map((m) => m[0]);
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) expect(c, c).toMatch(/-o DPkg::Lock::Timeout=\d+/);
  });
});
