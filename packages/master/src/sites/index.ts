/**
 * Room `sites/`: sites on platforms (vocabulary and design: docs/sites.md).
 *
 * - tasks.ts        `SiteTasks`: submits every site task and runs install, verify, disable/enable,
 *                   alias add/rm/redirect and delete as steps with undo
 * - ops.ts          `SiteOps`: the operations those step lists are made of (agent calls, the
 *                   database, site files in the platform tree, converge, web server config)
 * - backuptasks.ts  backup and restore (archive I/O: backup.ts)
 * - migrate.ts      clone and migrate (renaming the data: rename.ts)
 * - import.ts       taking a site found on disk into Spoke (its settings read by readsettings.ts)
 * - login.ts        one-time login links
 * - settings.ts     rendering settings files (pure); drupal.ts: profile, locale, update lines
 * - cron.ts         the cron schedule (pure); cronrunner.ts the scheduler; cronstore.ts the history
 * - aliases.ts      drush site aliases (pure, plus writing them)
 *
 * Sites as records (domain, aliases, database facts, status) are namespace/sites.ts.
 */
export { SiteTasks, SITE_TASKS } from './tasks.js';
export { SiteOps } from './ops.js';
export { CronScheduler } from './cronrunner.js';
export { CronStore } from './cronstore.js';
