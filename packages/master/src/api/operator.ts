/**
 * Operator service handlers: authenticate, convert wire → domain, call the core, convert back.
 * Errors are mapped once, in `unary`/`stream`, to a gRPC status with the stable code.
 */
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { fail, toServiceError, trimPathSlashes, type wire, type Logger } from '@spoke/shared';
import type { Core } from '../core.js';
import type { TaskEvent } from '../tasks/engine.js';
import { isFinal } from '../tasks/engine.js';
import { conflictAdvice } from '../platforms/converge.js';
import { parseDriftMode } from '../platforms/drift.js';
import type { OperatorCertInfo } from '../servers/operators.js';
import { requireOperator, type Via } from './auth.js';
import { writeBounded } from './agent.js';
import { parseCronInterval } from '../sites/cron.js';
import { httpsFromWire, withHttps } from './https.js';
import { lineToWire, platformToWire, serverToWire, siteToWire, backupToWire, cronRunToWire, sourceFromWire, taskStateFromWire, taskToWire } from './convert.js';

/** Sites per ListSites message: 100,000 sites stream as 100 messages, not one of ~60 MB. */
const SITE_PAGE = 1000;

type Unary<Req, Res> = (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => void;

/** Builds the Operator service implementation for one listener. */
function operatorToWire(c: OperatorCertInfo): wire.OperatorCert {
  return { name: c.name, fingerprint: c.fingerprint, issuedMs: c.issuedMs, expiresMs: c.expiresMs, revokedMs: c.revokedMs ?? 0 };
}

export function operatorService(core: Core, via: Via, log: Logger): wire.OperatorServer {
  /** Every call, unary or streaming, is an operator's with a certificate not revoked. */
  const operator = (call: Parameters<typeof requireOperator>[0]) => requireOperator(call, via, (fp) => core.operators.isRevoked(fp));

  function unary<Req, Res>(name: string, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>): Unary<Req, Res> {
    return (call, cb) => {
      Promise.resolve()
        .then(() => {
          operator(call);
          return fn(call.request, call);
        })
        .then(
          (res) => cb(null, res),
          (e: unknown) => {
            const st = toServiceError(e);
            if (st.code === 13) log.error({ err: e, rpc: name }, 'operator call failed');
            else log.debug({ rpc: name, code: (e as { code?: string }).code }, 'operator call refused');
            cb(st, null);
          },
        );
    };
  }

  const empty = (): wire.Empty => ({});

  return {
    status: unary('Status', () => {
      const { health, ...s } = core.status();
      return { ...s, listen: s.listen ?? '', ...health };
    }),

    createToken: unary('CreateToken', (req: wire.CreateTokenRequest) => {
      const t = core.enroller.createToken({
        server: req.server,
        cluster: req.cluster || undefined,
        ttlMs: req.ttlSeconds > 0 ? req.ttlSeconds * 1000 : undefined,
        replace: req.replace,
      });
      return { token: t.token, server: req.server, cluster: req.cluster, expiresMs: t.expiresMs };
    }),
    listServers: unary('ListServers', () => ({ servers: core.ns.listServers().map(serverToWire) })),
    getServer: unary('GetServer', (req: wire.NameRequest) => serverToWire(core.ns.getServer(req.name))),
    removeServer: unary('RemoveServer', (req: wire.RemoveRequest) => {
      core.removeServer(req.name);
      return empty();
    }),
    verifyServer: unary('VerifyServer', (req: wire.NameRequest) => taskToWire(core.verifyServer(req.name))),
    pinService: unary('PinService', (req: wire.PinServiceRequest) => serverToWire(core.ns.pinService(req.server, req.kind, req.impl))),

    createCluster: unary('CreateCluster', (req: wire.CreateClusterRequest) => serverToWire(core.createCluster(req.name, req.members))),
    addClusterMember: unary('AddClusterMember', (req: wire.ClusterMemberRequest) => serverToWire(core.addClusterMember(req.cluster, req.member))),
    removeClusterMember: unary('RemoveClusterMember', (req: wire.ClusterMemberRequest) =>
      serverToWire(core.removeClusterMember(req.cluster, req.member, req.deleteFiles).cluster),
    ),

    addPlatform: unary('AddPlatform', async (req: wire.AddPlatformRequest) => {
      const r = await core.addPlatform(
        {
          name: req.name,
          path: trimPathSlashes(req.path),
          server: req.server,
          source: sourceFromWire(req.source),
          live: req.live,
          excludes: req.excludes,
          drift: parseDriftMode(req.drift),
        },
        !req.noVerify,
      );
      return { platform: platformToWire(r.platform), task: r.task ? taskToWire(r.task) : undefined };
    }),
    listPlatforms: unary('ListPlatforms', () => ({ platforms: core.ns.listPlatforms().map(platformToWire) })),
    getPlatform: unary('GetPlatform', (req: wire.NameRequest) => platformToWire(core.ns.getPlatform(req.name))),
    removePlatform: unary('RemovePlatform', (req: wire.RemoveRequest) =>
      taskToWire(core.removePlatform({ name: req.name, force: req.force, deleteFiles: req.deleteFiles, offlineOk: req.offlineOk })),
    ),
    setPlatformDrift: unary('SetPlatformDrift', (req: wire.SetPlatformDriftRequest) =>
      platformToWire(core.ns.setPlatformDrift(req.name, parseDriftMode(req.drift))),
    ),
    diffPlatforms: unary('DiffPlatforms', (req: wire.DiffPlatformsRequest) => ({ diffJson: JSON.stringify(core.sync.diff(req.from, req.to)) })),
    verifyPlatform: unary('VerifyPlatform', (req: wire.NameRequest) => taskToWire(core.sync.verify(req.name))),
    platformStatus: unary('PlatformStatus', async (req: wire.NameRequest) => {
      const s = await core.platformStatus(req.name);
      const desired = s.platform.desiredRootHash ?? '';
      const retries = core.sync.retries(s.platform.name);
      return {
        platform: s.platform.name,
        desiredRootHash: desired,
        files: s.files,
        bytes: s.bytes,
        servers: s.servers.map((x) => ({
          server: x.server,
          online: x.online,
          observedRootHash: x.report?.actualRootHash ?? x.lastKnown?.rootHash ?? '',
          committedRootHash: x.report?.committedRootHash ?? '',
          inSync: !!desired && (x.report ? x.report.actualRootHash === desired : x.lastKnown?.rootHash === desired),
          lastKnownMs: x.report ? 0 : (x.lastKnown?.updatedMs ?? 0),
          quarantine: x.report?.quarantine ?? [],
          driftChanged: x.report?.drift.changed ?? [],
          driftAdded: x.report?.drift.added ?? [],
          driftRemoved: x.report?.drift.removed ?? [],
          driftTotal: x.report?.drift.total ?? 0,
          error: x.error,
          conflicts: (x.report?.conflicts ?? []).map((c) => ({ ...c, advice: conflictAdvice(s.platform.name, x.server, c) })),
          retryAtMs: retries.get(x.server)?.nextMs ?? 0,
          failures: retries.get(x.server)?.failures ?? 0,
          lastError: retries.get(x.server)?.lastError ?? '',
        })),
      };
    }),

    listSites: (call: ServerWritableStream<wire.ListSitesRequest, wire.SiteList>) => {
      (async () => {
        operator(call);
        const cron = core.cron.infoReader();
        const https = core.https.viewer();
        for (const sites of core.ns.sitePages(call.request.platform || undefined, SITE_PAGE)) {
          if (call.cancelled) return;
          const info = cron(sites);
          await writeBounded(call, { sites: sites.map((s) => withHttps(core, siteToWire(s, info.get(s.domain)), https)) });
        }
      })().then(
        () => call.end(),
        (e: unknown) => {
          const st = toServiceError(e);
          if (st.code === 13) log.error({ err: e, rpc: 'ListSites' }, 'operator call failed');
          call.emit('error', Object.assign(new Error('list failed'), st));
        },
      );
    },
    getSite: unary('GetSite', (req: wire.NameRequest) => {
      const s = core.ns.getSite(req.name);
      return withHttps(core, siteToWire(s, core.cron.info(s)));
    }),
    installSite: unary('InstallSite', (req: wire.InstallSiteRequest) => {
      const q = core.sites.install({
        domain: req.domain,
        platform: req.platform,
        dbServer: req.dbServer || undefined,
        aliases: req.aliases,
        title: req.title || undefined,
        adminUser: req.adminUser || undefined,
        adminEmail: req.adminEmail || undefined,
        redirectAliases: req.redirectAliases,
        profile: req.profile || undefined,
        locale: req.locale || undefined,
        cronInterval: req.cronInterval || undefined,
        https: req.https,
      });
      return { task: taskToWire(q.task), adminPassword: q.adminPassword };
    }),
    verifySite: unary('VerifySite', (req: wire.NameRequest) => taskToWire(core.sites.verify(req.name))),
    disableSite: unary('DisableSite', (req: wire.NameRequest) => taskToWire(core.sites.setEnabled(req.name, false))),
    enableSite: unary('EnableSite', (req: wire.NameRequest) => taskToWire(core.sites.setEnabled(req.name, true))),
    addAlias: unary('AddAlias', (req: wire.AliasRequest) => taskToWire(core.sites.addAlias(req.site, req.alias))),
    removeAlias: unary('RemoveAlias', (req: wire.AliasRequest) => taskToWire(core.sites.removeAlias(req.site, req.alias))),
    deleteSite: unary('DeleteSite', (req: wire.DeleteSiteRequest) => taskToWire(core.sites.delete(req.domain, { noBackup: req.noBackup }))),
    backupSite: unary('BackupSite', (req: wire.NameRequest) => taskToWire(core.sites.backup(req.name))),
    listBackups: unary('ListBackups', (req: wire.ListBackupsRequest) => ({
      backups: core.sites.backups.store.list(req.domain ? req.domain.toLowerCase() : undefined).map(backupToWire),
    })),
    removeBackup: unary('RemoveBackup', (req: wire.BackupIdRequest) => {
      core.sites.backups.store.remove(req.id);
      return empty();
    }),
    restoreSite: unary('RestoreSite', (req: wire.RestoreSiteRequest) => taskToWire(core.sites.restore(req.domain, req.backupId))),
    siteLoginUrl: unary('SiteLoginUrl', (req: wire.NameRequest) => core.sites.login.url(req.name)),
    importSite: unary('ImportSite', (req: wire.ImportSiteRequest) =>
      taskToWire(core.sites.import({ domain: req.domain, platform: req.platform, dbServer: req.dbServer || undefined, rewriteSettings: req.rewriteSettings })),
    ),
    setAliasRedirect: unary('SetAliasRedirect', (req: wire.AliasRedirectRequest) => taskToWire(core.sites.setAliasRedirect(req.domain, req.on))),
    cloneSite: unary('CloneSite', (req: wire.CloneSiteRequest) =>
      taskToWire(
        core.sites.clone({
          domain: req.domain,
          newDomain: req.newDomain,
          platform: req.platform || undefined,
          dbServer: req.dbServer || undefined,
          https: req.https,
        }),
      ),
    ),
    migrateSite: unary('MigrateSite', (req: wire.MigrateSiteRequest) =>
      taskToWire(
        core.sites.migrate({
          domain: req.domain,
          platform: req.platform,
          newDomain: req.newDomain || undefined,
          dbServer: req.dbServer || undefined,
          https: req.https,
          ...(req.redirectOldForS !== undefined ? { redirectOldForS: Number(req.redirectOldForS) } : {}),
        }),
      ),
    ),

    listTasks: unary('ListTasks', (req: wire.ListTasksRequest) => ({
      tasks: core.tasks.list({ state: taskStateFromWire(req.state), entity: req.entity || undefined, limit: req.limit || undefined }).map(taskToWire),
    })),
    getTask: unary('GetTask', (req: wire.TaskIdRequest) => taskToWire(core.tasks.get(req.id))),
    getTaskLog: unary('GetTaskLog', (req: wire.TaskIdRequest) => ({ lines: core.tasks.lines(req.id).map(lineToWire) })),
    cancelTask: unary('CancelTask', (req: wire.TaskIdRequest) => taskToWire(core.tasks.cancel(req.id))),
    rollbackTask: unary('RollbackTask', (req: wire.TaskIdRequest) => taskToWire(core.sites.rollback.submit(req.id))),

    watchTask: (call: ServerWritableStream<wire.WatchTaskRequest, wire.TaskEvent>) => {
      let off: (() => void) | undefined;
      const finish = (e?: unknown) => {
        off?.();
        if (e) call.emit('error', Object.assign(new Error('watch failed'), toServiceError(e)));
        else call.end();
      };
      try {
        operator(call);
        const id = call.request.id;
        let lastSeq = call.request.fromSeq;
        let ended = false;
        const onEvent = (ev: TaskEvent) => {
          if (ended) return;
          if (ev.type === 'line') {
            if (ev.line.seq <= lastSeq) return;
            lastSeq = ev.line.seq;
            call.write({ event: { $case: 'line', value: lineToWire(ev.line) } });
          } else {
            call.write({ event: { $case: 'task', value: taskToWire(ev.task) } });
            if (isFinal(ev.task.state)) {
              // Flush lines written just before the final state, then end.
              for (const l of core.tasks.lines(id, lastSeq)) {
                lastSeq = l.seq;
                call.write({ event: { $case: 'line', value: lineToWire(l) } });
              }
              ended = true;
              finish();
            }
          }
        };
        // Subscribe first so nothing is missed between the backlog read and live events.
        off = core.tasks.subscribe(id, onEvent);
        const task = core.tasks.get(id);
        call.write({ event: { $case: 'task', value: taskToWire(task) } });
        for (const l of core.tasks.lines(id, lastSeq)) onEvent({ type: 'line', line: l });
        if (isFinal(core.tasks.get(id).state)) onEvent({ type: 'task', task: core.tasks.get(id) });
        call.on('cancelled', () => {
          ended = true;
          off?.();
        });
      } catch (e) {
        finish(e);
      }
    },

    events: (call: ServerWritableStream<wire.EventsRequest, wire.SpokeEvent>) => {
      let off: (() => void) | undefined;
      try {
        operator(call);
        const backlog = call.request.backlog > 0 ? call.request.backlog : 20;
        for (const e of core.events.backlog(backlog)) call.write(e);
        if (!call.request.follow) return call.end();
        // The backlog read and this subscription run in one synchronous turn: no event falls between.
        off = core.events.subscribe((e) => call.write(e));
        call.on('cancelled', () => off?.());
        call.on('close', () => off?.());
      } catch (e) {
        off?.();
        call.emit('error', Object.assign(new Error('events failed'), toServiceError(e)));
      }
    },

    runSiteCron: unary('RunSiteCron', async (req: wire.NameRequest) => {
      const r = await core.cron.runNow(req.name);
      return { ...cronRunToWire(r.run), message: r.joined ? `(a ${r.run.trigger} run was going already; its outcome) ${r.run.message}` : r.run.message };
    }),
    setSiteCron: unary('SetSiteCron', (req: wire.SetSiteCronRequest) => {
      const s = core.ns.setSiteCronInterval(req.domain, parseCronInterval(req.interval));
      return siteToWire(s, core.cron.info(s));
    }),
    setSiteHttps: unary('SetSiteHttps', async (req: wire.SetSiteHttpsRequest) => taskToWire(await core.https.set(httpsFromWire(req)))),
    listCronRuns: unary('ListCronRuns', (req: wire.NameRequest) => ({ runs: core.cron.history(req.name).map(cronRunToWire) })),

    issueOperatorCert: unary('IssueOperatorCert', async (req: wire.IssueOperatorCertRequest) => {
      if (via !== 'socket') throw fail('CERT_UNKNOWN', 'operator certificates are issued only over the local socket');
      const ttl = req.ttlSeconds > 0 ? req.ttlSeconds * 1000 : 365 * 86_400_000;
      const certPem = await core.enroller.issueOperatorCert(req.name, req.csrPem, ttl);
      core.operators.record(req.name, certPem);
      return { certPem, caPem: core.enroller.caPem };
    }),
    listOperators: unary('ListOperators', () => ({ operators: core.operators.list().map(operatorToWire) })),
    revokeOperator: unary('RevokeOperator', (req: wire.NameRequest) => ({ operators: core.operators.revoke(req.name).map(operatorToWire) })),
  };
}
