/**
 * The `spoke` CLI: parses arguments, calls the master, prints tables or JSON. `runCli` returns
 * the exit code: 0 success, 1 failure (a refused request or a failed task), 2 usage error.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SPOKE_VERSION, SpokeError, fail, isSpokeError, wire } from '@spoke/shared';
import { OperatorApi, type ConnectOptions } from './client.js';
import { formatCronInterval } from '../sites/cron.js';
import { ago, cronRunJson, human, parseDuration, platformJson, serverJson, siteJson, table, taskJson, taskStateFromName, taskStateName } from './format.js';
import { ALIAS_FORMATS, DEFAULT_SSH_USER, DRUSHRC_FILE, checkSshUser, siteAliases, staleAliasFiles, writeAliasFiles, type AliasFormat } from '../sites/aliases.js';
import { LOCAL_SERVER } from '../up.js';
import { httpsColumn, httpsCommands, httpsJson, httpsLines, statusHttpsLines } from './https.js';

/** Where the CLI writes. */
export interface CliIO {
  out(s: string): void;
  err(s: string): void;
}

/** Context every command gets. */
interface Ctx {
  io: CliIO;
  json: boolean;
  api(): OperatorApi;
  conn: ConnectOptions;
}

type OptSpec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>;

interface Command {
  /** e.g. "server token NAME [--cluster C] [--ttl 1h] [--replace]" */
  usage: string;
  summary: string;
  options?: OptSpec;
  /** Number of positionals required (and max allowed). */
  args: [number, number];
  run(ctx: Ctx, pos: [string, string], opts: Record<string, unknown>): Promise<number>;
}

/** Thrown for usage errors (exit 2). */
class UsageError extends Error {}

const GLOBAL: OptSpec = {
  'state-dir': { type: 'string' },
  socket: { type: 'string' },
  master: { type: 'string' },
  'cert-dir': { type: 'string' },
  output: { type: 'string', short: 'o' },
  help: { type: 'boolean', short: 'h' },
};

function print(ctx: Ctx, json: unknown, human: () => string): void {
  ctx.io.out(ctx.json ? `${JSON.stringify(json, null, 2)}\n` : human());
}

function kv(pairs: [string, string | number | boolean | null | undefined][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return `${pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 1)} ${v === null || v === undefined || v === '' ? '-' : String(v)}`).join('\n')}\n`;
}

function idArg(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`task id must be a positive number, got ${JSON.stringify(s)}`);
  return n;
}

function time(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

/**
 * Follows a task: prints its log lines as they come and returns its final state. `fromSeq`
 * skips lines already printed.
 */
async function follow(ctx: Ctx, id: number, opts: { quiet?: boolean } = {}): Promise<wire.Task> {
  const api = ctx.api();
  let last: wire.Task | undefined;
  let seq = 0;
  // The stream ends when the task reaches a final state; reconnect if the master restarts.
  for (let attempt = 0; ; attempt++) {
    try {
      await new Promise<void>((resolve, reject) => {
        const s = api.watch(id, seq);
        s.on('data', (ev: wire.TaskEvent) => {
          const e = ev.event;
          if (e?.$case === 'line') {
            seq = e.value.seq;
            if (!opts.quiet) {
              const lvl = e.value.level === 'info' ? '' : `${e.value.level.toUpperCase()} `;
              const line = `${time(e.value.tsMs)} ${lvl}${e.value.message}\n`;
              if (ctx.json) ctx.io.err(line);
              else ctx.io.out(line);
            }
          } else if (e?.$case === 'task') last = e.value;
        });
        s.on('error', reject);
        s.on('end', () => resolve());
      });
      if (last && [wire.TaskState.TASK_STATE_SUCCEEDED, wire.TaskState.TASK_STATE_FAILED, wire.TaskState.TASK_STATE_CANCELLED].includes(last.state)) {
        return last;
      }
    } catch (e) {
      const se = e as { code?: number };
      if (se.code !== 14 || attempt > 30) throw e; // 14 = UNAVAILABLE: master restarting
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/**
 * Follows a task to its end and prints it. `extraJson` adds fields to the `-o json` output of a
 * succeeded task (what only this CLI run was told, e.g. an install's admin password).
 */
async function waitAndReport(
  ctx: Ctx,
  task: wire.Task,
  noWait: boolean,
  onSuccess?: (final: wire.Task) => void,
  extraJson?: (final: wire.Task) => Record<string, unknown>,
): Promise<number> {
  if (noWait) {
    print(ctx, taskJson(task), () => `${task.id}\n`);
    return 0;
  }
  if (!ctx.json) ctx.io.out(`task ${task.id}: ${task.kind} on ${task.entity}\n`);
  const final = await follow(ctx, task.id);
  const ok = final.state === wire.TaskState.TASK_STATE_SUCCEEDED;
  const dur = final.startedMs && final.finishedMs ? ` in ${((final.finishedMs - final.startedMs) / 1000).toFixed(1)}s` : '';
  print(ctx, { ...taskJson(final), ...(ok && extraJson ? extraJson(final) : {}) }, () => `task ${final.id} ${taskStateName(final.state)}${dur}\n`);
  if (!ok && !ctx.json) ctx.io.err(`error: ${final.errorCode || 'TASK_FAILED'}: ${final.errorMessage || 'task failed'}\n`);
  if (ok && !ctx.json) onSuccess?.(final);
  return ok ? 0 : 1;
}

function serverTable(servers: wire.Server[]): string {
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

const COMMANDS: Record<string, Command> = {
  status: {
    usage: 'status',
    summary: 'show the master: address, CA fingerprint, counts',
    args: [0, 0],
    async run(ctx) {
      const s = await ctx.api().call('status', {});
      print(ctx, { ...s, started: new Date(s.startedMs).toISOString() }, () =>
        kv([
          ['version', s.version],
          ['listen', s.listen],
          ['state dir', s.stateDir],
          ['root', s.root || '/'],
          ['CA fingerprint', s.caFingerprint],
          ['started', new Date(s.startedMs).toISOString()],
          ['servers', `${s.servers} (${s.serversOnline} agents online)`],
          ['platforms', s.platforms],
          ['sites', s.sites],
          ['tasks', `${s.tasksRunning} running, ${s.tasksQueued} queued`],
          ...statusHttpsLines(s),
        ]),
      );
      return 0;
    },
  },

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
  'server verify': {
    usage: 'server verify NAME [--no-wait]',
    summary: 'check services, writable roots and free disk on the agent (every member of a cluster)',
    options: { 'no-wait': { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [name], o) {
      const t = await ctx.api().call('verifyServer', { name });
      return waitAndReport(ctx, t, o['no-wait'] === true);
    },
  },
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

  'cluster create': {
    usage: 'cluster create NAME --member A [--member B ...]',
    summary: 'group agent servers into a cluster that acts as one web server',
    options: { member: { type: 'string', multiple: true } },
    args: [1, 1],
    async run(ctx, [name], o) {
      const s = await ctx.api().call('createCluster', {
        name,
        members: (o.member as string[] | undefined) ?? [],
      });
      print(ctx, serverJson(s), () => `created cluster ${s.name} with ${s.members.join(', ')}\n`);
      return 0;
    },
  },
  'cluster add': {
    usage: 'cluster add NAME MEMBER',
    summary: 'add an agent server to a cluster',
    args: [2, 2],
    async run(ctx, [cluster, member]) {
      const s = await ctx.api().call('addClusterMember', { cluster, member });
      print(ctx, serverJson(s), () => `cluster ${s.name}: ${s.members.join(', ')}\n`);
      return 0;
    },
  },
  'cluster remove': {
    usage: 'cluster remove NAME MEMBER',
    summary: 'take an agent server out of a cluster (it stays enrolled)',
    args: [2, 2],
    async run(ctx, [cluster, member]) {
      const s = await ctx.api().call('removeClusterMember', { cluster, member });
      print(ctx, serverJson(s), () => `cluster ${s.name}: ${s.members.join(', ')}\n`);
      return 0;
    },
  },
  'cluster ls': {
    usage: 'cluster ls',
    summary: 'list clusters and their members',
    args: [0, 0],
    async run(ctx) {
      const r = await ctx.api().call('listServers', {});
      const cl = r.servers.filter((s) => s.kind === wire.ServerKind.SERVER_KIND_CLUSTER);
      print(ctx, cl.map(serverJson), () => (cl.length ? serverTable(cl) : 'no clusters\n'));
      return 0;
    },
  },

  'platform add': {
    usage: 'platform add NAME --path P --server S [--makefile F | --git URL [--ref R]] [--live] [--exclude PATTERN ...] [--no-verify] [--no-wait]',
    summary: 'register a platform (its path is reserved everywhere), build it (--makefile/--git) and converge it to its servers',
    options: {
      path: { type: 'string' },
      server: { type: 'string' },
      makefile: { type: 'string' },
      git: { type: 'string' },
      ref: { type: 'string' },
      live: { type: 'boolean' },
      exclude: { type: 'string', multiple: true },
      'no-verify': { type: 'boolean' },
      'no-wait': { type: 'boolean' },
    },
    args: [1, 1],
    async run(ctx, [name], o) {
      if (typeof o.path !== 'string' || typeof o.server !== 'string') throw new UsageError('platform add needs --path and --server');
      if (o.makefile && o.git) throw new UsageError('use either --makefile or --git, not both');
      if (o.ref && !o.git) throw new UsageError('--ref goes with --git');
      const K = wire.PlatformSourceKind;
      let source: wire.PlatformSource = { kind: K.PLATFORM_SOURCE_KIND_EXISTING, makefile: '', makefileName: '', makefileDir: '', gitUrl: '', gitRef: '' };
      if (typeof o.makefile === 'string') {
        let text: string;
        let dir: string;
        try {
          text = readFileSync(o.makefile, 'utf8');
          // Relative includes, patches and downloads resolve against the makefile's own directory.
          dir = dirname(realpathSync(o.makefile));
        } catch (e) {
          throw fail('INVALID_ARGUMENT', `cannot read makefile ${o.makefile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
        source = { ...source, kind: K.PLATFORM_SOURCE_KIND_MAKEFILE, makefile: text, makefileName: basename(o.makefile), makefileDir: dir };
      } else if (typeof o.git === 'string') {
        // A local repository given as a relative path is sent as an absolute one.
        const url = !/^[a-z][a-z0-9+.-]*:\/\//i.test(o.git) && !/^[^/]+:/.test(o.git) && existsSync(o.git) ? resolve(o.git) : o.git;
        source = { ...source, kind: K.PLATFORM_SOURCE_KIND_GIT, gitUrl: url, gitRef: (o.ref as string | undefined) ?? '' };
      }
      const r = await ctx.api().call('addPlatform', {
        name,
        path: o.path,
        server: o.server,
        source,
        live: o.live === true,
        excludes: (o.exclude as string[] | undefined) ?? [],
        noVerify: o['no-verify'] === true,
      });
      const p = r.platform as wire.Platform;
      if (!ctx.json || !r.task) {
        const msg = `added platform ${p.name} at ${p.path} on ${p.server}${r.task ? '' : ` (status ${p.status})`}\n`;
        if (ctx.json) print(ctx, platformJson(p), () => msg);
        else ctx.io.out(msg);
      }
      return r.task ? waitAndReport(ctx, r.task, o['no-wait'] === true) : 0;
    },
  },
  'platform verify': {
    usage: 'platform verify NAME [--no-wait]',
    summary: 'build the tree if missing (makefile/git), rescan it and converge every server that hosts the platform',
    options: { 'no-wait': { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [name], o) {
      const t = await ctx.api().call('verifyPlatform', { name });
      return waitAndReport(ctx, t, o['no-wait'] === true);
    },
  },
  'platform diff': {
    usage: 'platform diff A B',
    summary: 'what changes for sites moving from platform A to B: per module/theme upgrade, downgrade, missing, same',
    args: [2, 2],
    async run(ctx, [from, to]) {
      const r = await ctx.api().call('diffPlatforms', { from, to });
      type Entry = { name: string; type: string; from: string | null; to: string | null; status: string };
      const d = JSON.parse(r.diffJson) as {
        core: { kindFrom: string; kindTo: string; from: string | null; to: string | null; status: string };
        modules: Entry[];
        themes: Entry[];
        profiles: Entry[];
        summary: Record<string, number>;
        schemaDowngrades: string[];
      };
      print(ctx, d, () => {
        let out = `core: ${d.core.kindFrom} ${d.core.from ?? '?'} -> ${d.core.kindTo} ${d.core.to ?? '?'} (${d.core.status})\n`;
        const rows = [...d.profiles, ...d.modules, ...d.themes].filter((e) => e.status !== 'same');
        out += rows.length
          ? table(['NAME', 'TYPE', 'FROM', 'TO', 'STATUS'], rows.map((e) => [e.name, e.type, e.from ?? '-', e.to ?? '-', e.status]))
          : 'every module, theme and profile is the same\n';
        out += `summary: ${Object.entries(d.summary).map(([k, v]) => `${v} ${k}`).join(', ')}\n`;
        if (d.schemaDowngrades.length) out += `schema downgrades (blocks a migrate): ${d.schemaDowngrades.join(', ')}\n`;
        return out;
      });
      return 0;
    },
  },
  'platform status': {
    usage: 'platform status NAME',
    summary: 'desired vs observed tree per server, drift (hand edits) before repair, and conflicts with user data',
    args: [1, 1],
    async run(ctx, [name]) {
      const s = await ctx.api().call('platformStatus', { name }, 120_000);
      const short = (h: string) => (h ? h.slice(0, 12) : '-');
      const json = {
        platform: s.platform,
        desiredRootHash: s.desiredRootHash || null,
        files: s.files,
        bytes: s.bytes,
        servers: s.servers.map((x) => ({
          server: x.server,
          online: x.online,
          inSync: x.inSync,
          observedRootHash: x.observedRootHash || null,
          committedRootHash: x.committedRootHash || null,
          drift: { changed: x.driftChanged, added: x.driftAdded, removed: x.driftRemoved, total: Number(x.driftTotal) },
          conflicts: x.conflicts.map((c) => ({ path: c.path, wanted: c.wanted, userData: c.userData, advice: c.advice })),
          error: x.error || null,
        })),
      };
      print(ctx, json, () => {
        let out = `platform ${s.platform}: desired ${short(s.desiredRootHash)} (${s.files} files, ${human(Number(s.bytes))})\n`;
        out += table(
          ['SERVER', 'STATE', 'OBSERVED', 'LAST CONVERGED', 'DRIFT'],
          s.servers.map((x) => [
            x.server,
            !x.online ? 'offline' : x.error ? 'error' : x.conflicts.length ? 'conflict' : x.inSync ? 'in sync' : 'behind',
            short(x.observedRootHash),
            short(x.committedRootHash),
            x.error ? x.error : String(x.driftTotal),
          ]),
        );
        for (const x of s.servers) {
          const lines = [...x.driftChanged.map((p) => `  ~ ${p}`), ...x.driftAdded.map((p) => `  + ${p}`), ...x.driftRemoved.map((p) => `  - ${p}`)];
          if (lines.length) out += `drift on ${x.server} (changed ~, added +, removed -):\n${lines.join('\n')}\n`;
          if (Number(x.driftTotal) > lines.length) out += `  … ${Number(x.driftTotal) - lines.length} more\n`;
          for (const c of x.conflicts) out += `conflict: ${c.advice}\n`;
        }
        return out;
      });
      return 0;
    },
  },
  'platform ls': {
    usage: 'platform ls',
    summary: 'list platforms',
    args: [0, 0],
    async run(ctx) {
      const r = await ctx.api().call('listPlatforms', {});
      print(ctx, r.platforms.map(platformJson), () =>
        r.platforms.length
          ? table(
              ['NAME', 'SERVER', 'PATH', 'SOURCE', 'STATUS', 'SITES'],
              r.platforms.map((p) => [p.name, p.server, p.path, platformJson(p).source.kind, p.status, p.sites.length]),
            )
          : 'no platforms yet (spoke platform add NAME --path P --server S)\n',
      );
      return 0;
    },
  },
  'platform show': {
    usage: 'platform show NAME',
    summary: 'show one platform (-o json includes the registry)',
    args: [1, 1],
    async run(ctx, [name]) {
      const p = await ctx.api().call('getPlatform', { name });
      const j = platformJson(p);
      print(ctx, j, () =>
        kv([
          ['name', p.name],
          ['path', p.path],
          ['server', p.server],
          ['source', j.source.kind === 'git' ? `git ${p.source?.gitUrl}${p.source?.gitRef ? ` @ ${p.source.gitRef}` : ''}` : j.source.kind === 'makefile' ? `makefile ${p.source?.makefileName}${p.source?.makefileDir ? ` (from ${p.source.makefileDir})` : ''}` : 'existing tree'],
          ['status', p.status],
          ['live sync', p.live ? 'on' : 'off'],
          ['tree', p.desiredRootHash ? p.desiredRootHash.slice(0, 16) : 'not scanned yet'],
          ['kind', registrySummary(p.registryJson)],
          ['excludes', p.excludes.join(', ')],
          ['sites', p.sites.join(', ')],
          ['sites on disk', sitesOnDisk(p).join(', ')],
          ['created', j.created],
        ]),
      );
      return 0;
    },
  },
  'platform rm': {
    usage: 'platform rm NAME [--force] [--delete-files] [--offline-ok] [--no-wait]',
    summary:
      'remove a platform: its web server config and tree state on every server, then its record (refused while it has sites; --force deletes them first, each backed up; --delete-files also deletes its tree on the servers and the master, user files kept; --offline-ok goes on past offline servers, which keep the config)',
    options: { force: { type: 'boolean' }, 'delete-files': { type: 'boolean' }, 'offline-ok': { type: 'boolean' }, 'no-wait': { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [name], o) {
      const t = await ctx.api().call('removePlatform', {
        name: name as string,
        force: o.force === true,
        deleteFiles: o['delete-files'] === true,
        offlineOk: o['offline-ok'] === true,
      });
      return waitAndReport(ctx, t, o['no-wait'] === true, () => ctx.io.out(`removed platform ${name as string}\n`));
    },
  },

  'site ls': {
    usage: 'site ls [--platform P]',
    summary: 'list sites (also: site list)',
    options: { platform: { type: 'string' } },
    args: [0, 0],
    async run(ctx, _p, o) {
      const r = await ctx.api().call('listSites', { platform: (o.platform as string | undefined) ?? '' });
      print(ctx, r.sites.map((s) => ({ ...siteJson(s), https: httpsJson(s) })), () =>
        r.sites.length
          ? table(
              ['DOMAIN', 'PLATFORM', 'SERVER', 'DB SERVER', 'STATUS', 'CRON', 'HTTPS', 'ALIASES'],
              r.sites.map((s) => [s.domain, s.platform, s.server, s.dbServer || '-', s.status, cronColumn(s.cron), httpsColumn(s), s.aliases.join(',') || '-']),
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
      print(ctx, { ...siteJson(s), https: httpsJson(s) }, () =>
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
  'site cron': {
    usage: 'site cron DOMAIN [--interval 15m|1h|1d|off] [--history]',
    summary:
      "run the site's cron now on one of its web servers and wait for it (Drupal 7/8+ with the site's cron key, WordPress wp-cron.php, MediaWiki runJobs.php; recorded in the history like a scheduled run); --interval changes its schedule (default 1h; off stops it); --history lists its last runs",
    options: { interval: { type: 'string' }, history: { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [domain], o) {
      if (typeof o.interval === 'string') {
        const s = await ctx.api().call('setSiteCron', { domain, interval: o.interval });
        print(ctx, siteJson(s), () => kv(cronLines(s.domain, s.cron)));
        return 0;
      }
      if (o.history === true) {
        const r = await ctx.api().call('listCronRuns', { name: domain });
        print(ctx, r.runs.map(cronRunJson), () =>
          r.runs.length
            ? table(
                ['STARTED', 'TRIGGER', 'SERVER', 'DURATION', 'RESULT', 'MESSAGE'],
                r.runs.map((x) => [new Date(x.startedMs).toISOString(), x.trigger, x.server || '-', seconds(x.durationMs), x.ok ? 'ok' : `failed (${x.errorCode})`, x.message]),
              )
            : `no cron runs of ${domain} yet (spoke site cron ${domain} runs it now)\n`,
        );
        return 0;
      }
      const run = await ctx.api().call('runSiteCron', { name: domain }, 16 * 60_000);
      const where = run.server ? ` on ${run.server}` : '';
      if (!run.ok) {
        if (ctx.json) ctx.io.out(`${JSON.stringify(cronRunJson(run), null, 2)}\n`);
        ctx.io.err(`error: ${run.errorCode || 'SITE_CRON_FAILED'}: cron of ${run.domain} failed${where} after ${seconds(run.durationMs)}: ${run.message}\n`);
        return 1;
      }
      print(ctx, cronRunJson(run), () => `cron of ${run.domain} ran${where} in ${seconds(run.durationMs)}: ${run.message}\n`);
      return 0;
    },
  },
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
        print(ctx, { ...taskJson(t), adminPassword: q.adminPassword || null }, () =>
          `${t.id}\n${q.adminPassword ? `admin password (shown once; valid when task ${t.id} succeeds): ${q.adminPassword}\n` : ''}`,
        );
        return 0;
      }
      return waitAndReport(
        ctx,
        t,
        false,
        (final) => {
          const r = resultOf(final);
          if (r.url) ctx.io.out(`site: ${r.url}${r.profile ? ` (Drupal profile ${r.profile})` : ''}\n`);
          if (r.admin && q.adminPassword) ctx.io.out(`admin: ${r.admin.user} <${r.admin.email}>, password ${q.adminPassword} (shown once: keep it or change it after logging in)\n`);
          else if (r.installer && !r.installer.ran) ctx.io.out(`installer not run (${r.installer.reason}): finish the install in a browser\n`);
        },
        (final) => {
          const r = resultOf(final);
          return r.admin && q.adminPassword ? { admin: { ...r.admin, password: q.adminPassword } } : {};
        },
      );
    },
  },
  'site verify': {
    usage: 'site verify DOMAIN [--no-wait]',
    summary: 'render the site settings again, converge the platform, configure the vhost and database grants; Drupal: report pending database updates',
    options: { 'no-wait': { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [name], o) {
      const t = await ctx.api().call('verifySite', { name });
      return waitAndReport(ctx, t, o['no-wait'] === true, (final) => {
        const r = final.resultJson ? (JSON.parse(final.resultJson) as { pendingUpdates?: Array<{ module: string; update: string }> }) : {};
        if (r.pendingUpdates?.length) ctx.io.out(`pending database updates: ${r.pendingUpdates.map((u) => `${u.module} ${u.update}`).join(', ')}\n`);
        else if (r.pendingUpdates) ctx.io.out('pending database updates: none\n');
      });
    },
  },
  'site disable': {
    usage: 'site disable DOMAIN [--no-wait]',
    summary: 'serve a 503 maintenance page for every name of the site',
    options: { 'no-wait': { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [name], o) {
      const t = await ctx.api().call('disableSite', { name });
      return waitAndReport(ctx, t, o['no-wait'] === true);
    },
  },
  'site enable': {
    usage: 'site enable DOMAIN [--no-wait]',
    summary: 'serve a disabled site again',
    options: { 'no-wait': { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [name], o) {
      const t = await ctx.api().call('enableSite', { name });
      return waitAndReport(ctx, t, o['no-wait'] === true);
    },
  },
  'site alias': {
    usage: 'site alias add|rm DOMAIN ALIAS [--no-wait] | site alias redirect DOMAIN on|off [--no-wait]',
    summary: 'add or remove a name the site answers to (settings and vhost follow); redirect on: the aliases answer with a 301 to the domain',
    options: { 'no-wait': { type: 'boolean' } },
    args: [3, 3],
    async run(ctx, pos, o) {
      const [op, site, alias] = pos as unknown as [string, string, string];
      if (op === 'redirect') {
        if (alias !== 'on' && alias !== 'off') throw new UsageError(`site alias redirect takes on or off, got ${JSON.stringify(alias)}\nusage: spoke site alias redirect DOMAIN on|off`);
        const t = await ctx.api().call('setAliasRedirect', { domain: site, on: alias === 'on' });
        return waitAndReport(ctx, t, o['no-wait'] === true);
      }
      if (op !== 'add' && op !== 'rm') throw new UsageError(`site alias takes add, rm or redirect, got ${JSON.stringify(op)}\nusage: spoke site alias add|rm DOMAIN ALIAS | site alias redirect DOMAIN on|off`);
      const t = await ctx.api().call(op === 'add' ? 'addAlias' : 'removeAlias', { site, alias });
      return waitAndReport(ctx, t, o['no-wait'] === true);
    },
  },
  'site import': {
    usage: 'site import DOMAIN --platform P [--db-server S] [--rewrite-settings] [--no-wait]',
    summary:
      "take a site found on disk (sites/DOMAIN in the platform's tree on the master, with its settings file; its database existing) into Spoke: database adopted, vhost configured; its settings file is kept unless --rewrite-settings",
    options: { platform: { type: 'string' }, 'db-server': { type: 'string' }, 'rewrite-settings': { type: 'boolean' }, 'no-wait': { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [domain], o) {
      if (typeof o.platform !== 'string') throw new UsageError('site import needs --platform P (spoke platform show P lists the sites on disk)');
      const t = await ctx.api().call('importSite', {
        domain: domain as string,
        platform: o.platform,
        dbServer: (o['db-server'] as string | undefined) ?? '',
        rewriteSettings: o['rewrite-settings'] === true,
      });
      return waitAndReport(ctx, t, o['no-wait'] === true, (final) => {
        const r = final.resultJson ? (JSON.parse(final.resultJson) as { url?: string; settings?: string }) : {};
        if (r.url) ctx.io.out(`site: ${r.url} (settings ${r.settings ?? 'kept'})\n`);
      });
    },
  },
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
        const r = final.resultJson ? (JSON.parse(final.resultJson) as { id?: string; path?: string }) : {};
        if (r.id) ctx.io.out(`backup: ${r.id} (${r.path ?? ''})\n`);
      });
    },
  },
  'site restore': {
    usage: 'site restore DOMAIN --backup ID [--no-wait]',
    summary: 'put a site back as it was in a backup (database, user files, site dir; settings from the site facts); a backup of the current state is taken first and put back if the restore fails',
    options: { backup: { type: 'string' }, 'no-wait': { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [domain], o) {
      if (typeof o.backup !== 'string') throw new UsageError('site restore needs --backup ID (see: spoke site backup ls DOMAIN)');
      const t = await ctx.api().call('restoreSite', { domain, backupId: o.backup });
      return waitAndReport(ctx, t, o['no-wait'] === true, (final) => {
        const r = final.resultJson ? (JSON.parse(final.resultJson) as { safetyBackup?: string | null }) : {};
        if (r.safetyBackup) ctx.io.out(`the state before the restore is backup ${r.safetyBackup}\n`);
      });
    },
  },
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
  'site aliases': {
    usage: 'site aliases [--format yaml|drushrc] [--out DIR] [--ssh-user U]',
    summary: `drush site aliases of every installed or disabled Drupal site: drush 9+ <domain with _ for .>.site.yml files (default) or drush 8 ${DRUSHRC_FILE}; printed, or written into DIR (which must exist); remote sites get host and user (--ssh-user, default ${DEFAULT_SSH_USER})`,
    options: { format: { type: 'string' }, out: { type: 'string' }, 'ssh-user': { type: 'string' } },
    args: [0, 0],
    async run(ctx, _p, o) {
      const format = (o.format as string | undefined) ?? 'yaml';
      if (!(ALIAS_FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format must be ${ALIAS_FORMATS.join(' or ')}, got ${JSON.stringify(format)}`);
      const sshUser = (o['ssh-user'] as string | undefined) ?? DEFAULT_SSH_USER;
      checkSshUser(sshUser);
      const api = ctx.api();
      const [sites, platforms, servers] = await Promise.all([
        api.call('listSites', { platform: '' }),
        api.call('listPlatforms', {}),
        api.call('listServers', {}),
      ]);
      const set = siteAliases(
        {
          sites: sites.sites.map((s) => ({ domain: s.domain, platform: s.platform, status: s.status })),
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
        } else out += `wrote ${written[0] as string}: ${set.entries.length} alias${set.entries.length === 1 ? '' : 'es'} (${set.entries.map((e) => e.alias).join(', ') || 'none'})\n`;
        return out;
      });
      for (const p of stale) ctx.io.err(`warning: ${p} is from an earlier run and its site has no alias now; remove it if drush should forget it: rm ${shellWord(p)}\n`);
      return 0;
    },
  },
  'site delete': {
    usage: 'site delete DOMAIN [--no-backup] [--no-wait]',
    summary: 'back the site up (kept; see site backup ls), then remove the vhost, site dir, files, database and user; --no-backup skips the backup',
    options: { 'no-backup': { type: 'boolean' }, 'no-wait': { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [domain], o) {
      const t = await ctx.api().call('deleteSite', { domain, noBackup: o['no-backup'] === true });
      return waitAndReport(ctx, t, o['no-wait'] === true);
    },
  },
  'site clone': {
    usage: 'site clone DOMAIN NEW_DOMAIN [--platform P] [--db-server S] [--https] [--no-wait]',
    summary: 'copy a site (database, settings, user files, vhost) to a new domain; the source is untouched; rolled back on failure',
    options: { platform: { type: 'string' }, 'db-server': { type: 'string' }, https: { type: 'boolean' }, 'no-wait': { type: 'boolean' } },
    args: [2, 2],
    async run(ctx, [domain, newDomain], o) {
      const t = await ctx.api().call('cloneSite', {
        domain: domain as string,
        newDomain: newDomain as string,
        platform: (o.platform as string | undefined) ?? '',
        dbServer: (o['db-server'] as string | undefined) ?? '',
        https: o.https === true,
      });
      return waitAndReport(ctx, t, o['no-wait'] === true, (final) => {
        const r = final.resultJson ? (JSON.parse(final.resultJson) as { url?: string }) : {};
        if (r.url) ctx.io.out(`site: ${r.url}\n`);
      });
    },
  },
  'site migrate': {
    usage: 'site migrate DOMAIN --platform P [--domain NEW] [--db-server S] [--https] [--no-wait]',
    summary: 'move a site to another platform (and name, db server); the old copy serves until the new one is configured, and goes after the switch',
    options: { platform: { type: 'string' }, domain: { type: 'string' }, 'db-server': { type: 'string' }, https: { type: 'boolean' }, 'no-wait': { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [domain], o) {
      if (typeof o.platform !== 'string') throw new UsageError('site migrate needs --platform P');
      const t = await ctx.api().call('migrateSite', {
        domain: domain as string,
        platform: o.platform,
        newDomain: (o.domain as string | undefined) ?? '',
        dbServer: (o['db-server'] as string | undefined) ?? '',
        https: o.https === true,
      });
      return waitAndReport(ctx, t, o['no-wait'] === true, (final) => {
        const r = final.resultJson ? (JSON.parse(final.resultJson) as { url?: string }) : {};
        if (r.url) ctx.io.out(`site: ${r.url}\n`);
      });
    },
  },

  'task ls': {
    usage: 'task ls [--state S] [--entity E] [--limit N]',
    summary: 'list tasks, newest first',
    options: { state: { type: 'string' }, entity: { type: 'string' }, limit: { type: 'string' } },
    args: [0, 0],
    async run(ctx, _p, o) {
      let state = wire.TaskState.TASK_STATE_UNSPECIFIED;
      if (typeof o.state === 'string') {
        const s = taskStateFromName(o.state);
        if (s === undefined) throw new UsageError(`--state must be queued, running, succeeded, failed or cancelled`);
        state = s;
      }
      const limit = typeof o.limit === 'string' ? Number(o.limit) : 0;
      if (!Number.isInteger(limit) || limit < 0) throw new UsageError('--limit must be a whole number');
      const r = await ctx.api().call('listTasks', { state, entity: (o.entity as string | undefined) ?? '', limit });
      print(ctx, r.tasks.map(taskJson), () =>
        r.tasks.length
          ? table(
              ['ID', 'KIND', 'ENTITY', 'STATE', 'CREATED', 'ERROR'],
              r.tasks.map((t) => [t.id, t.kind, t.entity, taskStateName(t.state), new Date(t.createdMs).toISOString().replace('T', ' ').slice(0, 19), t.errorCode || '-']),
            )
          : 'no tasks\n',
      );
      return 0;
    },
  },
  'task show': {
    usage: 'task show ID',
    summary: 'show one task',
    args: [1, 1],
    async run(ctx, [id]) {
      const t = await ctx.api().call('getTask', { id: idArg(id as string) });
      const j = taskJson(t);
      print(ctx, j, () =>
        kv([
          ['id', t.id],
          ['kind', t.kind],
          ['entity', t.entity],
          ['state', j.state],
          ['created', j.created],
          ['started', j.started],
          ['finished', j.finished],
          ['error', t.errorCode ? `${t.errorCode}: ${t.errorMessage}` : ''],
        ]),
      );
      return 0;
    },
  },
  'task log': {
    usage: 'task log ID [-f]',
    summary: 'print a task log (-f follows it until the task ends)',
    options: { follow: { type: 'boolean', short: 'f' } },
    args: [1, 1],
    async run(ctx, [id], o) {
      const n = idArg(id as string);
      if (o.follow === true) {
        const t = await follow({ ...ctx, json: false }, n);
        return t.state === wire.TaskState.TASK_STATE_SUCCEEDED ? 0 : 1;
      }
      const r = await ctx.api().call('getTaskLog', { id: n });
      print(ctx, r.lines.map((l) => ({ seq: l.seq, ts: new Date(l.tsMs).toISOString(), level: l.level, message: l.message })), () =>
        r.lines.map((l) => `${time(l.tsMs)} ${l.level === 'info' ? '' : `${l.level.toUpperCase()} `}${l.message}\n`).join(''),
      );
      return 0;
    },
  },
  'task cancel': {
    usage: 'task cancel ID',
    summary: 'cancel a queued task, or ask a running one to stop',
    args: [1, 1],
    async run(ctx, [id]) {
      const t = await ctx.api().call('cancelTask', { id: idArg(id as string) });
      print(ctx, taskJson(t), () => `task ${t.id}: ${taskStateName(t.state) === 'cancelled' ? 'cancelled' : 'cancel requested'}\n`);
      return 0;
    },
  },

  'operator cert': {
    usage: 'operator cert NAME --out DIR [--ttl 365d]',
    summary: 'issue an operator certificate for using the CLI over TCP (--master, --cert-dir)',
    options: { out: { type: 'string' }, ttl: { type: 'string' } },
    args: [1, 1],
    async run(ctx, [name], o) {
      if (typeof o.out !== 'string') throw new UsageError('operator cert needs --out DIR');
      const ttl = typeof o.ttl === 'string' ? parseDuration(o.ttl) : 365 * 86400;
      if (ttl === undefined) throw new UsageError('--ttl: use a duration like 30d');
      const { createCsr } = await import('@spoke/shared');
      const { mkdirSync, writeFileSync } = await import('node:fs');
      const { join } = await import('node:path');
      const { csrPem, keyPem } = await createCsr(name as string);
      const r = await ctx.api().call('issueOperatorCert', {
        name,
        csrPem,
        ttlSeconds: ttl,
      });
      mkdirSync(o.out, { recursive: true, mode: 0o700 });
      writeFileSync(join(o.out, 'operator.key'), keyPem, { mode: 0o600 });
      writeFileSync(join(o.out, 'operator.crt'), r.certPem, { mode: 0o644 });
      writeFileSync(join(o.out, 'ca.crt'), r.caPem, { mode: 0o644 });
      print(ctx, { name, dir: o.out }, () => `wrote operator.key, operator.crt, ca.crt to ${o.out}\nuse: spoke --master HOST:PORT --cert-dir ${o.out} server ls\n`);
      return 0;
    },
  },
};

Object.assign(COMMANDS, httpsCommands<Ctx>({ waitAndReport: (ctx, t, noWait, ok) => waitAndReport(ctx, t, noWait, ok), usageError: (m) => new UsageError(m) }));
COMMANDS['site list'] = { ...(COMMANDS['site ls'] as Command), usage: 'site list [--platform P]', summary: 'same as site ls' };

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** The CRON column of site ls: off, never, ok, failed N×, or FAILING N× from 3 failed runs in a row. */
function cronColumn(c: wire.SiteCron | undefined): string {
  if (!c) return '-';
  if (c.failures >= 3) return `FAILING ${c.failures}x`;
  if (c.failures > 0) return `failed ${c.failures}x`;
  if (c.last) return 'ok';
  return c.intervalSeconds > 0 ? 'never' : 'off';
}

/** site show's cron lines. */
function cronLines(domain: string, c: wire.SiteCron | undefined): [string, string][] {
  if (!c) return [];
  const last = c.last;
  const lines: [string, string][] = [
    ['cron', c.intervalSeconds > 0 ? `every ${formatCronInterval(c.intervalSeconds)}${c.skipped ? ` (not run: ${c.skipped})` : ''}` : `off${c.skipped && c.skipped !== 'cron is off' ? ` (${c.skipped})` : ''}`],
    [
      'cron last run',
      last
        ? `${new Date(last.startedMs).toISOString()} on ${last.server || '-'} (${last.trigger}), ${seconds(last.durationMs)}, ${last.ok ? 'ok' : `failed: ${last.errorCode}: ${last.message}`}`
        : 'never',
    ],
  ];
  if (c.failures > 0) lines.push(['cron failures', `${c.failures} in a row${c.failures >= 3 ? ' (see: spoke site cron ${domain} --history)' : ''}`]);
  const next = c.nextRunMs ? new Date(c.nextRunMs).toISOString() : '-';
  lines.push(['cron next run', c.nextRunMs && c.nextRunMs <= Date.now() ? `${next} (due: runs at the scheduler's next free slot)` : next]);
  return lines;
}

function registrySummary(json: string): string {
  if (!json) return 'not verified yet';
  const r = JSON.parse(json) as { kind: string; coreVersion: string | null; profiles: unknown[]; modules: unknown[]; themes: unknown[]; distribution: { name: string } | null };
  return `${r.kind}${r.coreVersion ? ` ${r.coreVersion}` : ''}${r.distribution ? ` (${r.distribution.name})` : ''}; ${r.profiles.length} profiles, ${r.modules.length} modules, ${r.themes.length} themes`;
}

/** `s` as one shell word, for commands printed to be pasted. */
function shellWord(s: string): string {
  return /^[\w./@%+=:,-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

/** The registry's platform kind (`drupal8`, `wordpress`, …); null before the first verify. */
function registryKind(json: string): string | null {
  if (!json) return null;
  return (JSON.parse(json) as { kind?: string }).kind ?? null;
}

/** Site dirs the platform's registry found on disk that are not Spoke's sites yet (`site import` takes them). */
function sitesOnDisk(p: wire.Platform): string[] {
  if (!p.registryJson) return [];
  const r = JSON.parse(p.registryJson) as { sites?: string[] };
  return (r.sites ?? []).filter((d) => !p.sites.includes(d));
}

/** Extra commands registered by the entry point (`up` needs the master's start-up code). */
export type ExtraCommand = Command;

function helpText(extra: Record<string, Command>): string {
  const all = { ...COMMANDS, ...extra };
  const lines = Object.values(all).map((c) => `  spoke ${c.usage.padEnd(74)} ${c.summary}`);
  return `spoke ${SPOKE_VERSION} — hosting control plane for PHP sites

usage: spoke [--state-dir DIR | --socket PATH | --master HOST:PORT --cert-dir DIR] [-o table|json] COMMAND

commands:
${lines.join('\n')}

The CLI talks to the master over <state-dir>/spoke.sock (default ./.spoke, or $SPOKE_STATE_DIR).
Errors print as "error: CODE: message"; exit 0 = ok, 1 = refused or failed, 2 = usage.
`;
}

/** Runs the CLI; returns the exit code. */
export async function runCli(argv: string[], io: CliIO, extra: Record<string, Command> = {}): Promise<number> {
  const all: Record<string, Command> = { ...COMMANDS, ...extra };
  let api: OperatorApi | undefined;
  try {
    // Globals may stand anywhere; take them out first.
    const g = parseArgs({ args: argv, options: GLOBAL, strict: false, allowPositionals: true, tokens: true });
    const rest: string[] = [];
    const globalIdx = new Set<number>();
    for (const t of g.tokens ?? []) {
      if (t.kind === 'option' && t.name in GLOBAL) {
        globalIdx.add(t.index);
        if (t.value !== undefined && t.inlineValue === false) globalIdx.add(t.index + 1);
      }
    }
    argv.forEach((a, i) => {
      if (!globalIdx.has(i)) rest.push(a);
    });
    const gv = g.values as Record<string, string | boolean | undefined>;
    const output = (gv.output as string | undefined) ?? 'table';
    if (output !== 'table' && output !== 'json') throw new UsageError(`-o must be table or json, got ${output}`);
    const words = rest.filter((a) => !a.startsWith('-'));
    if (rest[0] === 'version' || rest[0] === '--version') {
      io.out(`spoke ${SPOKE_VERSION}\n`);
      return 0;
    }
    if (rest.length === 0 || rest[0] === 'help' || gv.help === true) {
      io.out(helpText(extra));
      return rest.length === 0 && gv.help !== true ? 2 : 0;
    }
    const two = `${words[0]} ${words[1] ?? ''}`.trim();
    const key = all[two] ? two : all[words[0] ?? ''] ? (words[0] as string) : undefined;
    if (!key) {
      const group = Object.keys(all).filter((k) => k.startsWith(`${words[0]} `));
      throw new UsageError(
        group.length ? `unknown command "${two}"; ${words[0]} has: ${group.map((k) => k.split(' ')[1]).join(', ')}` : `unknown command "${words[0]}" (see: spoke help)`,
      );
    }
    const cmd = all[key] as Command;
    const nWords = key.split(' ').length;
    // Remove the command words (first occurrences) and parse the rest strictly.
    const args = [...rest];
    for (const w of key.split(' ')) args.splice(args.indexOf(w), 1);
    let parsed;
    try {
      parsed = parseArgs({ args, options: cmd.options ?? {}, strict: true, allowPositionals: true });
    } catch (e) {
      throw new UsageError(`${(e as Error).message.split('\n')[0]}\nusage: spoke ${cmd.usage}`);
    }
    const pos = parsed.positionals;
    if (pos.length < cmd.args[0] || pos.length > cmd.args[1]) {
      throw new UsageError(`wrong number of arguments\nusage: spoke ${cmd.usage}`);
    }
    void nWords;
    const conn: ConnectOptions = {
      stateDir: gv['state-dir'] as string | undefined,
      socket: gv.socket as string | undefined,
      master: gv.master as string | undefined,
      certDir: gv['cert-dir'] as string | undefined,
    };
    const ctx: Ctx = {
      io,
      json: output === 'json',
      conn,
      api: () => (api ??= new OperatorApi(conn)),
    };
    return await cmd.run(ctx, pos as [string, string], parsed.values as Record<string, unknown>);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`error: USAGE: ${e.message}\n`);
      return 2;
    }
    const se: SpokeError = isSpokeError(e) ? e : fail('INTERNAL', e instanceof Error ? e.message : String(e));
    io.err(`error: ${se.code}: ${se.message}\n`);
    return 1;
  } finally {
    api?.close();
  }
}

export { UsageError };
export type { Command, Ctx };
