/**
 * What `spoke-agent [enroll|run] --help` says: each subcommand's usage, its flags explained and
 * an example.
 */
import { formatHelp, type HelpSpec } from '@spoke/shared';

/** The help of each subcommand. */
export const AGENT_HELP: Record<'enroll' | 'run', HelpSpec> = {
  enroll: {
    usage: 'enroll --master HOST:PORT --token TOKEN --state-dir DIR [--roots /var/aegir,/var/www] [--force]',
    summary: 'Join this web server to a master: trade the one-time token for a certificate kept in the state dir.',
    flags: [
      ['--master HOST:PORT', "the master's agent port (its --listen address)"],
      ['--token TOKEN', 'the one-time token from: spoke server token NAME (or set SPOKE_TOKEN)'],
      ['--state-dir DIR', 'where this agent keeps its identity and state (e.g. /var/lib/spoke-agent)'],
      ['--roots DIRS', 'comma-separated directories the master may deploy under (default /var/aegir,/var/www)'],
      ['--force', 'replace an identity the state dir already holds (without it enroll refuses with IDENTITY_EXISTS and the token is not spent)'],
    ],
    examples: ['spoke-agent enroll --master master.example.com:7443 --token spoke1.… --state-dir /var/lib/spoke-agent'],
  },
  run: {
    usage: 'run --state-dir DIR [--root DIR] [--master HOST:PORT] [--metrics HOST:PORT]',
    summary: 'Run the agent: keep a stream to the master, converge platforms and sites, until stopped.',
    flags: [
      ['--state-dir DIR', 'the state dir enroll wrote (identity, certificates, tree state)'],
      ['--root DIR', 'a directory standing in for / : every path the agent touches is inside it (trials and tests)'],
      ['--master HOST:PORT', 'dial this address instead of the one recorded at enroll'],
      [
        '--metrics HOST:PORT',
        'serve Prometheus /metrics and readiness /healthz, /readyz on this address (off by default; keep it on loopback or a private network)',
      ],
    ],
    examples: ['spoke-agent run --state-dir /var/lib/spoke-agent'],
  },
};

/** The flags each subcommand accepts (for "did you mean"). */
export const AGENT_FLAGS: Record<'enroll' | 'run', string[]> = {
  enroll: ['master', 'token', 'state-dir', 'roots', 'force'],
  run: ['state-dir', 'root', 'master', 'metrics'],
};
