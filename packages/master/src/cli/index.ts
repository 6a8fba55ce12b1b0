/**
 * Room `cli/`: the `spoke` command line.
 *
 * - cli.ts        `runCli`: global options, finding the command, usage errors, exit codes, help
 * - command.ts    what every command shares: its shape, printing, `follow`, and `taskCommand`
 *                 (start a task, follow it to its end, print the outcome)
 * - one file per noun: server.ts, cluster.ts, platform.ts, site.ts (with sitecron.ts,
 *                 sitebackup.ts, sitealiases.ts), task.ts, operator.ts (status, operator cert)
 * - client.ts     `OperatorApi`: the gRPC client, typed from the generated service
 * - format.ts     wire → JSON and tables for the operator
 *
 * `spoke up` is added by the entry point (up.ts), which needs the master's start-up code.
 */
export { runCli } from './cli.js';
export type { CliIO, Command, Ctx, ExtraCommand } from './cli.js';
