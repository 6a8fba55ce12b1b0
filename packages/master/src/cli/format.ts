/**
 * Output for people (tables) and scripts (`-o json`, stable field names). JSON field names are a
 * contract: add fields, never rename them.
 */
import { wire } from '@spoke/shared/client';
export { formatBytes as human } from '@spoke/shared/client';

/**
 * online | offline | not enrolled for an agent; a cluster is online when every member is,
 * degraded when some are, offline when none is.
 */
export function serverState(s: wire.Server): string {
  if (s.kind === wire.ServerKind.SERVER_KIND_CLUSTER) {
    const up = s.membersOnline.length;
    return s.online ? 'online' : up > 0 ? 'degraded' : 'offline';
  }
  return s.online ? 'online' : !s.enrolled ? 'not enrolled' : 'offline';
}

/** A server as printed by `-o json`. */
export function serverJson(s: wire.Server) {
  return {
    name: s.name,
    kind: s.kind === wire.ServerKind.SERVER_KIND_CLUSTER ? 'cluster' : 'agent',
    cluster: s.cluster || null,
    members: s.members,
    online: s.online,
    state: serverState(s),
    membersOnline: s.kind === wire.ServerKind.SERVER_KIND_CLUSTER ? s.membersOnline : undefined,
    lastSeen: s.lastSeenMs ? new Date(s.lastSeenMs).toISOString() : null,
    enrolled: s.enrolled,
    services: s.services.map((x) => ({
      kind: x.kind,
      impl: x.impl,
      version: x.version || null,
      detected: x.detectedImpl || null,
      pinned: x.pinnedImpl || null,
    })),
    facts: s.facts ?? null,
    platforms: s.platforms,
    created: new Date(s.createdMs).toISOString(),
    certFingerprint: s.certFingerprint || null,
    capabilityVersion: s.capabilityVersion || null,
  };
}

const SOURCE: Record<number, string> = {
  [wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_EXISTING]: 'existing',
  [wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_MAKEFILE]: 'makefile',
  [wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_GIT]: 'git',
};

/** A platform as printed by `-o json`. */
export function platformJson(p: wire.Platform) {
  const kind = SOURCE[p.source?.kind ?? 0] ?? 'existing';
  return {
    name: p.name,
    path: p.path,
    server: p.server,
    source:
      kind === 'git'
        ? { kind, url: p.source?.gitUrl ?? '', ref: p.source?.gitRef || null }
        : kind === 'makefile'
          ? { kind, makefileName: p.source?.makefileName ?? '', makefileDir: p.source?.makefileDir || null }
          : { kind },
    status: p.status,
    live: p.live,
    desiredRootHash: p.desiredRootHash || null,
    excludes: p.excludes,
    drift: p.drift || 'repair',
    sites: p.sites,
    registry: p.registryJson ? (JSON.parse(p.registryJson) as unknown) : null,
    created: new Date(p.createdMs).toISOString(),
  };
}

/** A site as printed by `-o json`. */
export function siteJson(s: wire.Site) {
  return {
    domain: s.domain,
    platform: s.platform,
    server: s.server,
    dbServer: s.dbServer || null,
    profile: s.profile || null,
    aliases: s.aliases,
    status: s.status,
    created: new Date(s.createdMs).toISOString(),
    database: s.dbName || null,
    dbUser: s.dbUser || null,
    dbHost: s.dbHost || null,
    dbPort: s.dbPort || null,
    installed: s.installedMs ? new Date(s.installedMs).toISOString() : null,
    ownSettings: s.ownSettings,
    redirectAliases: s.redirectAliases,
    formerNames: s.formerNames.map((f) => ({ name: f.name, redirectsUntil: new Date(Number(f.untilMs)).toISOString() })),
    cron: s.cron
      ? {
          intervalSeconds: s.cron.intervalSeconds,
          nextRun: s.cron.nextRunMs ? new Date(s.cron.nextRunMs).toISOString() : null,
          last: s.cron.last ? cronRunJson(s.cron.last) : null,
          failures: s.cron.failures,
          failing: s.cron.failures >= 3,
          skipped: s.cron.skipped || null,
        }
      : null,
  };
}

/** A cron run as printed by `-o json`. */
export function cronRunJson(r: wire.CronRun) {
  return {
    domain: r.domain,
    started: new Date(r.startedMs).toISOString(),
    durationMs: r.durationMs,
    ok: r.ok,
    errorCode: r.errorCode || null,
    message: r.message,
    server: r.server || null,
    trigger: r.trigger,
  };
}

const STATE: Record<number, string> = {
  [wire.TaskState.TASK_STATE_QUEUED]: 'queued',
  [wire.TaskState.TASK_STATE_RUNNING]: 'running',
  [wire.TaskState.TASK_STATE_SUCCEEDED]: 'succeeded',
  [wire.TaskState.TASK_STATE_FAILED]: 'failed',
  [wire.TaskState.TASK_STATE_CANCELLED]: 'cancelled',
};

/** Task state name. */
export function taskStateName(s: wire.TaskState): string {
  return STATE[s] ?? 'unknown';
}

/** Task state from its name (for `--state`), or undefined. */
export function taskStateFromName(n: string): wire.TaskState | undefined {
  for (const [k, v] of Object.entries(STATE)) if (v === n) return Number(k) as wire.TaskState;
  return undefined;
}

/** A task as printed by `-o json`. */
export function taskJson(t: wire.Task) {
  const iso = (ms: number) => (ms ? new Date(ms).toISOString() : null);
  return {
    id: t.id,
    kind: t.kind,
    entity: t.entity,
    state: taskStateName(t.state),
    created: iso(t.createdMs),
    started: iso(t.startedMs),
    finished: iso(t.finishedMs),
    durationMs: t.startedMs && t.finishedMs ? t.finishedMs - t.startedMs : null,
    error: t.errorCode ? { code: t.errorCode, message: t.errorMessage } : null,
    params: t.paramsJson ? (JSON.parse(t.paramsJson) as unknown) : {},
    result: t.resultJson ? (JSON.parse(t.resultJson) as unknown) : null,
  };
}

/** Renders rows as an aligned table with a header. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => String(c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return `${cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n')}\n`;
}

/** "3s ago", "5m ago", "never". */
export function ago(ms: number, now = Date.now()): string {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/** Parses `90s`, `30m`, `1h`, `2d` (or plain seconds) into seconds; undefined when malformed. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(s.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const mult = { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return n * mult;
}
