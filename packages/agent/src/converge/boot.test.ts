import * as fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { beginRun, distrustTrees, endRun } from './boot.js';
import { converge, observe, readCommitted, replayJournals } from './index.js';
import { forgetMemos, readHead, STAT, treeStateDir } from './state.js';
import { copyFetcher, manifestOf, scratch, type Spec, writeTree } from './testkit.js';

const KEY = '/var/aegir/platforms/d10';

let base: string;
let cleanup: () => void;
let dst: string;
let stateDir: string;
let treeDir: string;
beforeEach(() => {
  ({ dir: base, cleanup } = scratch('spoke-boot-'));
  dst = join(base, 'host', 'd10');
  stateDir = join(base, 'state');
  treeDir = treeStateDir(stateDir, KEY);
});
afterEach(() => cleanup());

const SPEC: Spec = { 'index.php': '<?php // front', 'core/lib/Drupal.php': "const VERSION = '10.3.1';", 'modules/a/a.module': 'aaaa' };

async function syncFrom(spec: Spec, name: string) {
  const src = join(base, name);
  writeTree(src, spec);
  const desired = await manifestOf(src);
  const result = await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired, fetcher: copyFetcher([src]) });
  return { src, desired, result };
}

describe('run marker', () => {
  it('a first start, a restart after a clean stop and a process crash on the same boot are clean', () => {
    expect(beginRun(stateDir, 'boot-1')).toEqual({ unclean: false });
    // killed (no endRun), restarted on the same boot: the page cache kept everything
    expect(beginRun(stateDir, 'boot-1')).toEqual({ unclean: false, previousBoot: 'boot-1' });
    expect(endRun(stateDir, () => true)).toBe(true);
    expect(fs.existsSync(join(stateDir, 'run.json'))).toBe(false);
    // a clean stop, then a reboot
    expect(beginRun(stateDir, 'boot-2')).toEqual({ unclean: false });
  });

  it('a marker of another boot, a torn marker or no boot id means the machine went down under the agent', () => {
    beginRun(stateDir, 'boot-1');
    expect(beginRun(stateDir, 'boot-2')).toEqual({ unclean: true, previousBoot: 'boot-1' });
    fs.writeFileSync(join(stateDir, 'run.json'), '{"v":1,"boo');
    expect(beginRun(stateDir, 'boot-2').unclean).toBe(true);
    expect(beginRun(stateDir, undefined).unclean).toBe(true);
  });

  it('keeps the marker when the flush at stop fails', () => {
    beginRun(stateDir, 'boot-1');
    expect(endRun(stateDir, () => false)).toBe(false);
    expect(beginRun(stateDir, 'boot-2').unclean).toBe(true);
  });
});

describe('distrustTrees after an unclean reboot', () => {
  it('finds a torn file that the stat cache hides, and the next converge repairs it', async () => {
    const { src, desired } = await syncFrom(SPEC, 'src');
    // What power loss can leave: same size, other bytes, and a stat cache that matches the file
    // (written here: the walk itself caches no file touched in the last two seconds).
    const torn = join(dst, 'core/lib/Drupal.php');
    fs.writeFileSync(torn, Buffer.alloc(fs.statSync(torn).size));
    const records: Record<string, [number, number, number, number, string]> = {};
    for (const e of desired.entries) {
      if (e.type !== 'file') continue;
      const st = fs.statSync(join(dst, e.path));
      records[e.path] = [st.ino, st.size, st.mtimeMs, st.ctimeMs, e.hash as string];
    }
    fs.writeFileSync(join(treeDir, STAT), JSON.stringify({ v: 1, hostRoot: dst, records }));

    // The premise: a restarted agent that trusts its cache sees nothing wrong.
    forgetMemos(treeDir);
    expect((await observe(stateDir, KEY, dst)).rootHash).toBe(desired.rootHash);

    const d = distrustTrees(stateDir);
    expect(d).toEqual({ trees: 1, journalsDiscarded: 0, headsRemoved: 0 });
    expect(fs.existsSync(join(treeDir, STAT))).toBe(false);
    expect(readHead(treeDir)?.drift).toBe(true);
    const seen = await observe(stateDir, KEY, dst);
    expect(seen.rootHash).not.toBe(desired.rootHash);
    expect(seen.drift.changed).toEqual(['core/lib/Drupal.php']);

    const again = await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired, fetcher: copyFetcher([src]) });
    expect(again.inSync).toBe(false);
    expect(fs.readFileSync(torn, 'utf8')).toBe("const VERSION = '10.3.1';");
    expect((await manifestOf(dst)).rootHash).toBe(desired.rootHash);
  });

  it('forgets a torn head or manifest file; the tree is re-walked and converged, nothing else lost', async () => {
    const { src, desired } = await syncFrom(SPEC, 'src');
    const userFile = join(dst, 'sites/default/files/upload.jpg');
    fs.mkdirSync(join(dst, 'sites/default/files'), { recursive: true });
    fs.writeFileSync(userFile, 'user data');
    const manifestFile = fs.readdirSync(treeDir).find((n) => n.startsWith('manifest-')) as string;
    fs.writeFileSync(join(treeDir, manifestFile), '{"v":1,"tre'); // torn
    // Without distrust the tree cannot even be read (by a restarted agent).
    forgetMemos(treeDir);
    expect(() => readCommitted(stateDir, KEY)).toThrow(/manifest|JSON/);

    expect(distrustTrees(stateDir).headsRemoved).toBe(1);
    expect(readHead(treeDir)).toBeUndefined();
    expect(fs.readdirSync(treeDir).filter((n) => n.startsWith('manifest-'))).toEqual([]);
    const r = await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired, fetcher: copyFetcher([src]) });
    expect(r.filesFetched).toBe(0); // what was on disk was hashed and kept
    expect(readCommitted(stateDir, KEY)?.rootHash).toBe(desired.rootHash);
    expect(fs.readFileSync(userFile, 'utf8')).toBe('user data');

    fs.writeFileSync(join(treeDir, 'head.json'), '');
    expect(distrustTrees(stateDir).headsRemoved).toBe(1);
    expect(readHead(treeDir)).toBeUndefined();
  });

  it('discards a torn journal and its staging dir instead of replaying it', async () => {
    const { src, desired } = await syncFrom(SPEC, 'src');
    const staging = join(base, 'host', '.spoke-staging-d10-0123456789ab');
    fs.mkdirSync(join(staging, 'blobs'), { recursive: true });
    fs.writeFileSync(join(staging, 'blobs', 'x'), '');
    fs.writeFileSync(join(treeDir, 'journal.json'), `{"v":1,"treeKey":"${KEY}","staging":"${staging}","ops":[{"op":"rena`);
    fs.writeFileSync(join(treeDir, 'staging.json'), JSON.stringify({ path: staging }));
    // The premise: a torn journal stops replay (and with it every converge of the tree).
    await expect(replayJournals(stateDir)).rejects.toThrow(/journal .* is not valid JSON/);

    expect(distrustTrees(stateDir)).toEqual({ trees: 1, journalsDiscarded: 1, headsRemoved: 0 });
    expect(fs.existsSync(staging)).toBe(false);
    expect(fs.existsSync(join(treeDir, 'journal.json'))).toBe(false);
    expect(fs.existsSync(join(treeDir, 'staging.json'))).toBe(false);
    expect(await replayJournals(stateDir)).toEqual([]);
    fs.writeFileSync(join(dst, 'index.php'), ''); // a rename the lost journal had done, torn
    const r = await converge({ treeKey: KEY, hostRoot: dst, stateDir, desired, fetcher: copyFetcher([src]) });
    expect(r.inSync).toBe(false);
    expect((await manifestOf(dst)).rootHash).toBe(desired.rootHash);
  });
});
