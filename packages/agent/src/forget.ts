/**
 * A platform leaving this server (`platform rm` on the master): its web server config goes
 * first, through the same write/test/restore/reload path as site vhosts (a failed test puts it
 * back and fails with WEBSERVER_CONFIG_INVALID; the tree is then left as it was), then the tree
 * is forgotten (committed state removed, no longer reported) and, with removeTree, deleted
 * except user data. An agent without a web server (NO_HTTP_SERVICE) has no config to remove.
 */
import { isSpokeError, checkName, type ForgetPlatformRequest, type PlatformForgetReport } from '@spoke/shared';
import type { AgentTrees } from './sync.js';
import type { WebConfig } from './webconfig.js';

/**
 * Removes the platform's config, then forgets (and with removeTree deletes) its tree.
 * @throws SpokeError INVALID_NAME, CONFIG_INVALID, WEBSERVER_CONFIG_INVALID (config put back,
 *   tree untouched), WEBSERVER_RELOAD_FAILED (config removed and tested; tree untouched),
 *   PATH_OUTSIDE_ROOTS
 */
export async function forgetPlatform(
  deps: { web: Pick<WebConfig, 'removePlatform'>; trees: Pick<AgentTrees, 'forget'> },
  req: ForgetPlatformRequest,
): Promise<PlatformForgetReport> {
  checkName(req.platform, 'platform name');
  const out: PlatformForgetReport = { configRemoved: false, reloaded: false, treeRemoved: false, problems: [], configPath: '', kept: [] };
  try {
    const r = await deps.web.removePlatform({ platform: req.platform, pinnedImpl: req.pinnedImpl });
    out.configRemoved = r.removed;
    out.reloaded = r.reloaded;
    out.configPath = r.path;
    out.problems.push(...r.problems);
  } catch (e) {
    if (!isSpokeError(e, 'NO_HTTP_SERVICE')) throw e;
    out.problems.push(`no web server config to remove: ${e.message}`);
  }
  const t = await deps.trees.forget(req.tree, req.removeTree);
  out.treeRemoved = t.treeRemoved;
  out.kept = t.kept;
  out.problems.push(...t.problems);
  return out;
}
