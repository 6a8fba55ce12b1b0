import * as fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSpokeError } from '@spoke/shared';
import { converge, type ConvergeOptions, observe } from './index.js';
import { listQuarantine, prune, type QuarantineOptions } from './quarantine.js';
import { copyFetcher, manifestOf, scratch, type Spec, writeTree } from './testkit.js';

const KEY = '/var/www/wp';

let base: string;
let cleanup: () => void;
let dst: string;
let stateDir: string;
let q: QuarantineOptions;
let now: number;
beforeEach(() => {
  ({ dir: base, cleanup } = scratch('spoke-quarantine-'));
  dst = join(base, 'host', 'wp');
  stateDir = join(base, 'state');
  now = Date.UTC(2026, 11, 6, 8, 0, 0);
  q = { dir: join(stateDir, 'quarantine'), maxBytes: 1024 * 1024, maxAgeMs: 30 * 86_400_000, now: () => now };
});
afterEach(() => cleanup());

let seq = 0;
function source(spec: Spec): string {
  const dir = join(base, `src${seq++}`);
  writeTree(dir, spec);
  return dir;
}

async function syncTo(src: string, extra: Partial<ConvergeOptions> = {}) {
  return converge({ treeKey: KEY, hostRoot: dst, stateDir, desired: await manifestOf(src), fetcher: copyFetcher([src]), quarantine: q, ...extra });
}

describe('drift repair quarantine', () => {
  it('keeps a hand-added file and a hand edit the repair removes and overwrites, and nothing of the master’s own', async () => {
    const a = source({ 'index.php': 'a', 'lib/x.php': 'x', 'lib/y.php': 'y' });
    expect((await syncTo(a)).quarantined).toBeUndefined(); // a first sync keeps nothing
    fs.writeFileSync(join(dst, 'evil.php'), '<?php system($_GET["c"]);');
    fs.mkdirSync(join(dst, 'up'));
    fs.writeFileSync(join(dst, 'up/shell.php'), 'sh');
    fs.symlinkSync('/etc/passwd', join(dst, 'lib/link'));
    fs.writeFileSync(join(dst, 'lib/x.php'), 'hacked');
    fs.rmSync(join(dst, 'lib/y.php')); // removed by hand: nothing to keep
    await observe(stateDir, KEY, dst);
    const r = await syncTo(a);
    expect(fs.existsSync(join(dst, 'evil.php'))).toBe(false); // repaired…
    expect(fs.readFileSync(join(dst, 'lib/x.php'), 'utf8')).toBe('x');
    const kept = r.quarantined;
    expect(kept).toBeDefined();
    // …and kept
    expect(kept?.paths).toEqual([
      { path: 'evil.php', why: 'removed', size: 25 },
      { path: 'lib/link', why: 'removed', size: 0 },
      { path: 'lib/x.php', why: 'overwritten', size: 6 },
      { path: 'up/shell.php', why: 'removed', size: 2 },
    ]);
    expect(fs.readFileSync(join(kept?.dir ?? '', 'evil.php'), 'utf8')).toBe('<?php system($_GET["c"]);');
    expect(fs.readFileSync(join(kept?.dir ?? '', 'lib/x.php'), 'utf8')).toBe('hacked');
    expect(fs.readlinkSync(join(kept?.dir ?? '', 'lib/link'))).toBe('/etc/passwd'); // a link stays a link
    expect(listQuarantine(q, KEY).map((e) => e.id)).toEqual([kept?.id]);
    expect(listQuarantine(q, '/var/www/other')).toEqual([]);

    // a new version from the master removes and replaces its own files: nothing is kept
    const b = source({ 'index.php': 'b', 'lib/x.php': 'x' });
    expect((await syncTo(b)).quarantined).toBeUndefined();
    expect(listQuarantine(q, KEY)).toHaveLength(1);
  });

  it('is bounded by age and by size, oldest first, and counts what did not fit', async () => {
    const a = source({ 'index.php': 'a' });
    await syncTo(a);
    const drift = async (files: Record<string, number>) => {
      for (const [name, size] of Object.entries(files)) fs.writeFileSync(join(dst, name), Buffer.alloc(size, 1));
      await observe(stateDir, KEY, dst);
      return (await syncTo(a)).quarantined;
    };
    q.maxBytes = 1000;
    const first = await drift({ 'one.php': 400 });
    now += 1000;
    const second = await drift({ 'two.php': 400 });
    now += 1000;
    // 300 more: the oldest goes to stay within 1000 bytes
    const third = await drift({ 'three.php': 300 });
    expect(listQuarantine(q).map((e) => e.id)).toEqual([second?.id, third?.id]);
    expect(first?.id).not.toBe(second?.id);
    // more than the bound at once: the small ones are kept, the big one is counted
    now += 1000;
    const big = await drift({ 'small.php': 10, 'huge.php': 5000 });
    expect(big?.paths.map((p) => p.path)).toEqual(['small.php']);
    expect(big?.skipped).toEqual(['huge.php']);
    // age: 31 days later everything is gone
    now += 31 * 86_400_000;
    prune(q);
    expect(listQuarantine(q)).toEqual([]);
    expect(fs.readdirSync(q.dir)).toEqual([]);
  });

  it('report mode changes nothing and says DRIFT_FOUND with the paths; repair mode then repairs', async () => {
    const a = source({ 'index.php': 'a' });
    await syncTo(a);
    fs.writeFileSync(join(dst, 'evil.php'), 'x');
    await observe(stateDir, KEY, dst);
    const err = await syncTo(a, { reportDrift: true }).catch((e: unknown) => e);
    expect(isSpokeError(err, 'DRIFT_FOUND')).toBe(true);
    expect((err as Error).message).toContain('+evil.php');
    expect(fs.readFileSync(join(dst, 'evil.php'), 'utf8')).toBe('x');
    expect(listQuarantine(q)).toEqual([]);
    // a tree that is only behind (no hand edits) converges in report mode too
    const b = source({ 'index.php': 'b' });
    fs.rmSync(join(dst, 'evil.php'));
    await observe(stateDir, KEY, dst);
    await syncTo(b, { reportDrift: true });
    expect(fs.readFileSync(join(dst, 'index.php'), 'utf8')).toBe('b');
  });
});
