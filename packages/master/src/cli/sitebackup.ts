/**
 * `spoke site backup …` and `spoke site restore`: back a site up, list and remove backups, put a
 * site back as it was.
 */
import { UsageError, print, taskCommand, taskResult, waitAndReport, type Command } from './command.js';
import { human, table } from './format.js';

/** `spoke site backup …` and `spoke site restore`. */
export const siteBackupCommands: Record<string, Command> = {
  'site backup': {
    usage: 'site backup DOMAIN [--no-wait] | site backup ls [DOMAIN] | site backup rm ID',
    summary: 'back a site up (database dump, user files fetched from its web server, site dir) into one archive on the master; list or remove backups',
    options: { 'no-wait': { type: 'boolean' } },
    args: [1, 2],
    async run(ctx, pos, o) {
      const [first, second] = pos as unknown as [string, string | undefined];
      if (first === 'ls' || first === 'list') {
        const r = await ctx.api().call('listBackups', { domain: second ?? '' });
        print(ctx, r.backups, () =>
          r.backups.length
            ? table(
                ['ID', 'DOMAIN', 'PLATFORM', 'REASON', 'CREATED', 'SIZE'],
                r.backups.map((b) => [b.id, b.domain, b.platform || '-', b.reason, b.createdMs ? new Date(b.createdMs).toISOString() : '-', human(b.bytes)]),
              )
            : `no backups${second ? ` of ${second}` : ''} (spoke site backup DOMAIN)\n`,
        );
        return 0;
      }
      if (first === 'rm') {
        if (!second) throw new UsageError('usage: spoke site backup rm ID');
        await ctx.api().call('removeBackup', { id: second });
        ctx.io.out(`removed backup ${second}\n`);
        return 0;
      }
      if (second !== undefined) throw new UsageError('usage: spoke site backup DOMAIN | site backup ls [DOMAIN] | site backup rm ID');
      const t = await ctx.api().call('backupSite', { name: first });
      return waitAndReport(ctx, t, o['no-wait'] === true, (final) => {
        const r = taskResult<{ id: string; path: string }>(final);
        if (r.id) ctx.io.out(`backup: ${r.id} (${r.path ?? ''})\n`);
      });
    },
  },
  'site restore': taskCommand({
    usage: 'site restore DOMAIN --backup ID [--no-wait]',
    summary:
      'put a site back as it was in a backup (database, user files, site dir; settings from the site facts); a backup of the current state is taken first and put back if the restore fails',
    options: { backup: { type: 'string' } },
    args: [1, 1],
    start(ctx, [domain], o) {
      if (typeof o.backup !== 'string') throw new UsageError('site restore needs --backup ID (see: spoke site backup ls DOMAIN)');
      return ctx.api().call('restoreSite', { domain, backupId: o.backup });
    },
    done(ctx, final) {
      const r = taskResult<{ safetyBackup: string | null }>(final);
      if (r.safetyBackup) ctx.io.out(`the state before the restore is backup ${r.safetyBackup}\n`);
    },
  }),
};
