/**
 * `spoke-agent`: enroll | run | version. The only place that wires the agent's graph.
 */
import { parseArgs } from 'node:util';
import {
  SPOKE_VERSION,
  boundHeapGrowth,
  AGENT_HEAP_HEADROOM_MB,
  createLogger,
  didYouMean,
  formatHelp,
  isSpokeError,
  unknownOptionMessage,
} from '@spoke/shared';
import { compileAgentOptions } from './config.js';
import { enroll } from './enroll.js';
import { startAgent } from './agent.js';
import { AGENT_FLAGS, AGENT_HELP } from './usage.js';

/** Exit code when the master refused this agent's identity (revoked or unknown certificate). */
const EXIT_REFUSED = 3;

const USAGE = `usage:
  spoke-agent enroll --master HOST:PORT --token TOKEN --state-dir DIR [--roots /var/aegir,/var/www] [--force]
  spoke-agent run --state-dir DIR [--root DIR] [--master HOST:PORT] [--metrics HOST:PORT]
  spoke-agent version
(spoke-agent enroll --help, spoke-agent run --help: each flag explained)`;

function usage(msg: string): never {
  process.stderr.write(`error: USAGE: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (cmd === 'version' || cmd === '--version') {
    process.stdout.write(`spoke-agent ${SPOKE_VERSION}\n`);
    return;
  }
  if (cmd === 'help' || cmd === '--help' || cmd === '-h' || cmd === undefined) {
    process.stdout.write(`${USAGE}\n`);
    if (cmd === undefined) process.exit(2);
    return;
  }
  if (cmd !== 'enroll' && cmd !== 'run') {
    const guess = didYouMean(cmd, ['enroll', 'run', 'version']);
    usage(`unknown command ${JSON.stringify(cmd)}${guess ? ` (did you mean "${guess}"?)` : ''}`);
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(formatHelp('spoke-agent', AGENT_HELP[cmd]));
    return;
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        master: { type: 'string' },
        token: { type: 'string' },
        'state-dir': { type: 'string' },
        roots: { type: 'string' },
        root: { type: 'string' },
        force: { type: 'boolean' },
        metrics: { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    usage(unknownOptionMessage((e as Error).message, AGENT_FLAGS[cmd]));
  }
  const stateDir = values['state-dir'] as string | undefined;
  if (!stateDir) usage('--state-dir is required');
  if (cmd === 'enroll') {
    const master = values.master as string | undefined;
    const token = (values.token as string | undefined) ?? process.env.SPOKE_TOKEN;
    if (!master || !token) usage('enroll needs --master and --token (or SPOKE_TOKEN)');
    const roots = typeof values.roots === 'string' ? values.roots.split(',').filter(Boolean) : undefined;
    const r = await enroll({ master, token, stateDir, roots, force: values.force === true });
    process.stdout.write(
      `enrolled as ${r.server}${r.cluster ? ` (member of cluster ${r.cluster})` : ''}; identity in ${r.stateDir}\n` +
        `next: spoke-agent run --state-dir ${stateDir}\n`,
    );
    return;
  }
  const opts = compileAgentOptions({
    stateDir,
    root: values.root as string | undefined,
    master: values.master as string | undefined,
    metrics: values.metrics as string | undefined,
  });
  const log = createLogger({ level: opts.logLevel, base: { daemon: 'agent', server: opts.server } });
  boundHeapGrowth(process.env, AGENT_HEAP_HEADROOM_MB);
  const agent = await startAgent(opts, { log });
  // `spoke-agent run` ends only on a refused certificate (exit 3) or a signal; every way out
  // says why (the 'exit' handler logs synchronously: the logger writes with sync writes).
  let exitReason: { reason: string; signal?: string } | undefined;
  process.on('exit', (code) => {
    if (exitReason) log.info({ code, ...exitReason }, 'agent exiting');
    else log.error({ code }, 'agent exiting for no known reason (a bug: report it with this log)');
  });
  // Nothing should ever let the event loop empty (the link holds a ref'd timer): if it does,
  // say so and dial again instead of ending with status 0 and no word.
  process.on('beforeExit', () => {
    if (exitReason) return;
    log.error('the event loop emptied while the agent runs (a bug): dialing the master again');
    if (!agent.connection.ensureDialing('event loop emptied')) {
      setTimeout(() => agent.connection.ensureDialing('event loop emptied'), opts.backoffMaxMs);
    }
  });
  // A rejected promise nobody awaited is a bug to log, not a reason to stop serving.
  process.on('unhandledRejection', (e) => log.error({ err: e }, 'unhandled promise rejection (a bug: report it with this log)'));
  process.on('uncaughtException', (e) => {
    // State is unknown after an uncaught throw: exit non-zero, systemd starts a fresh agent.
    exitReason = { reason: `uncaught exception: ${e.message}` };
    log.fatal({ err: e }, 'uncaught exception');
    process.exit(1);
  });
  agent.connection.onState = (s, info) => {
    if (s === 'stopped' && agent.connection.fatal) {
      exitReason = { reason: "the master refused this agent's certificate" };
      process.stderr.write(`error: CERT_REVOKED: the master refused this agent (${info?.details ?? ''}); enroll again\n`);
      // A distinct exit code: systemd must not restart a refused agent (RestartPreventExitStatus=3).
      process.exit(EXIT_REFUSED);
    }
  };
  const shutdown = (signal: NodeJS.Signals) => {
    if (exitReason) return;
    exitReason = { reason: 'signal', signal };
    log.info({ signal }, 'agent stopping');
    void agent.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: e }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.on('SIGHUP', shutdown);
}

/** Errors that a restart cannot fix: exit with EXIT_REFUSED so systemd leaves the agent stopped. */
const PERMANENT = new Set(['NOT_ENROLLED', 'CONFIG_INVALID', 'CERT_REVOKED', 'CERT_UNKNOWN']);

main(process.argv.slice(2)).catch((e: unknown) => {
  if (isSpokeError(e) && process.argv[2] === 'run' && PERMANENT.has(e.code)) {
    process.stderr.write(`error: ${e.code}: ${e.message}\n`);
    process.exit(EXIT_REFUSED);
  }
  if (isSpokeError(e)) process.stderr.write(`error: ${e.code}: ${e.message}\n`);
  else process.stderr.write(`error: INTERNAL: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
