/**
 * `site import DOMAIN --platform P [--db-server S] [--rewrite-settings]`: takes a site found on
 * disk into Spoke — a `sites/<domain>/` dir in the master's tree of P (the registry lists them:
 * `settings.php` for Drupal, Spoke's per-site `wp-config.php` for WordPress) whose database
 * already exists on a db server Spoke manages (as an operator moving from Aegir has them).
 *
 * The database facts come from the settings file through a reader of literal PHP
 * (readsettings.ts): no code of the site runs on the master. The settings file is kept as it is
 * (the row is marked `own_settings`: verify, alias changes and restore do not render over it)
 * unless `--rewrite-settings`, which renders Spoke's own from the facts read.
 *
 * Steps (undo in brackets). Nothing that existed before the import is dropped or overwritten by
 * a rollback:
 * 1. `reserve`: the row (status `installing`) with the db facts read again from the file, the
 *    salt read from it (Drupal hash_salt) or a new one [the row is deleted]
 * 2. `adopt-database`: DbGrants with the settings' password to the platform's web servers — it
 *    fails with DB_NOT_FOUND when the database is missing, and makes the credentials work from
 *    the web servers [the user's accounts are put back to the hosts they had; the database is
 *    never dropped]
 * 3. `write-files`: the platform files (WordPress dispatcher/hosts.php, sites.php, D6 alias
 *    links) and, with --rewrite-settings, the site's settings [put back what was there]
 * 4. `converge`
 * 5. `configure-site`: ConfigureSite on every web server [RemoveSite of the vhost; files kept]
 * 6. `finish`: status `installed`
 */
import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkDomain, fail, isSpokeError } from '@spoke/shared';
import type { TaskContext } from '../tasks/engine.js';
import type { PlatformInfo } from '../types.js';
import type { PlatformKind } from '../platforms/registry/index.js';
import { readSiteSettings, settingsFileOf, type ImportedSettings } from './readsettings.js';
import { newSiteSalt, siteDir } from './settings.js';
import type { Step } from '../tasks/steps.js';
import type { ConfigureUndo, SiteOps, WriteUndo } from './ops.js';

/** The task kind of this module. */
export const IMPORT_TASKS = ['site.import'] as const;

/** What `site import` takes. */
export interface ImportSiteInput {
  domain: string;
  platform: string;
  /** The agent server holding the database; default: inferred (see `inferDbServer`). */
  dbServer?: string;
  /** Render Spoke's settings over the site's own. @default false */
  rewriteSettings?: boolean;
}

/** The task result of an import. */
export interface ImportResult {
  domain: string;
  url: string;
  database: string;
  dbServer: string;
  settings: 'kept' | 'rewritten';
}

const SALT_RE = /^[\x21-\x7e]{32,512}$/;
const MAX_SETTINGS_BYTES = 1024 * 1024;
const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1']);

/** Undo data of adopt-database. */
interface AdoptUndo {
  server: string;
  database: string;
  user: string;
  /** The account hosts of the user before (literal MySQL hosts). */
  before: string[];
  added: string[];
  removed: string[];
}

/** Plans and builds the steps of `site import`. */
export class SiteImporter {
  constructor(private readonly t: SiteOps) {}

  /**
   * Checks an import and returns the task to submit. Nothing is reserved yet.
   * @throws SpokeError INVALID_DOMAIN, DOMAIN_TAKEN, PLATFORM_NOT_FOUND, PLATFORM_NOT_VERIFIED,
   *   PLATFORM_KIND_UNSUPPORTED, SETTINGS_NOT_FOUND, SETTINGS_UNREADABLE, DB_SERVER_REQUIRED,
   *   SERVER_NOT_FOUND, SERVER_IS_CLUSTER, DB_EXISTS, INVALID_ARGUMENT
   */
  planImport(input: ImportSiteInput): { kind: string; entity: string; locks: string[]; params: Record<string, unknown> } {
    const domain = input.domain.toLowerCase();
    checkDomain(domain);
    const p = this.t.ns.getPlatform(input.platform);
    const { kind } = this.t.platformKind(p);
    this.t.ns.checkNewSite({ domain, platform: p.name });
    const read = this.read(p, kind, domain);
    const rewrite = input.rewriteSettings === true;
    if (rewrite) checkRewrite(read, kind);
    const chosen = input.dbServer ? { server: input.dbServer, why: 'named with --db-server' } : this.inferDbServer(p, read);
    this.t.ns.checkNewSite({ domain, platform: p.name, dbServer: chosen.server, db: { name: read.db.name, user: read.db.user, password: read.db.password } });
    return {
      kind: 'site.import',
      entity: `site:${domain}`,
      locks: [`platform:${p.name}`],
      params: { domain, platform: p.name, dbServer: chosen.server, dbServerWhy: chosen.why, kind, rewriteSettings: rewrite },
    };
  }

  /** Reads the site's settings file from the master's tree of the platform. */
  private read(p: PlatformInfo, kind: PlatformKind, domain: string): ImportedSettings {
    const root = this.t.trees.hostPath(p.path);
    const dir = siteDir(domain);
    const rel = settingsFileOf(kind, domain);
    const st = lstatOrNull(join(root, dir));
    if (!st) {
      throw fail(
        'SETTINGS_NOT_FOUND',
        `no ${dir} in platform ${p.name} (${root}): put the site dir there first (spoke platform verify ${p.name} lists the sites found on disk)`,
      );
    }
    if (!st.isDirectory())
      throw fail('SETTINGS_NOT_FOUND', `${dir} in platform ${p.name} is not a directory (a symlink or a file); Spoke imports a real site dir`);
    const f = lstatOrNull(join(root, rel));
    if (!f) throw fail('SETTINGS_NOT_FOUND', `${dir} in platform ${p.name} has no ${rel.slice(dir.length + 1)}; nothing tells Spoke the site's database`);
    if (!f.isFile()) throw fail('SETTINGS_UNREADABLE', `${rel} in platform ${p.name} is not a regular file (a symlink?); Spoke reads the site's own file only`);
    if (f.size > MAX_SETTINGS_BYTES) throw fail('SETTINGS_UNREADABLE', `${rel} is larger than 1 MiB; not a settings file Spoke reads`);
    return readSiteSettings(kind, domain, readFileSync(join(root, rel), 'utf8'));
  }

  /**
   * The db server of an imported database when none is named: the server of the sites already
   * recorded at the same address; for a loopback address, the platform's single web server when
   * it offers a database; else the only server offering one.
   * @throws SpokeError DB_SERVER_REQUIRED
   */
  inferDbServer(p: PlatformInfo, read: ImportedSettings): { server: string; why: string } {
    const at = `${read.db.host}:${read.db.port}`;
    const same = [
      ...new Set(
        this.t.ns
          .listSites()
          .filter((s) => s.dbServer && s.dbHost === read.db.host && s.dbPort === read.db.port)
          .map((s) => s.dbServer as string),
      ),
    ];
    if (same.length === 1) return { server: same[0] as string, why: `the sites recorded with database address ${at} use it` };
    const dbAgents = this.t.ns
      .listServers()
      .filter((s) => s.kind === 'agent' && s.enrolled && s.services.some((x) => x.kind === 'db' && (x.detectedImpl || x.pinnedImpl)))
      .map((s) => s.name);
    if (same.length === 0) {
      const web = this.t.ns.targets(p.server);
      if (LOOPBACK.has(read.db.host) && web.length === 1 && dbAgents.includes(web[0] as string)) {
        return { server: web[0] as string, why: `the settings connect to ${at}, the web server ${web[0]} itself` };
      }
      if (dbAgents.length === 1) return { server: dbAgents[0] as string, why: 'the only server offering a database' };
    }
    throw fail(
      'DB_SERVER_REQUIRED',
      `cannot tell which server holds database ${read.db.name} (the settings connect to ${at}${same.length > 1 ? `, used by sites on ${same.join(', ')}` : ''}); name it: --db-server NAME`,
    );
  }

  /** The steps of `site.import`. */
  steps(ctx: TaskContext, state: { result?: unknown }): Step[] {
    const params = ctx.task.params;
    const domain = String(params.domain);
    const platform = String(params.platform);
    const dbServer = String(params.dbServer);
    const kind = String(params.kind) as PlatformKind;
    const rewrite = params.rewriteSettings === true;
    let read: ImportedSettings | null = null;
    return [
      {
        name: 'reserve',
        do: async (c) => {
          const p = this.t.ns.getPlatform(platform);
          const r = this.read(p, this.t.platformKind(p).kind, domain);
          read = r;
          const keepSalt = r.salt !== null && SALT_RE.test(r.salt);
          if (r.salt !== null && !keepSalt)
            c.log(`the hash salt of ${r.file} does not fit Spoke's salt rules (32-512 printable characters); Spoke keeps a new salt of its own`, 'warn');
          this.t.ns.createSite({
            domain,
            platform,
            dbServer,
            aliases: [],
            status: 'installing',
            db: { name: r.db.name, user: r.db.user, password: r.db.password },
            salt: keepSalt ? (r.salt as string) : newSiteSalt(),
            ownSettings: !rewrite,
          });
          c.log(
            `reserved ${domain} on platform ${platform}: ${r.file} names database ${r.db.name}, user ${r.db.user} at ${r.db.host}:${r.db.port}${r.socket ? ` (socket ${r.socket})` : ''}; db server ${dbServer} (${String(params.dbServerWhy ?? '')})`,
          );
          for (const n of r.notes) c.log(`${r.file}: ${n}`, 'warn');
          if (rewrite && !keepSalt) {
            c.log(
              kind === 'wordpress'
                ? 'with --rewrite-settings the WordPress keys and salts change: every user logs in again'
                : 'with --rewrite-settings the hash salt changes: sessions and one-time links end',
              'warn',
            );
          }
          return { domain };
        },
        undo: async (c, data) => {
          const d = (data as { domain: string }).domain;
          if (this.t.siteExists(d)) this.t.ns.deleteSite(d);
          c.log(`released ${d}`);
        },
      },
      {
        name: 'adopt-database',
        do: async (c) => {
          const s = this.t.ns.getSite(domain);
          const hosts = this.t.webServers(platform);
          const r = await this.t.call(c, dbServer, {
            type: 'dbGrants',
            database: s.dbName as string,
            user: s.dbUser as string,
            password: this.t.ns.siteSecrets(domain).dbPassword,
            hosts,
          });
          const before = [...new Set([...r.hosts.filter((h) => !r.added.includes(h)), ...r.removed])].sort();
          c.log(
            `${dbServer}: database ${s.dbName} exists; user ${s.dbUser} now has accounts for ${r.hosts.join(', ')}${r.added.length ? ` (added ${r.added.join(', ')})` : ' (already there)'} with the password of the settings`,
          );
          if (r.removed.length)
            c.log(
              `${dbServer}: accounts of ${s.dbUser} for other hosts were removed: ${r.removed.join(', ')} (Spoke grants the platform's web servers only)`,
              'warn',
            );
          const settingsAt = read ? `${read.db.host}:${read.db.port}` : '';
          if (rewrite) this.t.recordDbAddress(c, domain, dbServer, r);
          else if (read) {
            this.t.ns.setSiteDbAddress(domain, read.db.host, read.db.port);
            const agentAt = r.siteHost ? `${r.siteHost}:${r.sitePort}` : '';
            if (agentAt && agentAt !== settingsAt)
              c.log(`the settings connect to ${settingsAt}; ${dbServer} says web servers reach it at ${agentAt} (the site's settings are kept as they are)`);
          }
          return { server: dbServer, database: s.dbName as string, user: s.dbUser as string, before, added: r.added, removed: r.removed } satisfies AdoptUndo;
        },
        undo: async (c, data) => {
          const d = data as AdoptUndo;
          if (d.added.length === 0 && d.removed.length === 0) return c.log(`${d.server}: accounts of ${d.user} were not changed; nothing to put back`);
          if (d.before.length === 0) {
            return c.log(
              `${d.server}: ${d.user} had no account before the import; the accounts added (${d.added.join(', ')}) are left, since removing the last one means dropping the user (drop them by hand if unwanted); the database is left as it is`,
              'warn',
            );
          }
          const pw = this.t.siteExists(domain) ? this.t.ns.siteSecrets(domain).dbPassword : '';
          if (!pw)
            throw fail('INTERNAL', `the password of ${d.user} is gone with the site row; put the accounts of ${d.user} back by hand: ${d.before.join(', ')}`);
          const r = await this.t.call(c, d.server, { type: 'dbGrants', database: d.database, user: d.user, password: pw, hosts: d.before });
          c.log(
            `${d.server}: accounts of ${d.user} are back to ${r.hosts.join(', ')}${d.removed.length ? ` (re-created ${d.removed.join(', ')} with the site's password, granted on ${d.database})` : ''}; the database is left as it is`,
          );
        },
      },
      {
        name: 'write-files',
        do: async (c) => this.t.writeFiles(c, platform, { site: domain }),
        undo: async (c, data) => this.t.restoreFiles(c, data as WriteUndo),
      },
      { name: 'converge', do: async (c) => void (await this.t.converge(c, platform)) },
      {
        name: 'configure-site',
        do: async (c) => this.t.configure(c, domain, true),
        // the vhost goes; the site's files dirs on the web servers stay (they may hold its data)
        undo: async (c, data) => this.t.unconfigure(c, data as ConfigureUndo, false),
      },
      {
        name: 'finish',
        do: async (c) => {
          this.t.ns.setSiteStatus(domain, 'installed', { installedMs: Date.now() });
          const s = this.t.ns.getSite(domain);
          const result: ImportResult = { domain, url: `http://${domain}/`, database: s.dbName as string, dbServer, settings: rewrite ? 'rewritten' : 'kept' };
          state.result = result;
          c.log(
            `site ${domain} imported${rewrite ? '; its settings are rendered by Spoke from now on' : `; its settings file ${settingsFileOf(kind, domain)} is kept as it is`}`,
          );
        },
      },
    ];
  }
}

/** --rewrite-settings renders Spoke's settings: refused when they would not fit the site's database. */
function checkRewrite(read: ImportedSettings, kind: PlatformKind): void {
  const want = kind === 'wordpress' ? 'wp_' : '';
  if (read.prefix !== want) {
    throw fail(
      'INVALID_ARGUMENT',
      `--rewrite-settings: ${read.file} uses the table prefix ${JSON.stringify(read.prefix)} and Spoke's settings use ${JSON.stringify(want)}; import without --rewrite-settings to keep the site's own settings`,
    );
  }
  if (read.socket) {
    throw fail(
      'INVALID_ARGUMENT',
      `--rewrite-settings: ${read.file} connects through the socket ${read.socket} and Spoke's settings use host:port; import without --rewrite-settings to keep the site's own settings`,
    );
  }
}

function lstatOrNull(path: string): ReturnType<typeof lstatSync> | null {
  try {
    return lstatSync(path);
  } catch (e) {
    if (isSpokeError(e)) throw e;
    return null;
  }
}
