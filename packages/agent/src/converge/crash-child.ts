/**
 * Child process of crash.test.ts: converges `<dir>/host/d7` to the tree `<dir>/<src>` (default
 * srcB) and SIGKILLs itself at step k (the test hook onStep; 0 = never), like a power cut of the
 * process at that moment. Prints the result as JSON when it completes.
 * Usage: node --import tsx/esm crash-child.ts <dir> <k> <treeKey> [src]
 */
import { join } from 'node:path';
import { converge } from './converge.js';
import { copyFetcher, manifestOf } from './testkit.js';

const [dir, kText, treeKey, srcName = 'srcB'] = process.argv.slice(2) as [string, string, string, string?];
const k = Number(kText);
const src = join(dir, srcName);
const result = await converge({
  treeKey,
  hostRoot: join(dir, 'host', 'd7'),
  stateDir: join(dir, 'state'),
  desired: await manifestOf(src),
  fetcher: copyFetcher([src]),
  onStep: (n) => {
    if (n === k) process.kill(process.pid, 'SIGKILL');
  },
});
process.stdout.write(`${JSON.stringify(result)}\n`);
