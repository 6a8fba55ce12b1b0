/**
 * The master's event feed (`spoke events`): every task state change and every agent connect and
 * disconnect, as they happen — what `kubectl get events -w` gives. Site and platform status move
 * only through tasks, so their task events carry them. The backlog is read from the task table
 * (each task's created, started and finished times), so it survives a restart.
 */
import type { AgentHub } from './servers/hub.js';
import type { TaskEngine } from './tasks/engine.js';
import type { TaskInfo } from './types.js';

export interface SpokeEvent {
  tsMs: number;
  kind: 'task' | 'agent';
  /** e.g. "site:blog.example.com", "server:web-1". */
  entity: string;
  /** task: queued | running | succeeded | failed | cancelled; agent: connected | disconnected. */
  state: string;
  /** 0 for agent events. */
  taskId: number;
  taskKind: string;
  /** The error of a failed task, or "". */
  message: string;
}

/** The event of a task in its current state. */
export function taskEvent(t: TaskInfo): SpokeEvent {
  const tsMs = t.state === 'queued' ? t.createdMs : t.state === 'running' ? (t.startedMs ?? t.createdMs) : (t.finishedMs ?? t.startedMs ?? t.createdMs);
  const message = t.state === 'failed' || t.state === 'cancelled' ? [t.errorCode, t.errorMessage].filter(Boolean).join(': ') : '';
  return { tsMs, kind: 'task', entity: t.entity, state: t.state, taskId: t.id, taskKind: t.kind, message };
}

/** The last `limit` task changes the rows of `tasks` record (queued, started, finished), oldest first. */
export function taskBacklog(tasks: readonly TaskInfo[], limit: number): SpokeEvent[] {
  const out: SpokeEvent[] = [];
  for (const t of tasks) {
    out.push(taskEvent({ ...t, state: 'queued' }));
    if (t.startedMs !== null) out.push(taskEvent({ ...t, state: 'running' }));
    if (t.state !== 'queued' && t.state !== 'running') out.push(taskEvent(t));
  }
  out.sort((a, b) => a.tsMs - b.tsMs || a.taskId - b.taskId || order(a.state) - order(b.state));
  return limit > 0 ? out.slice(-limit) : [];
}

function order(state: string): number {
  return state === 'queued' ? 0 : state === 'running' ? 1 : 2;
}

/** Live events from the task engine and the agent hub. */
export class EventFeed {
  constructor(private readonly deps: { tasks: TaskEngine; hub: Pick<AgentHub, 'events'>; clock: () => number }) {}

  /** The backlog of recent task changes, oldest first. */
  backlog(limit: number): SpokeEvent[] {
    // each task gives up to three events: read enough rows for `limit`
    return taskBacklog(this.deps.tasks.list({ limit: Math.max(1, limit) }), limit);
  }

  /** Calls `fn` with every event from now on; returns the unsubscribe function. */
  subscribe(fn: (e: SpokeEvent) => void): () => void {
    const offTasks = this.deps.tasks.onChange((t) => fn(taskEvent(t)));
    const agent = (state: string) => (server: string) =>
      fn({ tsMs: this.deps.clock(), kind: 'agent', entity: `server:${server}`, state, taskId: 0, taskKind: '', message: '' });
    const online = agent('connected');
    const offline = agent('disconnected');
    this.deps.hub.events.on('online', online);
    this.deps.hub.events.on('offline', offline);
    return () => {
      offTasks();
      this.deps.hub.events.off('online', online);
      this.deps.hub.events.off('offline', offline);
    };
  }
}
