/**
 * `spoke site aliases`: drush site aliases of the Drupal sites, printed or written into a directory.
 */
import { resolve } from 'node:path';
import { wire } from '@spoke/shared/client';
import {
  ALIAS_FORMATS,
  DEFAULT_SSH_USER,
  DRUSHRC_FILE,
  checkSshUser,
  siteAliases,
  staleAliasFiles,
  writeAliasFiles,
  type AliasFormat,
} from '../sites/aliases.js';
import { LOCAL_SERVER } from '../local.js';
import { UsageError, print, type Command } from './command.js';

/** `spoke site aliases`. */
export const siteAliasCommands: Record<string, Command> = {
  'site aliases': {
    usage: 'site aliases [--format yaml|drushrc] [--out DIR] [--ssh-user U]',
    summary: `drush site aliases of every installed or disabled Drupal site: drush 9+ <domain with _ for .>.site.yml files (default) or drush 8 ${DRUSHRC_FILE}; printed, or written into DIR (which must exist); remote sites get host and user (--ssh-user, default ${DEFAULT_SSH_USER})`,
    options: { format: { type: 'string' }, out: { type: 'string' }, 'ssh-user': { type: 'string' } },
    args: [0, 0],
    async run(ctx, _p, o) {
      const format = (o.format as string | undefined) ?? 'yaml';
      if (!(ALIAS_FORMATS as readonly string[]).includes(format))
        throw new UsageError(`--format must be ${ALIAS_FORMATS.join(' or ')}, got ${JSON.stringify(format)}`);
      const sshUser = (o['ssh-user'] as string | undefined) ?? DEFAULT_SSH_USER;
      checkSshUser(sshUser);
      const api = ctx.api();
      const [sites, platforms, servers] = await Promise.all([api.allSites(), api.call('listPlatforms', {}), api.call('listServers', {})]);
      const set = siteAliases(
        {
          sites: sites.map((s) => ({ domain: s.domain, platform: s.platform, status: s.status })),
          platforms: platforms.platforms.map((p) => ({ name: p.name, path: p.path, server: p.server, kind: registryKind(p.registryJson) })),
          servers: servers.servers.map((s) => ({
            name: s.name,
            kind: s.kind === wire.ServerKind.SERVER_KIND_CLUSTER ? 'cluster' : 'agent',
            members: s.members,
            online: s.online,
            hostname: s.facts?.hostname ?? '',
            rootPrefix: s.facts?.rootPrefix ?? '',
          })),
        },
        // Over TCP the CLI may run anywhere: the one-box server is then as remote as any other.
        { format: format as AliasFormat, sshUser, localServer: ctx.conn.master ? null : LOCAL_SERVER },
      );
      for (const s of set.skipped) ctx.io.err(`note: no alias for ${s.domain}: ${s.reason}\n`);
      if (typeof o.out !== 'string') {
        print(ctx, { format, aliases: set.entries, skipped: set.skipped, files: set.files }, () => set.document);
        return 0;
      }
      const outDir = resolve(o.out);
      const written = writeAliasFiles(outDir, set.files);
      const stale = format === 'yaml' ? staleAliasFiles(outDir, written) : [];
      print(ctx, { format, aliases: set.entries, skipped: set.skipped, written, stale }, () => {
        let out = '';
        if (format === 'yaml') {
          set.entries.forEach((e, i) => (out += `wrote ${written[i] as string}: ${e.alias} → ${e.host ? `${sshUser}@${e.host}:` : ''}${e.root}\n`));
          if (!set.entries.length) out += `no aliases to write into ${outDir}\n`;
        } else
          out += `wrote ${written[0] as string}: ${set.entries.length} alias${set.entries.length === 1 ? '' : 'es'} (${set.entries.map((e) => e.alias).join(', ') || 'none'})\n`;
        return out;
      });
      for (const p of stale)
        ctx.io.err(`warning: ${p} is from an earlier run and its site has no alias now; remove it if drush should forget it: rm ${shellWord(p)}\n`);
      return 0;
    },
  },
};

/** `s` as one shell word, for commands printed to be pasted. */
function shellWord(s: string): string {
  return /^[\w./@%+=:,-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/** The registry's platform kind (`drupal8`, `wordpress`, …); null before the first verify. */
function registryKind(json: string): string | null {
  if (!json) return null;
  return (JSON.parse(json) as { kind?: string }).kind ?? null;
}
