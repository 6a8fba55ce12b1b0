/**
 * What `spoke-master run --help` says: the usage, each flag explained and an example.
 */
import type { HelpSpec } from '@spoke/shared';

/** `spoke-master run --help`. */
export const MASTER_RUN_HELP: HelpSpec = {
  usage:
    'run [--state-dir DIR] [--listen HOST:PORT] [--root DIR] [--socket PATH] [--metrics HOST:PORT] [--build-source-dir DIR]... [--build-max-bytes N] [--build-max-entries N] [--build-max-ratio N] [--acme-directory URL] [--acme-email E] [--acme-ca FILE]',
  summary: "Run the master daemon: the namespace, the task engine, the agents' port and the CLI socket, until stopped.",
  flags: [
    ['--state-dir DIR', 'where the master keeps its database, CA and socket (default ./.spoke; one master per dir)'],
    ['--listen HOST:PORT', 'the TLS port agents and remote operators reach (default 127.0.0.1:7443; port 0 picks a free one)'],
    ['--root DIR', "a directory standing in for / : the master's copies of platform trees live inside it (trials and tests)"],
    ['--socket PATH', "the CLI's unix socket (default <state-dir>/spoke.sock)"],
    [
      '--metrics HOST:PORT',
      'serve Prometheus /metrics and readiness /healthz, /readyz on this address (off by default; keep it on loopback or a private network)',
    ],
    ['--build-source-dir DIR', "a directory makefile builds may read local sources from (repeat for more; default: each makefile's own directory)"],
    ['--build-max-bytes N', 'bytes of files one build may produce (default 1 GiB)'],
    ['--build-max-entries N', 'files, directories and links one build may produce (default 100000)'],
    ['--build-max-ratio N', 'how many times its own size an archive may expand to (default 100)'],
    [
      '--acme-directory URL',
      'an ACME (RFC 8555) directory, https://, for site certificates (env SPOKE_ACME_DIRECTORY; default none: site https makes self-signed ones)',
    ],
    ['--acme-email E', "the ACME account's contact address (env SPOKE_ACME_EMAIL)"],
    ['--acme-ca FILE', "PEM bundle trusted for the ACME server's own TLS (env SPOKE_ACME_CA; default the system's)"],
  ],
  examples: ['spoke-master run --state-dir /var/lib/spoke --listen 0.0.0.0:7443'],
};

/** The flags `run` accepts (for "did you mean"). */
export const MASTER_FLAGS = [
  'state-dir',
  'listen',
  'root',
  'socket',
  'metrics',
  'build-source-dir',
  'build-max-bytes',
  'build-max-entries',
  'build-max-ratio',
  'acme-directory',
  'acme-email',
  'acme-ca',
];
