/**
 * @spoke/agent — the spoke-agent daemon: enrollment, the master connection, host checks.
 */
export { startAgent } from './agent.js';
export type { RunningAgent } from './agent.js';
export { compileAgentOptions, DEFAULT_ROOTS } from './config.js';
export type { CompiledAgentOptions } from './config.js';
export { enroll } from './enroll.js';
export { backoffDelay, MasterConnection } from './connection.js';
export { detectServices } from './detect.js';
