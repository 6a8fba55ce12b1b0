/**
 * What the namespace's aggregates (servers.ts, platforms.ts, sites.ts) share: the store, the
 * clock, and where presence comes from.
 */
import type { Db } from './store.js';
import type { Clock } from '../types.js';

/** Tells whether an agent server is connected with a fresh heartbeat. */
export interface Presence {
  isOnline(server: string): boolean;
}

/** The store, clock and presence source every aggregate of the namespace reads and writes through. */
export interface NamespaceScope {
  db: Db;
  clock: Clock;
  /** Replaced once the agent hub exists (`Namespace.setPresence`). */
  presence: Presence;
}
