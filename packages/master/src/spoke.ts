/**
 * `spoke`: the operator CLI entry point. It turns V8's compile cache on (where Node has it) and
 * then loads the CLI, so the CLI's code is cached too; `spoke up` (the master's start-up code) is
 * loaded only when it runs, so every other command starts lean (issue 23 item 17).
 */
import type { CliIO } from './cli/cli.js';
import { enableCompileCache } from './compilecache.js';

enableCompileCache();
const { runCli } = await import('./cli/cli.js');

const io: CliIO = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };
// Destructive commands ask on a terminal; without one they need --yes. (readline is loaded only
// when a command asks.)
if (process.stdin.isTTY && process.stderr.isTTY) {
  io.confirm = async (question) => {
    const { createInterface } = await import('node:readline/promises');
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
    } finally {
      rl.close();
    }
  };
}

runCli(process.argv.slice(2), io, {
  up: {
    usage: 'up [--state-dir DIR] [--listen HOST:PORT] [--root DIR] [--roots /var/aegir,/var/www]',
    summary: 'one-box install: run a master and its local agent (server "master") until Ctrl-C',
    args: [0, 0],
    load: async () => (await import('./up.js')).upCommand,
    run: () => Promise.reject(new Error('up: not loaded')),
  },
}).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`error: INTERNAL: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
