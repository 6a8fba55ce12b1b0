/**
 * Site databases on the agent's MariaDB/MySQL server (agent.json `db`).
 */
export { SiteDatabases } from './sitedb.js';
export type { SiteDatabasesDeps, SiteDbSpec, SiteDbGrants, SiteDbDropped } from './sitedb.js';
export { parseDbSettings } from './settings.js';
export type { DbConfigFile, DbSettings } from './settings.js';
export { mysqlConnector, quoteIdent, grantDbIdent } from './sql.js';
export type { AdminConnect, AdminSession } from './sql.js';
