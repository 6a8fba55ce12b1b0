// Bundles the three entry points into single ESM files (esbuild). better-sqlite3 stays external
// (native addon); a createRequire banner lets bundled CommonJS code call require().
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const banner = {
  js: "#!/usr/bin/env node\nimport { createRequire as __spokeCreateRequire } from 'node:module'; const require = __spokeCreateRequire(import.meta.url);",
};
const entries = [
  { in: 'packages/master/src/spoke.ts', out: 'packages/master/dist/spoke.js' },
  { in: 'packages/master/src/main.ts', out: 'packages/master/dist/spoke-master.js' },
  { in: 'packages/agent/src/main.ts', out: 'packages/agent/dist/spoke-agent.js' },
];
const t0 = Date.now();
await Promise.all(
  entries.map(async (e) => {
    await build({
      entryPoints: [join(root, e.in)],
      outfile: join(root, e.out),
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      sourcemap: 'linked',
      external: ['better-sqlite3'],
      banner,
      logLevel: 'warning',
    });
    chmodSync(join(root, e.out), 0o755);
  }),
);
console.log(`built ${entries.length} bundles in ${Date.now() - t0} ms`);
