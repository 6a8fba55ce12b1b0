/**
 * Child process of crash.test.ts: converges `<dir>/host/d7` to the tree `<dir>/<src>` (default
 * srcB) and SIGKILLs itself at step k (the test hook onStep; 0 = never), like a power cut of the
 * process at that moment. Prints the result as JSON when it completes. With `delta`, the desired
 * tree is given as its change from the committed manifest, as the master sends it; with `stream`,
 * the tree arrives as a streamed first sync (convergeStreamed, StreamTree's record stream).
 * Usage: node --import tsx/esm crash-child.ts <dir> <k> <treeKey> [src] [delta|stream]
 */
import { join } from 'node:path';
import type { Manifest } from '@spoke/shared';
import { converge } from './converge.js';
import { convergeStreamed } from './streamed.js';
import { readCommitted } from './observe.js';
import type { ManifestDelta } from './state.js';
import { copyFetcher, deltaOf, manifestOf, treeStreamOf } from './testkit.js';

const [dir, kText, treeKey, srcName = 'srcB', mode] = process.argv.slice(2) as [string, string, string, string?, string?];
const k = Number(kText);
const src = join(dir, srcName);
const stateDir = join(dir, 'state');
const want = await manifestOf(src);

function deltaTo(m: Manifest): ManifestDelta {
  const c = readCommitted(stateDir, treeKey);
  if (c === null) throw new Error('nothing committed to make a delta against');
  return deltaOf(c.manifest, m);
}

let steps = 0;
const onStep = (n: number) => {
  steps = n;
  if (n === k) process.kill(process.pid, 'SIGKILL');
};
if (mode === 'stream') {
  const chunks = await treeStreamOf(src);
  const result = await convergeStreamed({
    treeKey,
    hostRoot: join(dir, 'host', 'd7'),
    stateDir,
    open: async function* () {
      for (const c of chunks) yield c;
    },
    onStep,
  });
  process.stdout.write(`${JSON.stringify({ ...result, steps })}\n`);
  process.exit(0);
}
const result = await converge({
  treeKey,
  hostRoot: join(dir, 'host', 'd7'),
  stateDir,
  ...(mode === 'delta' ? { delta: deltaTo(want) } : { desired: want }),
  fetcher: copyFetcher([src]),
  onStep: (n) => {
    steps = n;
    if (n === k) process.kill(process.pid, 'SIGKILL');
  },
});
process.stdout.write(`${JSON.stringify({ ...result, steps })}\n`);
