/**
 * `spoke server …`: enrollment tokens, listing and showing servers, verify, removal, pinning a
 * service implementation.
 */
import { wire } from '@spoke/shared/client';
import { UsageError, kv, print, taskCommand, type Command } from './command.js';
import { ago, parseDuration, serverJson, table } from './format.js';

/** The table of `server ls` and `cluster ls`. */
export function serverTable(servers: wire.Server[]): string {
  return table(
    ['NAME', 'KIND', 'CLUSTER/MEMBERS', 'STATE', 'LAST SEEN', 'SERVICES', 'PLATFORMS'],
    servers.map((s) => {
      const j = serverJson(s);
      return [
        s.name,
        j.kind,
        j.kind === 'cluster' ? s.members.join(',') || '-' : s.cluster || '-',
        s.online ? 'online' : j.kind === 'agent' && !s.enrolled ? 'not enrolled' : 'offline',
        j.kind === 'cluster' ? '-' : ago(s.lastSeenMs),
        s.services.map((x) => `${x.kind}:${x.impl}${x.pinnedImpl ? '(pinned)' : ''}`).join(',') || '-',
        String(s.platforms.length),
      ];
    }),
  );
}

/** `spoke server …`. */
export const serverCommands: Record<string, Command> = {
  'server token': {
    usage: 'server token NAME [--cluster CLUSTER] [--ttl 1h] [--replace]',
    summary: 'print a one-time enrollment token for agent server NAME',
    options: { cluster: { type: 'string' }, ttl: { type: 'string' }, replace: { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [name], o) {
      let ttlSeconds = 0;
      if (typeof o.ttl === 'string') {
        const d = parseDuration(o.ttl);
        if (d === undefined) throw new UsageError(`--ttl ${o.ttl}: use a duration like 90s, 30m, 1h, 2d`);
        ttlSeconds = d;
      }
      const created = await ctx.api().call('createToken', {
        server: name as string,
        cluster: (o.cluster as string | undefined) ?? '',
        ttlSeconds,
        replace: o.replace === true,
      });
      const listen = (await ctx.api().call('status', {})).listen;
      const r = { ...created, listen };
      print(ctx, { token: r.token, server: r.server, cluster: r.cluster || null, expires: new Date(r.expiresMs).toISOString() }, () => {
        ctx.io.err(
          `token for ${r.server}${r.cluster ? ` (joins cluster ${r.cluster})` : ''}, single use, expires ${new Date(r.expiresMs).toISOString()}\n` +
            `on the web server: spoke-agent enroll --master <address of this master, port ${r.listen.split(':').pop() || '7443'}> --token <token> --state-dir /var/lib/spoke-agent\n`,
        );
        return `${r.token}\n`;
      });
      return 0;
    },
  },
  'server ls': {
    usage: 'server ls',
    summary: 'list servers and clusters with their state',
    args: [0, 0],
    async run(ctx) {
      const r = await ctx.api().call('listServers', {});
      print(ctx, r.servers.map(serverJson), () => (r.servers.length ? serverTable(r.servers) : 'no servers yet (create a token: spoke server token NAME)\n'));
      return 0;
    },
  },
  'server show': {
    usage: 'server show NAME',
    summary: 'show one server',
    args: [1, 1],
    async run(ctx, [name]) {
      const s = await ctx.api().call('getServer', { name });
      const j = serverJson(s);
      print(ctx, j, () =>
        kv([
          ['name', s.name],
          ['kind', j.kind],
          [j.kind === 'cluster' ? 'members' : 'cluster', j.kind === 'cluster' ? s.members.join(', ') : s.cluster],
          ['state', s.online ? 'online' : 'offline'],
          ['last seen', j.kind === 'agent' ? ago(s.lastSeenMs) : '-'],
          ['services', s.services.map((x) => `${x.kind}: ${x.impl || '?'}${x.version ? ` ${x.version}` : ''}${x.pinnedImpl ? ' (pinned)' : ''}`).join('; ')],
          ['platforms', s.platforms.join(', ')],
          ['hostname', s.facts?.hostname],
          ['roots', s.facts?.roots.join(', ')],
          ['agent', s.facts?.agentVersion ? `${s.facts.agentVersion} (capability ${s.capabilityVersion})` : ''],
          ['certificate', s.certFingerprint],
        ]),
      );
      return 0;
    },
  },
  'server verify': taskCommand({
    usage: 'server verify NAME [--no-wait]',
    summary: 'check services, writable roots and free disk on the agent (every member of a cluster)',
    args: [1, 1],
    start: (ctx, [name]) => ctx.api().call('verifyServer', { name }),
  }),
  'server rm': {
    usage: 'server rm NAME',
    summary: 'remove a server and revoke its certificate (refused while it hosts platforms)',
    args: [1, 1],
    async run(ctx, [name]) {
      await ctx.api().call('removeServer', { name, force: false, deleteFiles: false, offlineOk: false });
      print(ctx, { removed: name }, () => `removed ${name}; its certificate is revoked\n`);
      return 0;
    },
  },
  'server pin': {
    usage: 'server pin NAME [--http nginx|apache|""] [--db mariadb|mysql|""]',
    summary: 'pin the service implementation a server must use ("" unpins)',
    options: { http: { type: 'string' }, db: { type: 'string' } },
    args: [1, 1],
    async run(ctx, [name], o) {
      const kinds = (['http', 'db'] as const).filter((k) => typeof o[k] === 'string');
      if (kinds.length === 0) throw new UsageError('say what to pin: --http nginx|apache and/or --db mariadb|mysql');
      let s: wire.Server | undefined;
      for (const k of kinds) {
        s = await ctx.api().call('pinService', { server: name, kind: k, impl: o[k] as string });
      }
      print(ctx, serverJson(s as wire.Server), () => serverTable([s as wire.Server]));
      return 0;
    },
  },
};
