/**
 * The health at a glance that `spoke status` shows: agents offline (by name), tasks that failed
 * recently, anything stuck (running or queued longer than expected), sites whose cron fails. A
 * pure function over what the components report, so the thresholds are tested with plain tables.
 */
import type { TaskInfo } from '../types.js';

/** A task named in the summary. */
export interface HealthTask {
  id: number;
  kind: string;
  entity: string;
  state: string;
  errorCode: string;
  errorMessage: string;
  /** When it failed (failing), or when it started running / was queued (stuck). */
  sinceMs: number;
}

/** A site whose last cron run failed. */
export interface HealthCron {
  domain: string;
  /** Failed runs in a row. */
  failures: number;
  errorCode: string;
  message: string;
}

/** What `spoke status` adds to the counts. */
export interface HealthSummary {
  /** Enrolled agent servers not online now, by name. */
  agentsOffline: string[];
  /** Tasks that failed within `FAILING_WINDOW_MS`, newest first (at most `LIST_MAX`). */
  tasksFailing: HealthTask[];
  /** Tasks running longer than `STUCK_RUNNING_MS` or queued longer than `STUCK_QUEUED_MS`. */
  tasksStuck: HealthTask[];
  /** Sites whose newest cron run failed. */
  cronFailing: HealthCron[];
}

/** A failed task counts as "failing" this long after it ended. @default 24 h */
export const FAILING_WINDOW_MS = 24 * 3600_000;
/** A task running this long is stuck (a converge of a large platform takes minutes, not an hour). */
export const STUCK_RUNNING_MS = 3600_000;
/** A task queued this long is stuck (something holds its entity or every slot). */
export const STUCK_QUEUED_MS = 10 * 60_000;
/** Most tasks listed per kind of trouble. */
export const LIST_MAX = 10;

/** What the summary is computed from. */
export interface HealthInput {
  now: number;
  agents: { name: string; online: boolean }[];
  /** Recent failed tasks (newest first), running and queued tasks. */
  failed: TaskInfo[];
  running: TaskInfo[];
  queued: TaskInfo[];
  cron: { domain: string; ok: boolean; failures: number; errorCode: string; message: string }[];
}

function task(t: TaskInfo, sinceMs: number): HealthTask {
  return { id: t.id, kind: t.kind, entity: t.entity, state: t.state, errorCode: t.errorCode ?? '', errorMessage: t.errorMessage ?? '', sinceMs };
}

/** Computes the summary. */
export function healthSummary(i: HealthInput): HealthSummary {
  const stuck = [
    ...i.running.filter((t) => t.startedMs !== null && i.now - t.startedMs > STUCK_RUNNING_MS).map((t) => task(t, t.startedMs as number)),
    ...i.queued.filter((t) => i.now - t.createdMs > STUCK_QUEUED_MS).map((t) => task(t, t.createdMs)),
  ].sort((a, b) => a.sinceMs - b.sinceMs);
  return {
    agentsOffline: i.agents
      .filter((a) => !a.online)
      .map((a) => a.name)
      .sort(),
    tasksFailing: i.failed
      .filter((t) => t.finishedMs !== null && i.now - t.finishedMs <= FAILING_WINDOW_MS)
      .slice(0, LIST_MAX)
      .map((t) => task(t, t.finishedMs as number)),
    tasksStuck: stuck.slice(0, LIST_MAX),
    cronFailing: i.cron
      .filter((c) => !c.ok)
      .sort((a, b) => b.failures - a.failures || a.domain.localeCompare(b.domain))
      .map((c) => ({ domain: c.domain, failures: c.failures, errorCode: c.errorCode, message: c.message })),
  };
}
