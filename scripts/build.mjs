// Bundles the three entry points into single ESM files (esbuild). better-sqlite3 stays external
// (native addon), and so does grpc-health-check (it loads its health.proto from its own package
// directory at run time); a createRequire banner lets bundled CommonJS code call require().
import { build } from 'esbuild';
import { chmodSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const banner = {
  js: "#!/usr/bin/env node\nimport { createRequire as __spokeCreateRequire } from 'node:module'; const require = __spokeCreateRequire(import.meta.url);",
};
// `import text from './file?raw'` inlines a text file (vite does the same in tests): the agent's
// default web server templates (deploy/templates) travel inside its bundle.
const rawText = {
  name: 'raw-text',
  setup(b) {
    b.onResolve({ filter: /\?raw$/ }, (args) => ({ path: resolve(args.resolveDir, args.path.slice(0, -4)), namespace: 'raw-text' }));
    b.onLoad({ filter: /.*/, namespace: 'raw-text' }, (args) => ({ contents: readFileSync(args.path, 'utf8'), loader: 'text', watchFiles: [args.path] }));
  },
};
// The CLI is split into chunks (beside it in dist/) so a command loads only what it needs:
// `spoke up` pulls in the whole master, `spoke server ls` only the CLI and the operator client.
const entries = [
  { in: 'packages/master/src/spoke.ts', out: 'packages/master/dist/spoke.js', split: true },
  { in: 'packages/master/src/main.ts', out: 'packages/master/dist/spoke-master.js' },
  { in: 'packages/agent/src/main.ts', out: 'packages/agent/dist/spoke-agent.js' },
];
const t0 = Date.now();
// Chunks of an earlier build (their names carry a content hash) would pile up beside the entry.
const masterDist = join(root, 'packages/master/dist');
for (const f of (() => {
  try {
    return readdirSync(masterDist);
  } catch {
    return [];
  }
})()) {
  if (/^spoke-.*-[A-Z0-9]{8}\.js(\.map)?$/.test(f)) rmSync(join(masterDist, f));
}
await Promise.all(
  entries.map(async (e) => {
    await build({
      entryPoints: [join(root, e.in)],
      ...(e.split
        ? { outdir: dirname(join(root, e.out)), entryNames: '[name]', chunkNames: 'spoke-[name]-[hash]', splitting: true }
        : { outfile: join(root, e.out) }),
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      sourcemap: 'linked',
      external: ['better-sqlite3', 'grpc-health-check'],
      banner,
      plugins: [rawText],
      logLevel: 'warning',
    });
    chmodSync(join(root, e.out), 0o755);
  }),
);
console.error(`built ${entries.length} bundles in ${Date.now() - t0} ms`);
