/**
 * `spoke`: the operator CLI entry point.
 */
import { runCli } from './cli/cli.js';
import { upCommand } from './up.js';

runCli(process.argv.slice(2), { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }, { up: upCommand }).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`error: INTERNAL: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
