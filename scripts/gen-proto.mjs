// Generates the wire code from proto/ into packages/shared/src/gen (the only place it lives).
// Run with `pnpm gen`; CI runs it again and fails when the committed output differs.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'packages/shared/src/gen');
const protoDir = join(root, 'proto');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const files = readdirSync(join(protoDir, 'spoke/v1'))
  .filter((f) => f.endsWith('.proto'))
  .sort()
  .map((f) => `spoke/v1/${f}`);
const bin = join(root, 'node_modules/.bin');
execFileSync(
  join(bin, 'protoc'),
  [
    `--plugin=protoc-gen-ts_proto=${join(bin, 'protoc-gen-ts_proto')}`,
    `--ts_proto_out=${out}`,
    '--ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,env=node,useOptionals=none,forceLong=number,oneof=unions-value,importSuffix=.js,useDate=false,unrecognizedEnum=false',
    `-I${protoDir}`,
    ...files,
  ],
  { stdio: 'inherit', cwd: root },
);
console.log(`generated ${files.length} proto files into ${out}`);
