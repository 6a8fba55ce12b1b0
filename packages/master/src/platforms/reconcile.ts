/**
 * Level-triggered healing (issue 19 item 2): what converges should run now, decided from the
 * whole picture — desired vs observed for every (platform, server), what is already queued or
 * running, and each pair's recent failures — instead of from the one event that woke us. Events
 * (hello, drift reports, a converge finishing) only wake the loop early; a timer runs it anyway,
 * so a converge that failed for a cause that went away (disk freed, agent restarted) heals
 * without anyone running a command. Pure: the caller gathers the state and submits the tasks.
 */
import type { TaskInfo } from '../types.js';

/** One (platform, server) pair as the master knows it. */
export interface PairState {
  platform: string;
  server: string;
  /** The platform's desired root hash; "" when it was never verified (nothing to converge to). */
  desired: string;
  /** What the server last reported holding; "" or null when it holds nothing or never said. */
  observed: string | null;
  online: boolean;
  /** A converge of this pair (or a verify of the platform) is queued or running. */
  busy: boolean;
  /** Failed converges of this pair since its last success. */
  failures: number;
  /** When the last of those failed (ms). */
  lastFailedMs: number;
  /** The last failure's error, for the log and `platform status`. */
  lastError: string;
  /**
   * The platform only reports drift (`--drift report`) and this server's tree, as observed now,
   * was reported already (a converge answered DRIFT_FOUND for it): left to an operator until the
   * tree changes again (platforms/drift.ts).
   */
  driftReported?: boolean;
}

export interface ReconcilePolicy {
  /** Backoff after the first failure; doubles with each further one. */
  baseBackoffMs: number;
  /** Backoff ceiling. */
  maxBackoffMs: number;
  /** Converges queued or running at once (the loop's own and any others). */
  maxConcurrent: number;
}

export const DEFAULT_POLICY: ReconcilePolicy = { baseBackoffMs: 15_000, maxBackoffMs: 15 * 60_000, maxConcurrent: 8 };

export interface PlannedConverge {
  platform: string;
  server: string;
  why: string;
}

export interface WaitingPair {
  platform: string;
  server: string;
  /** When the next try is due (ms). */
  nextMs: number;
  failures: number;
  lastError: string;
}

export interface ReconcilePlan {
  start: PlannedConverge[];
  /** Pairs that differ but back off after failures, with their next try. */
  waiting: WaitingPair[];
  /** Pairs that differ and are due, but over the concurrency cap (next run takes them). */
  deferred: number;
}

/** The wait after `failures` consecutive failures (0 → none). */
export function backoffMs(failures: number, p: ReconcilePolicy): number {
  if (failures <= 0) return 0;
  return Math.min(p.maxBackoffMs, p.baseBackoffMs * 2 ** Math.min(failures - 1, 30));
}

/**
 * The converges to start now. A pair needs one when its platform was verified, its server is
 * online, nothing is already converging it, and what the server holds differs from desired; after
 * failures it waits (exponential backoff); drift a report-only platform already reported waits for
 * an operator. `running` is how many converges are queued or running already; fresh pairs go
 * before retries, then by name, up to the cap.
 */
export function planConverges(pairs: readonly PairState[], running: number, now: number, policy: ReconcilePolicy = DEFAULT_POLICY): ReconcilePlan {
  const due: (PairState & { why: string })[] = [];
  const waiting: WaitingPair[] = [];
  for (const p of pairs) {
    if (!p.desired || !p.online || p.busy || p.observed === p.desired || p.driftReported === true) continue;
    if (p.failures > 0) {
      const nextMs = p.lastFailedMs + backoffMs(p.failures, policy);
      if (nextMs > now) {
        waiting.push({ platform: p.platform, server: p.server, nextMs, failures: p.failures, lastError: p.lastError });
        continue;
      }
    }
    const state = p.observed ? 'drift or stale copy' : 'tree missing on the server';
    due.push({ ...p, why: p.failures > 0 ? `retry ${p.failures + 1} (${state}; last: ${p.lastError || 'failed'})` : state });
  }
  due.sort((a, b) => a.failures - b.failures || cmp(a.platform, b.platform) || cmp(a.server, b.server));
  const room = Math.max(0, policy.maxConcurrent - running);
  return {
    start: due.slice(0, room).map((p) => ({ platform: p.platform, server: p.server, why: p.why })),
    waiting: waiting.sort((a, b) => a.nextMs - b.nextMs),
    deferred: Math.max(0, due.length - room),
  };
}

/** When the loop should run next: the earliest due retry, else the regular interval. */
export function nextWakeMs(plan: ReconcilePlan, now: number, intervalMs: number): number {
  const first = plan.waiting[0]?.nextMs;
  return first !== undefined && first < now + intervalMs ? Math.max(first, now + 1) : now + intervalMs;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A pair's failed converges since its last success, newest first in `recent` (a platform's
 * latest tasks): a succeeded converge of the server or a succeeded verify ends the count.
 */
export function failuresOf(recent: readonly TaskInfo[], server: string): { failures: number; lastFailedMs: number; lastError: string } {
  let failures = 0;
  let lastFailedMs = 0;
  let lastError = '';
  for (const t of recent) {
    const mine = t.kind === 'platform.converge' && t.params.server === server;
    if ((mine || t.kind === 'platform.verify') && t.state === 'succeeded') break;
    // a converge the master's own stop interrupted says nothing about the server
    if (mine && t.state === 'failed' && t.errorCode !== 'TASK_INTERRUPTED') {
      if (failures === 0) {
        lastFailedMs = t.finishedMs ?? t.createdMs;
        lastError = t.errorCode ? `${t.errorCode}: ${t.errorMessage ?? ''}` : (t.errorMessage ?? '');
      }
      failures++;
    }
  }
  return { failures, lastFailedMs, lastError };
}
