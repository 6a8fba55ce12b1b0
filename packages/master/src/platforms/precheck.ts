/**
 * The re-observation an operator's verify asks of every server (issue 19 item 1), started at the
 * same time as the master's own re-read of the canonical tree instead of after it.
 *
 * A verify used to send `ConvergeCommand.recheck` once the master's manifest was ready, so each
 * agent walked its tree (stat-cached: ~0.3–0.4 s for 20,000 files here) only then, while the
 * master waited; and the master's re-read (a changed 50 MB file: ~0.2 s to hash) had run while the
 * agents waited. A `treeStatus` sent at the start of the verify does the agent's part — the same
 * observe(), which marks a drifted tree so the converge after it walks and repairs it — while the
 * master reads. The converge that follows is then sent without `recheck` to the servers that
 * answered; any other (offline now, an error) keeps `recheck`, as before.
 */
import { isSpokeError } from '@spoke/shared';
import type { AgentHub } from '../servers/hub.js';

/** What a precheck needs of the hub (AgentHub in the daemon). */
export type PrecheckHub = Pick<AgentHub, 'call' | 'isOnline'>;

/**
 * Asks each online server in `servers` to re-observe `tree` now. Resolves (never rejects) to the
 * servers that did; the others must re-observe as part of their converge (`recheck`).
 */
export async function observeFirst(
  hub: PrecheckHub,
  servers: readonly string[],
  tree: string,
  excludes: string[],
  signal: AbortSignal,
  log: (line: string, level?: 'info' | 'warn' | 'error') => void,
): Promise<Set<string>> {
  const done = await Promise.all(
    servers.map(async (server) => {
      // An offline server would make the call wait for its reconnect: its converge waits instead.
      if (!hub.isOnline(server)) return undefined;
      try {
        await hub.call(server, { type: 'treeStatus', tree, excludes }, { signal, timeoutMs: 60_000 });
        return server;
      } catch (e) {
        if (!signal.aborted)
          log(`${server}: could not re-observe the tree before the converge (${isSpokeError(e) ? e.code : String(e)}); the converge does it`, 'warn');
        return undefined;
      }
    }),
  );
  return new Set(done.filter((s): s is string => s !== undefined));
}
