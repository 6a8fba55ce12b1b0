/**
 * `platform status`: desired vs observed per server, asking each agent what is on its disk. A
 * read: it writes nothing. The desired root hash has one writer, the platform's verify and
 * converge tasks (converge.ts, under the platform's task lock); status shows the one they stored
 * and counts the files of the master's tree as it is now.
 */
import { existsSync } from 'node:fs';
import { isSpokeError, type Logger } from '@spoke/shared';
import type { TreeStatusReport } from '@spoke/shared';
import type { AgentHub } from '../servers/hub.js';
import type { Namespace } from '../namespace/namespace.js';
import type { TreeStore } from './trees.js';
import type { PlatformInfo } from '../types.js';

/** What `platform status` reports. */
export interface PlatformStatusInfo {
  platform: PlatformInfo;
  /** Files and their bytes in the master's canonical tree now (0 when it cannot be read). */
  files: number;
  bytes: number;
  servers: { server: string; online: boolean; report: TreeStatusReport | null; error: string }[];
}

/**
 * Desired vs observed per server of platform `name`. An offline server or one whose TreeStatus
 * fails is reported as such, not thrown.
 * @throws SpokeError PLATFORM_NOT_FOUND
 */
export async function platformStatus(deps: { ns: Namespace; trees: TreeStore; hub: AgentHub; log: Logger }, name: string): Promise<PlatformStatusInfo> {
  const { ns, trees, hub, log } = deps;
  const p = ns.getPlatform(name);
  let files = 0;
  let bytes = 0;
  // A makefile or git platform that was never built has no tree yet: nothing to count.
  if (p.source.kind === 'existing' || existsSync(trees.hostPath(p.path))) {
    try {
      const m = await trees.manifest(p.path, p.excludes, { live: p.live });
      for (const e of m.entries) if (e.type === 'file') (files++, (bytes += e.size));
    } catch (e) {
      log.warn({ platform: name, err: (e as Error).message }, 'cannot scan platform for status');
    }
  }
  const servers = await Promise.all(
    ns.targets(p.server).map(async (server) => {
      const online = hub.isOnline(server);
      if (!online) return { server, online, report: null, error: 'offline' };
      try {
        const report = await hub.call(server, { type: 'treeStatus', tree: p.path, excludes: p.excludes }, { timeoutMs: 60_000 });
        return { server, online, report, error: '' };
      } catch (e) {
        return { server, online, report: null, error: isSpokeError(e) ? `${e.code}: ${e.message}` : String(e) };
      }
    }),
  );
  return { platform: p, files, bytes, servers };
}
