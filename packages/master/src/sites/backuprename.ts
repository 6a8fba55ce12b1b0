/**
 * Backups follow a site through a rename (`site migrate --domain`): the rename moves the site's
 * archives to its new name (BackupStore.adopt, in the migrate's switch step), and a restore of a
 * backup taken under an earlier name renames its dump on the way in, as the migrate renamed the
 * live data: the site's file paths (`sites/OLD/files|private`, serialized-safe: dumprewrite.ts)
 * and the statements of rename.ts (WordPress: siteurl, home and links; Drupal: file paths),
 * run in the restore's own session.
 */
import type { Readable } from 'node:stream';
import type { TaskContext } from '../tasks/engine.js';
import type { PlatformKind } from '../platforms/registry/index.js';
import type { BackupStore } from './backup.js';
import { rewriteDump } from './dumprewrite.js';
import { dumpMarkerOffset, dumpSchema, dumpWithStatements, renameStatements } from './rename.js';

/**
 * The dump of a backup taken as `from`, renamed to `to`: written beside `dump` (`.renamed`);
 * returns what DbRestore reads. Logs what it changed.
 * @throws SpokeError INVALID_DOMAIN, DB_DUMP_INCOMPLETE (no completion marker)
 */
export async function renamedDump(ctx: TaskContext, dump: string, kind: PlatformKind, from: string, to: string): Promise<() => Readable> {
  const out = `${dump}.renamed`;
  const n = await rewriteDump(dump, out, kind, from, to);
  const statements = renameStatements(kind, from, to, await dumpSchema(out));
  const at = await dumpMarkerOffset(out);
  ctx.log(
    `renamed ${from} to ${to} in the backup's data: sites/${from}/files and private in ${n.values} stored value(s), ${statements.length} rename statement(s) run after the load`,
  );
  for (const [table, count] of Object.entries(n.skipped)) {
    ctx.log(`table ${table}: ${count} value(s) hold sites/${from}/ and look serialized but do not parse; left as they are`, 'warn');
  }
  return () => dumpWithStatements(out, at, statements.join('\n'));
}

/**
 * Moves the backups of `from` to `to` (BackupStore.adopt) and logs it; run by the migrate's
 * switch right after the rename, and again by its `finish` (idempotent: a master that stopped in
 * between leaves nothing behind).
 */
export function adoptBackups(ctx: TaskContext, store: BackupStore, from: string, to: string): void {
  const r = store.adopt(from, to);
  if (r.moved.length)
    ctx.log(`the ${r.moved.length} backup(s) of ${from} are now listed under ${to} (spoke site backup ls ${to}); each restores onto the renamed site`);
  for (const id of r.kept) ctx.log(`backup ${id} of ${from} stays in ${store.dir}/${from}: ${to} already has a backup with that id`, 'warn');
}
