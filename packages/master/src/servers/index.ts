/**
 * Room `servers/`: the master's side of the agents.
 *
 * - ca.ts      the CA, enrollment tokens and certificates (`Enroller`)
 * - hub.ts     `AgentHub`: one Connect stream per agent — hello, heartbeats, presence, typed
 *              commands matched by id, the reconnect grace after a master start
 * - dumps.ts   transfers in flight between master and agent (database dumps, site files)
 * - verify.ts  the `server.verify` task
 *
 * Servers and clusters as records (names, membership, services) are namespace/servers.ts.
 */
export { Enroller, loadOrCreateCA, issueMasterCert, parseToken } from './ca.js';
export { AgentHub } from './hub.js';
export { DumpTransfers } from './dumps.js';
export { verifyServerTask } from './verify.js';
