/**
 * The test door of `@spoke/master` (`import { … } from '@spoke/master/testkit'`): what the
 * end-to-end tests in test/ use of the master beyond its index. No daemon imports it, so nothing
 * here is in a bundle. test/architecture.test.ts keeps test/ to this door and the index.
 */
import type { EventEmitter } from 'node:events';
import type { wire } from '@spoke/shared';
import type { AgentHub } from './servers/hub.js';

export { AgentHub } from './servers/hub.js';
export type { AgentCommand } from '@spoke/shared';
export { drupal10Tree, drupal7Tree, wordpressTree } from './platforms/registry/fixtures.js';
export { writeTree } from './platforms/registry/testTree.js';
export type { TreeSpec } from './platforms/registry/testTree.js';
export { addAgent, freshNamespace } from './testutil.js';

/**
 * Attaches an in-memory stream to `hub` as `server`'s agent: the hub writes its commands to
 * `stream.write`, and takes what the stream emits as 'data' as the agent's events.
 */
export function attachInMemory(hub: AgentHub, server: string, stream: EventEmitter & { write(m: wire.MasterCommand): boolean; end(): void }): void {
  hub.attach(server, null, stream as unknown as Parameters<AgentHub['attach']>[2]);
}
