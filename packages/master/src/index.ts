/**
 * @spoke/master — the master daemon and the `spoke` CLI.
 */
export { startMaster } from './master.js';
export type { RunningMaster } from './master.js';
export { compileMasterOptions } from './options.js';
export type { MasterOptions, CompiledMasterOptions } from './options.js';
export { runCli } from './cli/cli.js';
export type { CliIO } from './cli/cli.js';
export { Namespace } from './namespace/namespace.js';
export { openStore } from './namespace/store.js';
