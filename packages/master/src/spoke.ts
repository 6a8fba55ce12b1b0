/**
 * `spoke`: the operator CLI entry point.
 */
import { createInterface } from 'node:readline/promises';
import { runCli, type CliIO } from './cli/cli.js';
import { upCommand } from './up.js';

const io: CliIO = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };
// Destructive commands ask on a terminal; without one they need --yes.
if (process.stdin.isTTY && process.stderr.isTTY) {
  io.confirm = async (question) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
    } finally {
      rl.close();
    }
  };
}

runCli(process.argv.slice(2), io, { up: upCommand }).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`error: INTERNAL: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
