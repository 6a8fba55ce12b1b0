/**
 * Every way the master is started passes MASTER_NODE_FLAGS to node: V8 reads them at start only,
 * so a launcher that forgets them runs a master with ~30 MB more RSS and nothing says so.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MASTER_NODE_FLAGS } from '@spoke/shared';

const ROOT = join(import.meta.dirname, '..');
const read = (rel: string) => readFileSync(join(ROOT, rel), 'utf8');

/**
 * The lines of `text` that start a master (spoke-master.js, or spoke.js for `up`) for good: a
 * wrapper's `exec node …`, a unit's `ExecStart=…` (not a one-off `node … version` check).
 */
function masterLaunches(text: string): string[] {
  return text.split('\n').filter((l) => /^\s*(exec\s|ExecStart=)/.test(l) && /\bnode\b|\$NODE\b/.test(l) && /spoke(-master)?\.js|\$DAEMON/.test(l));
}

const LAUNCHERS: [file: string, lines: (text: string) => string[]][] = [
  ['bin/spoke-master', masterLaunches],
  ['bin/spoke', masterLaunches],
  ['deploy/systemd/spoke-master.service', masterLaunches],
  ['deploy/install-master.sh', masterLaunches],
  ['package.json', (t) => [JSON.parse(t).scripts.start as string]],
];

describe('master launchers', () => {
  it.each(LAUNCHERS)('%s passes MASTER_NODE_FLAGS before the script', (file, lines) => {
    const found = lines(read(file));
    expect(found.length).toBeGreaterThan(0);
    for (const line of found) {
      const node = line.search(/\bnode\b|\$NODE\b/);
      const script = line.search(/spoke(-master)?\.js|\$DAEMON/);
      for (const flag of MASTER_NODE_FLAGS) {
        const at = line.indexOf(flag, node);
        expect(at, `${file}: ${line.trim()}`).toBeGreaterThan(node);
        expect(at, `${file}: ${line.trim()}`).toBeLessThan(script);
      }
    }
  });

  it('the flags are ones this node accepts', () => {
    expect(execFileSync(process.execPath, [...MASTER_NODE_FLAGS, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8' })).toBe('ok');
  });
});
