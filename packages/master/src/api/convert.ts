/**
 * Domain ↔ wire conversions for the Operator service. The core never sees wire types.
 */
import type { BackupInfo } from '../sites/backup.js';
import type { CronRunInfo } from '../sites/cronstore.js';
import type { SiteCronInfo } from '../sites/cronrunner.js';
import { fail, wire } from '@spoke/shared';
import { checkGitSource } from '../platforms/buildplan.js';
import type { PlatformInfo, PlatformSource, ServerInfo, SiteInfo, TaskInfo, TaskLogEntry, TaskState } from '../types.js';

const TASK_STATE_TO_WIRE: Record<TaskState, wire.TaskState> = {
  queued: wire.TaskState.TASK_STATE_QUEUED,
  running: wire.TaskState.TASK_STATE_RUNNING,
  succeeded: wire.TaskState.TASK_STATE_SUCCEEDED,
  failed: wire.TaskState.TASK_STATE_FAILED,
  cancelled: wire.TaskState.TASK_STATE_CANCELLED,
};

/** Wire task state → domain (undefined for UNSPECIFIED). */
export function taskStateFromWire(s: wire.TaskState): TaskState | undefined {
  for (const [k, v] of Object.entries(TASK_STATE_TO_WIRE)) if (v === s) return k as TaskState;
  return undefined;
}

export function serverToWire(s: ServerInfo): wire.Server {
  return {
    name: s.name,
    kind: s.kind === 'cluster' ? wire.ServerKind.SERVER_KIND_CLUSTER : wire.ServerKind.SERVER_KIND_AGENT,
    cluster: s.cluster ?? '',
    members: s.members,
    online: s.online,
    membersOnline: s.membersOnline,
    lastSeenMs: s.lastSeenMs ?? 0,
    enrolled: s.enrolled,
    services: s.services.map((x) => ({ ...x })),
    facts: s.facts ? { ...s.facts } : undefined,
    platforms: s.platforms,
    createdMs: s.createdMs,
    certFingerprint: s.certFingerprint ?? '',
    capabilityVersion: s.capabilityVersion ?? 0,
  };
}

export function sourceToWire(s: PlatformSource): wire.PlatformSource {
  switch (s.kind) {
    case 'existing':
      return { kind: wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_EXISTING, makefile: '', makefileName: '', gitUrl: '', gitRef: '', makefileDir: '' };
    case 'makefile':
      return {
        kind: wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_MAKEFILE,
        makefile: s.makefile,
        makefileName: s.makefileName,
        makefileDir: s.makefileDir ?? '',
        gitUrl: '',
        gitRef: '',
      };
    case 'git':
      return { kind: wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_GIT, makefile: '', makefileName: '', makefileDir: '', gitUrl: s.url, gitRef: s.ref };
  }
}

/**
 * A platform source from the wire, checked here rather than trusted to the CLI: a missing source
 * is an existing tree (older clients send none); a present one must name its kind, and a git one
 * a usable repository and ref.
 * @throws SpokeError INVALID_ARGUMENT (unspecified or unknown kind), CONFIG_INVALID (git URL or ref)
 */
export function sourceFromWire(s: wire.PlatformSource | undefined): PlatformSource {
  if (s === undefined) return { kind: 'existing' };
  switch (s.kind) {
    case wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_EXISTING:
      return { kind: 'existing' };
    case wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_MAKEFILE:
      return { kind: 'makefile', makefile: s.makefile, makefileName: s.makefileName, ...(s.makefileDir ? { makefileDir: s.makefileDir } : {}) };
    case wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_GIT:
      if (s.gitUrl === '') throw fail('INVALID_ARGUMENT', 'a git platform needs a repository URL');
      checkGitSource(s.gitUrl, s.gitRef);
      return { kind: 'git', url: s.gitUrl, ref: s.gitRef };
    default:
      throw fail('INVALID_ARGUMENT', `platform source kind ${String(s.kind)} is not one of existing, makefile or git`);
  }
}

export function platformToWire(p: PlatformInfo): wire.Platform {
  return {
    name: p.name,
    path: p.path,
    server: p.server,
    source: sourceToWire(p.source),
    status: p.status,
    registryJson: p.registryJson ?? '',
    sites: p.sites,
    createdMs: p.createdMs,
    live: p.live,
    desiredRootHash: p.desiredRootHash ?? '',
    excludes: p.excludes,
    drift: p.drift,
  };
}

export function cronRunToWire(r: CronRunInfo): wire.CronRun {
  return {
    id: r.id,
    domain: r.domain,
    startedMs: r.startedMs,
    durationMs: r.durationMs,
    ok: r.ok,
    message: r.message,
    server: r.server,
    trigger: r.trigger,
    errorCode: r.errorCode,
  };
}

/** A site; `cron` when the caller has it (site show, site ls). */
export function siteToWire(s: SiteInfo, cron?: SiteCronInfo): wire.Site {
  return {
    domain: s.domain,
    platform: s.platform,
    dbServer: s.dbServer ?? '',
    profile: s.profile ?? '',
    aliases: s.aliases,
    status: s.status,
    createdMs: s.createdMs,
    server: s.server,
    dbName: s.dbName ?? '',
    dbUser: s.dbUser ?? '',
    dbHost: s.dbHost ?? '',
    dbPort: s.dbPort ?? 0,
    installedMs: s.installedMs ?? 0,
    ownSettings: s.ownSettings,
    redirectAliases: s.redirectAliases,
    formerNames: (s.formerNames ?? []).map((f) => ({ name: f.name, untilMs: f.untilMs })),
    cron: cron
      ? {
          intervalSeconds: cron.intervalS,
          nextRunMs: cron.nextRunMs,
          last: cron.last ? cronRunToWire(cron.last) : undefined,
          failures: cron.failures,
          skipped: cron.skipped,
        }
      : { intervalSeconds: s.cronIntervalS, nextRunMs: 0, last: undefined, failures: 0, skipped: '' },
    https: undefined, // added by api/https.ts withHttps
  };
}

export function taskToWire(t: TaskInfo): wire.Task {
  return {
    id: t.id,
    kind: t.kind,
    entity: t.entity,
    state: TASK_STATE_TO_WIRE[t.state],
    createdMs: t.createdMs,
    startedMs: t.startedMs ?? 0,
    finishedMs: t.finishedMs ?? 0,
    errorCode: t.errorCode ?? '',
    errorMessage: t.errorMessage ?? '',
    paramsJson: JSON.stringify(t.params),
    resultJson: t.result === null || t.result === undefined ? '' : JSON.stringify(t.result),
  };
}

export function lineToWire(l: TaskLogEntry): wire.TaskLogLine {
  return { taskId: l.taskId, seq: l.seq, tsMs: l.tsMs, level: l.level, message: l.message };
}

/** A stored backup on the wire. */
export function backupToWire(b: BackupInfo): wire.Backup {
  return { id: b.id, domain: b.domain, platform: b.platform, kind: b.kind, reason: b.reason, createdMs: b.createdMs, bytes: b.archiveBytes, path: b.path };
}
