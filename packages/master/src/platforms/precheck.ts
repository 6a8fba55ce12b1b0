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

/** How often a pending re-observation checks that its server is still online. */
export const OFFLINE_CHECK_MS = 250;

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
  /** How often a pending re-observation checks that its server is still online. */
  offlineCheckMs = OFFLINE_CHECK_MS,
): Promise<Set<string>> {
  // A server that stops answering (frozen, its link dead) goes offline when its heartbeats stop,
  // but a call in flight to it waits for its own timeout: give up on it once it is offline, so
  // its converge (which waits for it to come back, saying so) starts instead of this waiting.
  const pending = new Map<string, AbortController>();
  const watch = setInterval(() => {
    for (const [server, ac] of pending) if (!hub.isOnline(server)) ac.abort();
  }, offlineCheckMs);
  try {
    const done = await Promise.all(
      servers.map(async (server) => {
        // An offline server would make the call wait for its reconnect: its converge waits instead.
        if (!hub.isOnline(server)) return undefined;
        const gone = new AbortController();
        pending.set(server, gone);
        try {
          await hub.call(server, { type: 'treeStatus', tree, excludes }, { signal: AbortSignal.any([signal, gone.signal]), timeoutMs: 60_000 });
          return server;
        } catch (e) {
          if (signal.aborted) return undefined;
          if (gone.signal.aborted) log(`${server}: went offline before it re-observed the tree; its converge waits for it`, 'warn');
          else log(`${server}: could not re-observe the tree before the converge (${isSpokeError(e) ? e.code : String(e)}); the converge does it`, 'warn');
          return undefined;
        } finally {
          pending.delete(server);
        }
      }),
    );
    return new Set(done.filter((s): s is string => s !== undefined));
  } finally {
    clearInterval(watch);
  }
}
