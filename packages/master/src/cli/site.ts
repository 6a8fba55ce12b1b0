/**
 * `spoke site …`: list, show, install, verify, disable/enable, aliases of a site, import, login
 * link, delete, clone and migrate; `site cron`, `site backup`/`restore` and `site aliases` live in
 * their own files and are listed here in help order.
 */
import { type wire } from '@spoke/shared/client';
import { UsageError, kv, print, taskCommand, taskResult, waitAndReport, type Command, type Ctx } from './command.js';
import { parseDuration, siteJson, table, taskJson } from './format.js';
import { siteAliasCommands } from './sitealiases.js';
import { siteBackupCommands } from './sitebackup.js';
import { cronColumn, cronLines, siteCronCommands } from './sitecron.js';
import { httpsColumn, httpsJson, httpsLines, siteHttpsCommands } from './sitehttps.js';

/** One site as `site ls` / `site show` print it with -o json. */
const siteOutJson = (s: wire.Site) => Object.assign(siteJson(s), { https: httpsJson(s) });

/** `spoke site …`, in help order. */
export const siteCommands: Record<string, Command> = {
  'site ls': {
    usage: 'site ls [--platform P]',
    summary: 'list sites (also: site list)',
    options: { platform: { type: 'string' } },
    args: [0, 0],
    async run(ctx, _p, o) {
      const pages = ctx.api().sitePages((o.platform as string | undefined) ?? '');
      if (ctx.json) {
        // Printed a page at a time as the master sends them (100,000 sites need not be held at
        // once); the text is what one JSON.stringify(list, null, 2) of them all would print.
        let listed = 0;
        for await (const page of pages) {
          if (!page.length) continue;
          ctx.io.out(`${listed ? ',\n' : '[\n'}${JSON.stringify(page.map(siteOutJson), null, 2).slice(2, -2)}`);
          listed += page.length;
        }
        ctx.io.out(listed ? '\n]\n' : '[]\n');
        return 0;
      }
      const sites: wire.Site[] = [];
      for await (const page of pages) sites.push(...page);
      print(ctx, sites.map(siteOutJson), () =>
        sites.length
          ? table(
              ['DOMAIN', 'PLATFORM', 'SERVER', 'DB SERVER', 'STATUS', 'CRON', 'HTTPS', 'ALIASES'],
              sites.map((s) => [s.domain, s.platform, s.server, s.dbServer || '-', s.status, cronColumn(s.cron), httpsColumn(s), s.aliases.join(',') || '-']),
            )
          : 'no sites (spoke site install DOMAIN --platform P)\n',
      );
      return 0;
    },
  },
  'site show': {
    usage: 'site show DOMAIN',
    summary: 'show one site (an alias finds its site; the database password is never shown)',
    args: [1, 1],
    async run(ctx, [name]) {
      const s = await ctx.api().call('getSite', { name });
      print(ctx, siteOutJson(s), () =>
        kv([
          ['domain', s.domain],
          ['platform', s.platform],
          ['server', s.server],
          ['status', s.status],
          ['aliases', s.aliases.join(', ')],
          ['db server', s.dbServer],
          ['database', s.dbName ? `${s.dbName} (user ${s.dbUser})` : ''],
          ['db address', s.dbHost ? `${s.dbHost}:${s.dbPort}` : ''],
          ['settings', s.ownSettings ? "the site's own (imported; Spoke does not render them)" : 'rendered by Spoke'],
          ['alias redirect', s.redirectAliases ? 'on (301 to the domain)' : 'off'],
          ...s.formerNames.map((f): [string, string] => [
            'old name',
            `${f.name}: 301 to ${s.domain} until ${new Date(Number(f.untilMs)).toISOString()} (free it early: spoke site alias rm ${s.domain} ${f.name})`,
          ]),
          ['profile', s.profile],
          ['installed', s.installedMs ? new Date(s.installedMs).toISOString() : ''],
          ['created', new Date(s.createdMs).toISOString()],
          ...cronLines(s.domain, s.cron),
          ...httpsLines(s),
        ]),
      );
      return 0;
    },
  },
  ...siteCronCommands,
  ...siteHttpsCommands,
  'site install': {
    usage:
      'site install DOMAIN --platform P [--db-server S] [--alias A ...] [--redirect-aliases] [--title T] [--admin-user U] [--admin-email E] [--profile NAME] [--locale en] [--cron-interval 1h|off] [--https] [--no-wait]',
    summary:
      "create the database, settings and vhost of a new site and run its installer (Drupal 7/8+ through Drupal's installer API, WordPress); the admin password is printed once; rolled back on failure",
    options: {
      platform: { type: 'string' },
      'db-server': { type: 'string' },
      alias: { type: 'string', multiple: true },
      title: { type: 'string' },
      'admin-user': { type: 'string' },
      'admin-email': { type: 'string' },
      profile: { type: 'string' },
      locale: { type: 'string' },
      'cron-interval': { type: 'string' },
      'redirect-aliases': { type: 'boolean' },
      https: { type: 'boolean' },
      'no-wait': { type: 'boolean' },
    },
    args: [1, 1],
    async run(ctx, [domain], o) {
      if (typeof o.platform !== 'string') throw new UsageError('site install needs --platform P');
      const q = await ctx.api().call('installSite', {
        domain,
        platform: o.platform,
        dbServer: (o['db-server'] as string | undefined) ?? '',
        aliases: (o.alias as string[] | undefined) ?? [],
        title: (o.title as string | undefined) ?? '',
        adminUser: (o['admin-user'] as string | undefined) ?? '',
        adminEmail: (o['admin-email'] as string | undefined) ?? '',
        redirectAliases: o['redirect-aliases'] === true,
        profile: (o.profile as string | undefined) ?? '',
        locale: (o.locale as string | undefined) ?? '',
        cronInterval: (o['cron-interval'] as string | undefined) ?? '',
        https: o.https === true,
      });
      const t = q.task as wire.Task;
      type Result = { url?: string; admin?: { user: string; email: string } | null; installer?: { ran: boolean; reason: string }; profile?: string | null };
      const resultOf = (final: wire.Task): Result => (final.resultJson ? (JSON.parse(final.resultJson) as Result) : {});
      if (o['no-wait'] === true) {
        // The password is shown now or never: the master keeps it only until the installer ran.
        // stdout carries the task id alone (scripts read it); the password goes to the operator on stderr.
        print(ctx, { ...taskJson(t), adminPassword: q.adminPassword || null }, () => {
          if (q.adminPassword) ctx.io.err(`admin password (shown once; valid when task ${t.id} succeeds): ${q.adminPassword}\n`);
          return `${t.id}\n`;
        });
        return 0;
      }
      return waitAndReport(
        ctx,
        t,
        false,
        (final) => {
          const r = resultOf(final);
          if (r.url) ctx.io.out(`site: ${r.url}${r.profile ? ` (Drupal profile ${r.profile})` : ''}\n`);
          if (r.admin && q.adminPassword)
            ctx.io.out(`admin: ${r.admin.user} <${r.admin.email}>, password ${q.adminPassword} (shown once: keep it or change it after logging in)\n`);
          else if (r.installer && !r.installer.ran) ctx.io.out(`installer not run (${r.installer.reason}): finish the install in a browser\n`);
        },
        (final) => {
          const r = resultOf(final);
          return r.admin && q.adminPassword ? { admin: { ...r.admin, password: q.adminPassword } } : {};
        },
      );
    },
  },
  'site verify': taskCommand({
    usage: 'site verify DOMAIN [--no-wait]',
    summary: 'render the site settings again, converge the platform, configure the vhost and database grants; Drupal: report pending database updates',
    args: [1, 1],
    start: (ctx, [name]) => ctx.api().call('verifySite', { name }),
    done(ctx, final) {
      const r = taskResult<{ pendingUpdates: Array<{ module: string; update: string }> }>(final);
      if (r.pendingUpdates?.length) ctx.io.out(`pending database updates: ${r.pendingUpdates.map((u) => `${u.module} ${u.update}`).join(', ')}\n`);
      else if (r.pendingUpdates) ctx.io.out('pending database updates: none\n');
    },
  }),
  'site disable': taskCommand({
    usage: 'site disable DOMAIN [--no-wait]',
    summary: 'serve a 503 maintenance page for every name of the site',
    args: [1, 1],
    start: (ctx, [name]) => ctx.api().call('disableSite', { name }),
  }),
  'site enable': taskCommand({
    usage: 'site enable DOMAIN [--no-wait]',
    summary: 'serve a disabled site again',
    args: [1, 1],
    start: (ctx, [name]) => ctx.api().call('enableSite', { name }),
  }),
  'site alias': taskCommand({
    usage: 'site alias add|rm DOMAIN ALIAS [--no-wait] | site alias redirect DOMAIN on|off [--no-wait]',
    summary: 'add or remove a name the site answers to (settings and vhost follow); redirect on: the aliases answer with a 301 to the domain',
    args: [3, 3],
    start(ctx, pos) {
      const [op, site, alias] = pos as unknown as [string, string, string];
      if (op === 'redirect') {
        if (alias !== 'on' && alias !== 'off')
          throw new UsageError(`site alias redirect takes on or off, got ${JSON.stringify(alias)}\nusage: spoke site alias redirect DOMAIN on|off`);
        return ctx.api().call('setAliasRedirect', { domain: site, on: alias === 'on' });
      }
      if (op !== 'add' && op !== 'rm')
        throw new UsageError(
          `site alias takes add, rm or redirect, got ${JSON.stringify(op)}\nusage: spoke site alias add|rm DOMAIN ALIAS | site alias redirect DOMAIN on|off`,
        );
      return ctx.api().call(op === 'add' ? 'addAlias' : 'removeAlias', { site, alias });
    },
  }),
  'site import': taskCommand({
    usage: 'site import DOMAIN --platform P [--db-server S] [--rewrite-settings] [--no-wait]',
    summary:
      "take a site found on disk (sites/DOMAIN in the platform's tree on the master, with its settings file; its database existing) into Spoke: database adopted, vhost configured; its settings file is kept unless --rewrite-settings",
    options: { platform: { type: 'string' }, 'db-server': { type: 'string' }, 'rewrite-settings': { type: 'boolean' } },
    args: [1, 1],
    start(ctx, [domain], o) {
      if (typeof o.platform !== 'string') throw new UsageError('site import needs --platform P (spoke platform show P lists the sites on disk)');
      return ctx.api().call('importSite', {
        domain,
        platform: o.platform,
        dbServer: (o['db-server'] as string | undefined) ?? '',
        rewriteSettings: o['rewrite-settings'] === true,
      });
    },
    done(ctx, final) {
      const r = taskResult<{ url: string; settings: string }>(final);
      if (r.url) ctx.io.out(`site: ${r.url} (settings ${r.settings ?? 'kept'})\n`);
    },
  }),
  ...siteBackupCommands,
  'site login-url': {
    usage: 'site login-url DOMAIN',
    summary:
      "print a one-time login link made on a web server of the site (Drupal 7/8+: as drush uli, user 1, valid once within 24 h; WordPress: Spoke's must-use plugin, the first administrator, valid once for 15 min); Drupal 6: the login page",
    args: [1, 1],
    async run(ctx, [name]) {
      const r = await ctx.api().call('siteLoginUrl', { name });
      print(ctx, r, () => `${r.url}\n(${r.note})\n`);
      return 0;
    },
  },
  ...siteAliasCommands,
  'site delete': taskCommand({
    usage: 'site delete DOMAIN [--no-backup] [--no-wait]',
    summary: 'back the site up (kept; see site backup ls), then remove the vhost, site dir, files, database and user; --no-backup skips the backup',
    options: { 'no-backup': { type: 'boolean' } },
    args: [1, 1],
    start: (ctx, [domain], o) => ctx.api().call('deleteSite', { domain, noBackup: o['no-backup'] === true }),
  }),
  'site clone': taskCommand({
    usage: 'site clone DOMAIN NEW_DOMAIN [--platform P] [--db-server S] [--https] [--no-wait]',
    summary: 'copy a site (database, settings, user files, vhost) to a new domain; the source is untouched; rolled back on failure',
    options: { platform: { type: 'string' }, 'db-server': { type: 'string' }, https: { type: 'boolean' } },
    args: [2, 2],
    start: (ctx, [domain, newDomain], o) =>
      ctx.api().call('cloneSite', {
        domain,
        newDomain,
        platform: (o.platform as string | undefined) ?? '',
        dbServer: (o['db-server'] as string | undefined) ?? '',
        https: o.https === true,
      }),
    done: printSiteUrl,
  }),
  'site migrate': taskCommand({
    usage: 'site migrate DOMAIN --platform P [--domain NEW [--redirect-old-for 30d|0]] [--db-server S] [--https] [--no-wait]',
    summary:
      'move a site to another platform (and name, db server); the old copy serves until the new one is configured, and goes after the switch; a renamed site keeps its backups, and its old name answers a 301 to the new one for a grace period',
    options: {
      platform: { type: 'string' },
      domain: { type: 'string' },
      'db-server': { type: 'string' },
      https: { type: 'boolean' },
      'redirect-old-for': { type: 'string' },
    },
    args: [1, 1],
    start(ctx, [domain], o) {
      if (typeof o.platform !== 'string') throw new UsageError('site migrate needs --platform P');
      const grace = o['redirect-old-for'] as string | undefined;
      let redirectOldForS: number | undefined;
      if (grace !== undefined) {
        redirectOldForS = parseDuration(grace);
        if (redirectOldForS === undefined) throw new UsageError(`--redirect-old-for takes a duration such as 30d, 12h, 90m or 0, got ${JSON.stringify(grace)}`);
        if (typeof o.domain !== 'string') throw new UsageError('--redirect-old-for goes with --domain NEW (only a renamed site has an old name)');
      }
      return ctx.api().call('migrateSite', {
        domain,
        platform: o.platform,
        newDomain: (o.domain as string | undefined) ?? '',
        dbServer: (o['db-server'] as string | undefined) ?? '',
        https: o.https === true,
        ...(redirectOldForS !== undefined ? { redirectOldForS } : {}),
      });
    },
    done: printSiteUrl,
  }),
};

/** Prints the new site's address from a clone's or migrate's result. */
function printSiteUrl(ctx: Ctx, final: wire.Task): void {
  const r = taskResult<{ url: string }>(final);
  if (r.url) ctx.io.out(`site: ${r.url}\n`);
}
