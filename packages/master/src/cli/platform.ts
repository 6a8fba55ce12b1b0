/**
 * `spoke platform …`: add (and build), verify, diff, status, list, show, remove.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { fail, wire } from '@spoke/shared/client';
import { UsageError, kv, print, taskCommand, waitAndReport, type Command } from './command.js';
import { human, platformJson, table } from './format.js';
import { confirmDeleteFiles, driftModeLine, quarantineJson, quarantineLines, treeState } from './fleet.js';
import { addonNouns, addonRows } from './registryview.js';

/** `spoke platform …`. */
export const platformCommands: Record<string, Command> = {
  'platform add': {
    usage:
      'platform add NAME --path P --server S [--makefile F | --git URL [--ref R]] [--live] [--exclude PATTERN ...] [--drift repair|report] [--no-verify] [--no-wait]',
    summary: 'register a platform (its path is reserved everywhere), build it (--makefile/--git) and converge it to its servers',
    options: {
      path: { type: 'string' },
      server: { type: 'string' },
      makefile: { type: 'string' },
      git: { type: 'string' },
      ref: { type: 'string' },
      live: { type: 'boolean' },
      exclude: { type: 'string', multiple: true },
      drift: { type: 'string' },
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
        drift: (o.drift as string | undefined) ?? '',
      });
      const p = r.platform as wire.Platform;
      if (!ctx.json || !r.task) {
        const msg = `added platform ${p.name} at ${p.path} on ${p.server}${r.task ? '' : ` (status ${p.status})`}\n`;
        if (ctx.json) print(ctx, platformJson(p), () => msg);
        // With --no-wait stdout carries the task id alone (scripts read it); the sentence is for the operator.
        else if (r.task && o['no-wait'] === true) ctx.io.err(msg);
        else ctx.io.out(msg);
      }
      return r.task ? waitAndReport(ctx, r.task, o['no-wait'] === true) : 0;
    },
  },
  'platform verify': taskCommand({
    usage: 'platform verify NAME [--no-wait]',
    summary: 'build the tree if missing (makefile/git), rescan it and converge every server that hosts the platform',
    args: [1, 1],
    start: (ctx, [name]) => ctx.api().call('verifyPlatform', { name }),
  }),
  'platform drift': {
    usage: 'platform drift NAME repair|report',
    summary: 'what hand edits found on a server lead to: repair them (kept in quarantine first; default) or only report them',
    args: [2, 2],
    async run(ctx, [name, mode]) {
      const p = await ctx.api().call('setPlatformDrift', { name, drift: mode });
      print(ctx, platformJson(p), () => driftModeLine(p));
      return 0;
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
          ? table(
              ['NAME', 'TYPE', 'FROM', 'TO', 'STATUS'],
              rows.map((e) => [e.name, e.type, e.from ?? '-', e.to ?? '-', e.status]),
            )
          : 'every module, theme and profile is the same\n';
        out += `summary: ${Object.entries(d.summary)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ')}\n`;
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
          lastKnown: x.lastKnownMs ? new Date(Number(x.lastKnownMs)).toISOString() : null,
          quarantine: x.quarantine.map(quarantineJson),
          retry: Number(x.retryAtMs) ? { atMs: Number(x.retryAtMs), failures: x.failures, lastError: x.lastError } : null,
        })),
      };
      print(ctx, json, () => {
        let out = `platform ${s.platform}: desired ${short(s.desiredRootHash)} (${s.files} files, ${human(Number(s.bytes))})\n`;
        out += table(
          ['SERVER', 'STATE', 'OBSERVED', 'LAST CONVERGED', 'DRIFT'],
          s.servers.map((x) => [x.server, treeState(x), short(x.observedRootHash), short(x.committedRootHash), x.error ? x.error : String(x.driftTotal)]),
        );
        for (const x of s.servers) {
          const lines = [...x.driftChanged.map((p) => `  ~ ${p}`), ...x.driftAdded.map((p) => `  + ${p}`), ...x.driftRemoved.map((p) => `  - ${p}`)];
          if (lines.length) out += `drift on ${x.server} (changed ~, added +, removed -):\n${lines.join('\n')}\n`;
          if (Number(x.driftTotal) > lines.length) out += `  … ${Number(x.driftTotal) - lines.length} more\n`;
          for (const c of x.conflicts) out += `conflict: ${c.advice}\n`;
          out += quarantineLines(x);
          if (Number(x.retryAtMs)) {
            const inS = Math.max(0, Math.ceil((Number(x.retryAtMs) - Date.now()) / 1000));
            out += `${x.server}: converge failed ${x.failures} time(s) in a row (last: ${x.lastError || 'unknown'}); next try in ${inS}s, or now: spoke platform verify ${s.platform}\n`;
          }
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
          [
            'source',
            j.source.kind === 'git'
              ? `git ${p.source?.gitUrl}${p.source?.gitRef ? ` @ ${p.source.gitRef}` : ''}`
              : j.source.kind === 'makefile'
                ? `makefile ${p.source?.makefileName}${p.source?.makefileDir ? ` (from ${p.source.makefileDir})` : ''}`
                : 'existing tree',
          ],
          ['status', p.status],
          ['live sync', p.live ? 'on' : 'off'],
          ['tree', p.desiredRootHash ? p.desiredRootHash.slice(0, 16) : 'not scanned yet'],
          ['kind', registrySummary(p.registryJson)],
          ...addonRows(p.registryJson),
          ['excludes', p.excludes.join(', ')],
          ['sites', p.sites.join(', ')],
          ['sites on disk', sitesOnDisk(p).join(', ')],
          ['created', j.created],
        ]),
      );
      return 0;
    },
  },
  'platform rm': taskCommand({
    usage: 'platform rm NAME [--force] [--delete-files [--yes]] [--offline-ok] [--no-wait]',
    summary:
      'remove a platform: its web server config and tree state on every server, then its record (refused while it has sites; --force deletes them first, each backed up; --delete-files also deletes its tree on the servers and the master, user files kept; --offline-ok goes on past offline servers, which keep the config)',
    options: { force: { type: 'boolean' }, 'delete-files': { type: 'boolean' }, 'offline-ok': { type: 'boolean' }, yes: { type: 'boolean', short: 'y' } },
    args: [1, 1],
    start: async (ctx, [name], o) => {
      // --delete-files says what it deletes where and asks (or needs --yes) first
      if (o['delete-files'] === true) await confirmDeleteFiles(ctx, name, o.yes === true);
      return ctx.api().call('removePlatform', {
        name,
        force: o.force === true,
        deleteFiles: o['delete-files'] === true,
        offlineOk: o['offline-ok'] === true,
      });
    },
    done: (ctx, _final, [name]) => ctx.io.out(`removed platform ${name}\n`),
  }),
};

/** The kind line of `platform show`: kind, core version, distribution and counts. */
function registrySummary(json: string): string {
  if (!json) return 'not verified yet';
  const r = JSON.parse(json) as {
    kind: string;
    coreVersion: string | null;
    profiles: unknown[];
    modules: unknown[];
    themes: unknown[];
    distribution: { name: string } | null;
  };
  const [mods, themes] = addonNouns(r.kind);
  return `${r.kind}${r.coreVersion ? ` ${r.coreVersion}` : ''}${r.distribution ? ` (${r.distribution.name})` : ''}; ${r.profiles.length} profiles, ${r.modules.length} ${mods}, ${r.themes.length} ${themes}`;
}

/** Site dirs the platform's registry found on disk that are not Spoke's sites yet (`site import` takes them). */
function sitesOnDisk(p: wire.Platform): string[] {
  if (!p.registryJson) return [];
  const r = JSON.parse(p.registryJson) as { sites?: string[] };
  return (r.sites ?? []).filter((d) => !p.sites.includes(d));
}
