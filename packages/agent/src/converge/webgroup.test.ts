/**
 * The web config adds group bits to a platform's `sites/` (sitesperms.ts). Converge owns every
 * mode in the tree, so those bits must not read as drift nor be chmodded back; any other mode
 * change of `sites/` still is drift.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { converge, observe } from './index.js';
import { copyFetcher, manifestOf, scratch, type Spec, writeTree } from './testkit.js';

const KEY = '/var/aegir/platforms/d7';
let base: string;
let cleanup: () => void;
let dst: string;
let stateDir: string;
let seq = 0;
beforeEach(() => {
  ({ dir: base, cleanup } = scratch('spoke-webgroup-'));
  dst = join(base, 'host', 'd7');
  stateDir = join(base, 'state');
});
afterEach(() => cleanup());

function source(spec: Spec): string {
  const dir = join(base, `src${seq++}`);
  writeTree(dir, spec);
  return dir;
}
const sync = async (src: string) => converge({ treeKey: KEY, hostRoot: dst, stateDir, desired: await manifestOf(src), fetcher: copyFetcher([src]) });
const modeOf = (rel: string) => fs.statSync(join(dst, rel)).mode & 0o7777;

const SPEC: Spec = { 'index.php': '<?php', sites: { dir: 0o755 }, 'sites/default': { dir: 0o755 }, 'sites/default/default.settings.php': '<?php' };

describe('converge: group bits the web config adds to sites/', () => {
  it('are neither drift nor undone by the next converge', async () => {
    const src = source(SPEC);
    const first = await sync(src);
    fs.chmodSync(join(dst, 'sites'), 0o2775); // what fixSitesPermissions does (setgid is never in a manifest)
    const seen = await observe(stateDir, KEY, dst);
    expect(seen.drift).toEqual({ changed: [], added: [], removed: [] });
    expect(seen.rootHash).toBe(first.rootHash);
    // a change elsewhere in sites/ converges without touching the dir's mode
    fs.writeFileSync(join(src, 'sites/default/default.settings.php'), '<?php // new');
    fs.mkdirSync(join(src, 'sites/example.com'));
    const second = await sync(src);
    expect(second.inSync).toBe(false);
    expect(second.drift).toEqual({ changed: [], added: [], removed: [] });
    expect(modeOf('sites')).toBe(0o2775);
    expect((await observe(stateDir, KEY, dst)).rootHash).toBe(second.rootHash);
  });

  it('other mode changes of sites/ are drift, repaired to the desired mode', async () => {
    const src = source(SPEC);
    await sync(src);
    fs.chmodSync(join(dst, 'sites'), 0o777); // o+w: not the web group's business
    expect((await observe(stateDir, KEY, dst)).drift.changed).toEqual(['sites']);
    const r = await sync(src);
    expect(r.drift.changed).toEqual(['sites']);
    expect(modeOf('sites')).toBe(0o755);
    fs.chmodSync(join(dst, 'sites'), 0o700); // group bits removed: drift too
    expect((await observe(stateDir, KEY, dst)).drift.changed).toEqual(['sites']);
  });

  it('a desired mode change of sites/ is applied (and the web config adds its bits again later)', async () => {
    const src = source(SPEC);
    await sync(src);
    fs.chmodSync(join(dst, 'sites'), 0o775);
    fs.chmodSync(join(src, 'sites'), 0o750);
    await sync(src);
    expect(modeOf('sites')).toBe(0o750);
  });

  it('only sites/ itself: group bits added to any other dir are drift', async () => {
    const src = source(SPEC);
    await sync(src);
    fs.chmodSync(join(dst, 'sites/default'), 0o775);
    expect((await observe(stateDir, KEY, dst)).drift.changed).toEqual(['sites/default']);
  });
});
