/**
 * Room `namespace/`: what exists and the hard rules about it, over SQLite.
 *
 * - store.ts       opening the database (WAL, 0600), the versioned migrations, statement cache
 * - namespace.ts   `Namespace`, the facade every caller uses (one method per rule or query)
 * - servers.ts     agent servers and clusters, services (detected / pinned), enrollment, revocation
 * - platforms.ts   platforms: name and path rules, registry, desired and observed tree hashes
 * - sites.ts       sites, their domains and aliases (unique across the namespace), the migrate switch
 * - sitereads.ts   reading sites: one site, listings a page at a time, what cron reads
 * - scope.ts       what the aggregates share (store, clock, presence)
 *
 * Every mutation is one transaction; a refusal throws a SpokeError with a stable code and
 * changes nothing.
 */
export { Namespace } from './namespace.js';
export type { AddPlatformInput, CreateSiteInput, CronSiteRow, DetectedServiceInfo, Presence } from './namespace.js';
export { openStore, type Db } from './store.js';
