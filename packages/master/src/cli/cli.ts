/**
 * The `spoke` CLI: parses arguments, calls the master, prints tables or JSON. `runCli` returns
 * the exit code: 0 success, 1 failure (a refused request or a failed task), 2 usage error.
 *
 * The commands live one file per noun (server.ts, cluster.ts, platform.ts, site*.ts, task.ts,
 * operator.ts); what they share (the command shape, printing, following a task) is command.ts.
 */
import { parseArgs } from 'node:util';
import { SPOKE_VERSION, type SpokeError, didYouMean, fail, isSpokeError, unknownOptionMessage } from '@spoke/shared/client';
import { OperatorApi, type ConnectOptions } from './client.js';
import { UsageError, type CliIO, type Command, type Ctx, type OptSpec } from './command.js';
import { clusterCommands } from './cluster.js';
import { bashCompletion, zshCompletion } from './completion.js';
import { argNames, commandHelp } from './help.js';
import { operatorCommands, statusCommands } from './operator.js';
import { platformCommands } from './platform.js';
import { serverCommands } from './server.js';
import { siteCommands } from './site.js';
import { taskCommands } from './task.js';
import { eventCommands } from './events.js';

const GLOBAL: OptSpec = {
  'state-dir': { type: 'string' },
  socket: { type: 'string' },
  master: { type: 'string' },
  'cert-dir': { type: 'string' },
  output: { type: 'string', short: 'o' },
  help: { type: 'boolean', short: 'h' },
};

/** Every command, in the order help lists them. */
export const COMMANDS: Record<string, Command> = {
  ...statusCommands,
  ...serverCommands,
  ...clusterCommands,
  ...platformCommands,
  ...siteCommands,
  ...taskCommands,
  ...eventCommands,
  ...operatorCommands,
};

COMMANDS.completion = {
  usage: 'completion bash|zsh',
  summary: 'print a shell completion script (load it: source <(spoke completion bash))',
  args: [1, 1],
  async run(ctx, [shell]) {
    if (shell !== 'bash' && shell !== 'zsh') throw new UsageError(`completion takes bash or zsh, got ${JSON.stringify(shell)}`);
    ctx.io.out(shell === 'bash' ? bashCompletion(COMMANDS) : zshCompletion(COMMANDS));
    return 0;
  },
};

/** The message for a command that does not exist, with the nearest one when it looks like a typo. */
function unknownCommand(words: string[], all: Record<string, Command>): string {
  const [noun, verb] = words as [string, string | undefined];
  const group = Object.keys(all).filter((k) => k.startsWith(`${noun} `));
  if (group.length) {
    const verbs = group.map((k) => k.split(' ')[1] as string);
    const guess = verb === undefined ? undefined : didYouMean(verb, verbs);
    return `${verb === undefined ? `${noun} needs a command` : `unknown command "${noun} ${verb}"`}${guess ? ` (did you mean "${noun} ${guess}"?)` : ''}; ${noun} has: ${verbs.join(', ')}`;
  }
  const nouns = [...new Set(Object.keys(all).map((k) => k.split(' ')[0] as string))];
  const guess = didYouMean(noun, nouns);
  return `unknown command "${noun}"${guess ? ` (did you mean "${guess}"?)` : ''} (see: spoke help)`;
}

COMMANDS['site list'] = { ...(COMMANDS['site ls'] as Command), usage: 'site list [--platform P]', summary: 'same as site ls' };

/** Extra commands registered by the entry point (`up` needs the master's start-up code). */
export type ExtraCommand = Command;

function helpText(extra: Record<string, Command>): string {
  const all = { ...COMMANDS, ...extra };
  const lines = Object.values(all).map((c) => `  spoke ${c.usage.padEnd(74)} ${c.summary}`);
  return `spoke ${SPOKE_VERSION} — hosting control plane for PHP sites

usage: spoke [--state-dir DIR | --socket PATH | --master HOST:PORT --cert-dir DIR] [-o table|json] COMMAND

commands:
${lines.join('\n')}

The CLI talks to the master over <state-dir>/spoke.sock (default ./.spoke, or $SPOKE_STATE_DIR).
Errors print as "error: CODE: message"; exit 0 = ok, 1 = refused or failed, 2 = usage.
Every command explains itself: spoke COMMAND --help (e.g. spoke platform add --help).
Shell completion: source <(spoke completion bash)   (or zsh)
`;
}

/** Runs the CLI; returns the exit code. */
export async function runCli(argv: string[], io: CliIO, extra: Record<string, Command> = {}): Promise<number> {
  const all: Record<string, Command> = { ...COMMANDS, ...extra };
  let api: OperatorApi | undefined;
  try {
    // Globals may stand anywhere; take them out first.
    const g = parseArgs({ args: argv, options: GLOBAL, strict: false, allowPositionals: true, tokens: true });
    const rest: string[] = [];
    const globalIdx = new Set<number>();
    for (const t of g.tokens ?? []) {
      if (t.kind === 'option' && t.name in GLOBAL) {
        globalIdx.add(t.index);
        if (t.value !== undefined && t.inlineValue === false) globalIdx.add(t.index + 1);
      }
    }
    argv.forEach((a, i) => {
      if (!globalIdx.has(i)) rest.push(a);
    });
    const gv = g.values as Record<string, string | boolean | undefined>;
    const output = (gv.output as string | undefined) ?? 'table';
    if (output !== 'table' && output !== 'json') throw new UsageError(`-o must be table or json, got ${output}`);
    if (rest[0] === 'version' || rest[0] === '--version') {
      io.out(`spoke ${SPOKE_VERSION}\n`);
      return 0;
    }
    const helpAsked = gv.help === true || rest[0] === 'help';
    const words = (rest[0] === 'help' ? rest.slice(1) : rest).filter((a) => !a.startsWith('-'));
    if (words.length === 0) {
      io.out(helpText(extra));
      return rest.length === 0 && gv.help !== true ? 2 : 0;
    }
    const two = `${words[0]} ${words[1] ?? ''}`.trim();
    const key = all[two] ? two : all[words[0] ?? ''] ? (words[0] as string) : undefined;
    if (!key) {
      const group = Object.keys(all).filter((k) => k.startsWith(`${words[0]} `));
      if (group.length && helpAsked) {
        io.out(
          `spoke ${words[0]} commands (spoke ${words[0]} VERB --help for one):\n${group.map((k) => `  spoke ${(all[k] as Command).usage.padEnd(74)} ${(all[k] as Command).summary}`).join('\n')}\n`,
        );
        return 0;
      }
      throw new UsageError(unknownCommand(words, all));
    }
    let cmd = all[key] as Command;
    if (cmd.load) cmd = await cmd.load();
    if (helpAsked) {
      io.out(commandHelp(key, cmd));
      return 0;
    }
    // Remove the command words (first occurrences) and parse the rest strictly.
    const args = [...rest];
    for (const w of key.split(' ')) args.splice(args.indexOf(w), 1);
    let parsed;
    try {
      parsed = parseArgs({ args, options: cmd.options ?? {}, strict: true, allowPositionals: true });
    } catch (e) {
      const known = [...Object.keys(cmd.options ?? {}), ...Object.keys(GLOBAL)];
      throw new UsageError(`${unknownOptionMessage((e as Error).message, known)}\nusage: spoke ${cmd.usage} (more: spoke ${key} --help)`);
    }
    const pos = parsed.positionals;
    if (pos.length < cmd.args[0]) {
      const missing = argNames(key, cmd).slice(pos.length, cmd.args[0]);
      throw new UsageError(`missing ${missing.length ? missing.join(' ') : 'argument'}\nusage: spoke ${cmd.usage} (more: spoke ${key} --help)`);
    }
    if (pos.length > cmd.args[1]) {
      throw new UsageError(`unexpected argument ${JSON.stringify(pos[cmd.args[1]])}\nusage: spoke ${cmd.usage} (more: spoke ${key} --help)`);
    }
    const conn: ConnectOptions = {
      stateDir: gv['state-dir'] as string | undefined,
      socket: gv.socket as string | undefined,
      master: gv.master as string | undefined,
      certDir: gv['cert-dir'] as string | undefined,
    };
    const ctx: Ctx = {
      io,
      json: output === 'json',
      conn,
      api: () => (api ??= new OperatorApi(conn)),
    };
    return await cmd.run(ctx, pos as [string, string], parsed.values as Record<string, unknown>);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`error: USAGE: ${e.message}\n`);
      return 2;
    }
    const se: SpokeError = isSpokeError(e) ? e : fail('INTERNAL', e instanceof Error ? e.message : String(e));
    io.err(`error: ${se.code}: ${se.message}\n`);
    return 1;
  } finally {
    api?.close();
  }
}

export { UsageError };
export type { CliIO, Command, Ctx };
