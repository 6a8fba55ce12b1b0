/**
 * The test door of `@spoke/agent` (`import { … } from '@spoke/agent/testkit'`): what the
 * end-to-end tests in test/ use of the agent beyond its index. No daemon imports it, so nothing
 * here is in a bundle. test/architecture.test.ts keeps test/ to this door and the index.
 */
import type { wire } from '@spoke/shared';
import type { MasterConnection } from './connection.js';

export type { HttpSettings } from './config.js';
export { startMariaDb } from './db/testserver.js';
export type { PrivateMariaDb } from './db/testserver.js';
export { SitePhp } from './php/sitephp.js';
export { SiteCron } from './sitecron.js';
export { SiteInstaller } from './siteinstall.js';
export { AgentTrees } from './sync.js';
export { commandRunner, WebConfig } from './webconfig.js';

/**
 * Links `conn` to a master in memory (no gRPC, no TLS): what the agent writes goes to `onEvent`;
 * the returned function hands it a command as if it came over its stream. The connection's
 * own command switch runs: only the transport is left out.
 */
export function linkInMemory(conn: MasterConnection, onEvent: (e: wire.AgentEvent) => void): (cmd: wire.MasterCommand) => void {
  // Element access keeps the private members type-checked: a change to them breaks this build.
  const onCommand = conn['onCommand'].bind(conn);
  type Stream = Parameters<typeof onCommand>[0];
  const stream = { write: (e: wire.AgentEvent) => (onEvent(e), true), cancel: () => undefined } as unknown as Stream;
  conn['stream'] = stream;
  // not awaited, as the connection's own stream handler does: onCommand answers every command,
  // a failed one with its error, and never rejects
  return (cmd) => void onCommand(stream, cmd);
}
