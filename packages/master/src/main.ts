/**
 * `spoke-master run --state-dir DIR --listen HOST:PORT [--root DIR] [--build-* …]`. The only place that wires
 * the master's graph for the standalone daemon.
 */
import { parseArgs } from 'node:util';
import { setLogger } from '@grpc/grpc-js';
import {
  SPOKE_VERSION,
  boundHeapGrowth,
  MASTER_HEAP_HEADROOM_MB,
  createLogger,
  didYouMean,
  formatHelp,
  isSpokeError,
  unknownOptionMessage,
} from '@spoke/shared';
import { compileMasterOptions } from './options.js';
import { startMaster } from './master.js';
import { MASTER_FLAGS, MASTER_RUN_HELP } from './usage.js';

const USAGE = `usage:
  spoke-master run [--state-dir DIR] [--listen HOST:PORT] [--root DIR] [--socket PATH] [--metrics HOST:PORT]
                   [--build-source-dir DIR]... [--build-max-bytes N] [--build-max-entries N] [--build-max-ratio N]
                   [--acme-directory URL] [--acme-email E] [--acme-ca FILE]
  spoke-master version
(spoke-master run --help: each flag explained)`;

/** A count option: digits only, so "1e9" or "10G" are refused rather than guessed at. */
function count(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) <= 0) {
    process.stderr.write(`error: USAGE: --${flag} wants a positive whole number, not ${JSON.stringify(v)}\n${USAGE}\n`);
    process.exit(2);
  }
  return Number(v);
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (cmd === 'version' || cmd === '--version') {
    process.stdout.write(`spoke-master ${SPOKE_VERSION}\n`);
    return;
  }
  if (cmd !== 'run') {
    const guess = cmd ? didYouMean(cmd, ['run', 'version']) : undefined;
    process.stderr.write(
      `${cmd && cmd !== 'help' && cmd !== '--help' ? `error: USAGE: unknown command ${JSON.stringify(cmd)}${guess ? ` (did you mean "${guess}"?)` : ''}\n` : ''}${USAGE}\n`,
    );
    process.exit(cmd === 'help' || cmd === '--help' ? 0 : 2);
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(formatHelp('spoke-master', MASTER_RUN_HELP));
    return;
  }
  let values: Partial<
    Record<
      | 'state-dir'
      | 'listen'
      | 'root'
      | 'socket'
      | 'metrics'
      | 'build-max-bytes'
      | 'build-max-entries'
      | 'build-max-ratio'
      | 'acme-directory'
      | 'acme-email'
      | 'acme-ca',
      string
    >
  > & {
    'build-source-dir'?: string[];
  };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        'state-dir': { type: 'string' },
        listen: { type: 'string' },
        root: { type: 'string' },
        socket: { type: 'string' },
        metrics: { type: 'string' },
        'build-source-dir': { type: 'string', multiple: true },
        'build-max-bytes': { type: 'string' },
        'build-max-entries': { type: 'string' },
        'build-max-ratio': { type: 'string' },
        'acme-directory': { type: 'string' },
        'acme-email': { type: 'string' },
        'acme-ca': { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    process.stderr.write(`error: USAGE: ${unknownOptionMessage((e as Error).message, MASTER_FLAGS)}\n${USAGE}\n`);
    process.exit(2);
  }
  boundHeapGrowth(process.env, MASTER_HEAP_HEADROOM_MB);
  const opts = compileMasterOptions({
    stateDir: values['state-dir'],
    listen: values.listen,
    root: values.root,
    socket: values.socket,
    metrics: values.metrics,
    buildSourceDirs: values['build-source-dir'],
    buildMaxBytes: count('build-max-bytes', values['build-max-bytes']),
    buildMaxEntries: count('build-max-entries', values['build-max-entries']),
    buildMaxRatio: count('build-max-ratio', values['build-max-ratio']),
    acmeDirectory: values['acme-directory'],
    acmeEmail: values['acme-email'],
    acmeCa: values['acme-ca'],
  });
  const log = createLogger({ level: opts.logLevel, base: { daemon: 'master' } });
  // grpc-js writes its own lines to stderr (a taken port: "E No address added out of total 1
  // resolved" before our ADDRESS_IN_USE): into the log instead, at debug.
  const grpcLine = (...a: unknown[]) => log.debug({ grpc: a.map(String).join(' ') }, 'grpc-js');
  setLogger({ error: grpcLine, info: grpcLine, debug: grpcLine });
  const master = await startMaster(opts, { log });
  process.stdout.write(
    `spoke-master listening on ${master.listen}; CLI socket ${master.socket}${master.metrics ? `; metrics on http://${master.metrics}/metrics` : ''}\n`,
  );
  let stopping = false;
  const shutdown = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ sig }, 'shutting down');
    master.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (isSpokeError(e)) process.stderr.write(`error: ${e.code}: ${e.message}\n`);
  else process.stderr.write(`error: INTERNAL: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
