/**
 * The task engine. Tasks are rows in SQLite; memory only schedules them. A task holds its
 * entity (and any extra locks) while it runs: one running task per entity, FIFO per entity, a
 * global concurrency limit. Log lines are stored and fanned out to watchers.
 */
import { EventEmitter } from 'node:events';
import { type SpokeError, fail, isSpokeError, type Logger } from '@spoke/shared';
import type { Db } from '../namespace/store.js';
import type { Clock, TaskInfo, TaskLogEntry, TaskState } from '../types.js';
import { checkTaskParams } from './params.js';

/** What the engine reports for metrics (health/metrics.ts implements it; tasks/ stays a floor room). */
export interface TaskMetrics {
  /** A task started after waiting `waitSeconds` in the queue. */
  taskStarted(kind: string, waitSeconds: number): void;
  /** A task ended in `state` after running `runSeconds` (null: it never started). */
  taskFinished(kind: string, state: string, runSeconds: number | null): void;
}

const NO_TASK_METRICS: TaskMetrics = { taskStarted: () => undefined, taskFinished: () => undefined };

/** What a running task's handler gets. */
export interface TaskContext {
  task: TaskInfo;
  /** Aborted when the task is cancelled or the master stops. */
  signal: AbortSignal;
  /** Appends a line to the task log (stored, streamed to watchers). */
  log(message: string, level?: TaskLogEntry['level']): void;
  /**
   * Aborted only when the master stops (never by a cancel): for work that must go on after a
   * cancel, like undoing the steps a task already made.
   */
  stopping: AbortSignal;
}

/** Runs one kind of task; returns the task's result (stored as JSON) or throws. */
export type TaskHandler = (ctx: TaskContext) => Promise<unknown>;

/** Options of a task kind. */
export interface TaskKindOptions {
  /**
   * Runs, instead of failing the task at once, when a task of this kind is found `running` at
   * start-up (the master stopped during it): e.g. rolls back the steps it recorded. It must throw
   * the task's final error. While the master stops, a task of such a kind that ends with
   * TASK_INTERRUPTED stays `running`, so that this runs at the next start-up.
   */
  resume?: TaskHandler;
}

/** What `submit` takes. */
export interface SubmitInput {
  kind: string;
  /** The entity the task acts on, e.g. `server:web`. */
  entity: string;
  /** More entities held while running (a migrate holds its site and both platforms). */
  locks?: string[];
  params?: Record<string, unknown>;
}

/** Events: `line` (TaskLogEntry) and `task` (TaskInfo), both also on `task:<id>`. */
export type TaskEvent = { type: 'line'; line: TaskLogEntry } | { type: 'task'; task: TaskInfo };

interface TaskRow {
  id: number;
  kind: string;
  entity: string;
  locks_json: string;
  state: TaskState;
  params_json: string;
  result_json: string | null;
  error_code: string | null;
  error_message: string | null;
  created_ms: number;
  started_ms: number | null;
  finished_ms: number | null;
}

const FINAL: ReadonlySet<TaskState> = new Set(['succeeded', 'failed', 'cancelled']);
/** Allowed state transitions; every change goes through `transition`. */
const TRANSITIONS: Record<TaskState, readonly TaskState[]> = {
  queued: ['running', 'cancelled'],
  running: ['succeeded', 'failed', 'cancelled'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

/** True when a task state is final. */
export function isFinal(state: TaskState): boolean {
  return FINAL.has(state);
}

/** The task engine. Call `recover()` then `start()` at master start-up. */
export class TaskEngine {
  private readonly db: Db;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly concurrency: number;
  /** Queue wait and run time of each task. */
  private readonly metrics: TaskMetrics;
  private readonly handlers = new Map<string, TaskHandler>();
  private readonly resumers = new Map<string, TaskHandler>();
  /** Interrupted tasks of resumable kinds found by `recover()`, run by `start()`. */
  private resuming: TaskRow[] = [];
  private readonly stopController = new AbortController();
  private readonly running = new Map<number, { controller: AbortController; locks: string[]; done: Promise<void> }>();
  private readonly events = new EventEmitter();
  private started = false;
  private stopping = false;
  private scheduled = false;

  constructor(deps: { db: Db; clock: Clock; log: Logger; concurrency?: number; metrics?: TaskMetrics }) {
    this.metrics = deps.metrics ?? NO_TASK_METRICS;
    this.db = deps.db;
    this.clock = deps.clock;
    this.log = deps.log;
    this.concurrency = deps.concurrency ?? 4;
    this.events.setMaxListeners(0);
  }

  /** Registers the handler for a task kind. */
  register(kind: string, handler: TaskHandler, opts: TaskKindOptions = {}): void {
    this.handlers.set(kind, handler);
    if (opts.resume) this.resumers.set(kind, opts.resume);
    else this.resumers.delete(kind);
  }

  /**
   * Fails every task left `running` by a previous master process, with a log line saying why;
   * a task of a kind with a `resume` handler is kept for `start()`, which runs that handler
   * (e.g. a rollback). Returns the ids it failed.
   */
  recover(): number[] {
    const all = this.db.prepare("SELECT * FROM tasks WHERE state = 'running' ORDER BY id").all() as TaskRow[];
    const resumable = all.filter((r) => this.resumers.has(r.kind));
    for (const r of resumable) {
      this.appendLine(r.id, 'warn', 'the master stopped while this task was running; rolling back what it did at start-up');
    }
    this.resuming = resumable;
    if (resumable.length > 0) this.log.warn({ tasks: resumable.map((r) => r.id) }, 'rolling back tasks interrupted by a restart');
    const rows = all.filter((r) => !this.resumers.has(r.kind));
    for (const r of rows) {
      this.appendLine(r.id, 'error', 'the master stopped while this task was running; marked failed at start-up (re-run it)');
      this.transition(r.id, 'failed', {
        errorCode: 'TASK_INTERRUPTED',
        errorMessage: 'the master stopped while this task was running',
      });
    }
    if (rows.length > 0) this.log.warn({ tasks: rows.map((r) => r.id) }, 'failed tasks interrupted by a restart');
    return rows.map((r) => r.id);
  }

  /** Starts scheduling queued tasks. */
  start(): void {
    this.started = true;
    const resuming = this.resuming;
    this.resuming = [];
    for (const row of resuming) this.run(row, JSON.parse(row.locks_json) as string[], this.resumers.get(row.kind));
    this.schedule();
  }

  /** Stops scheduling, aborts running tasks and waits for their handlers to settle. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopController.abort(fail('TASK_INTERRUPTED', 'the master is shutting down'));
    for (const r of this.running.values()) r.controller.abort(fail('TASK_INTERRUPTED', 'the master is shutting down'));
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
  }

  /** Queues a task. @throws SpokeError INVALID_ARGUMENT for an unknown kind */
  submit(input: SubmitInput): TaskInfo {
    if (!this.handlers.has(input.kind)) throw fail('INVALID_ARGUMENT', `unknown task kind ${input.kind}`);
    const locks = [input.entity, ...(input.locks ?? []).filter((l) => l !== input.entity)];
    const res = this.db
      .prepare("INSERT INTO tasks (kind, entity, locks_json, state, params_json, created_ms) VALUES (?, ?, ?, 'queued', ?, ?)")
      .run(input.kind, input.entity, JSON.stringify(locks), JSON.stringify(input.params ?? {}), this.clock());
    const id = Number(res.lastInsertRowid);
    this.appendLine(id, 'info', `queued ${input.kind} on ${input.entity}`);
    const task = this.get(id);
    this.emit(task);
    this.schedule();
    return task;
  }

  /** @throws SpokeError TASK_NOT_FOUND */
  get(id: number): TaskInfo {
    const r = this.db.prepare('SELECT * FROM tasks WHERE id = ?').get(id) as TaskRow | undefined;
    if (!r) throw fail('TASK_NOT_FOUND', `no task with id ${id} (see: spoke task ls)`);
    return toTask(r);
  }

  /**
   * Tasks, newest first. `entity` is `KIND:NAME` (`platform:wp`), or a bare `NAME` when tasks of
   * only one kind carry that name. @throws SpokeError ENTITY_AMBIGUOUS (a bare name of two kinds)
   */
  list(filter: { state?: TaskState; entity?: string; limit?: number } = {}): TaskInfo[] {
    if (filter.entity && !filter.entity.includes(':')) filter = { ...filter, entity: this.entityOf(filter.entity) };
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.state) {
      where.push('state = ?');
      args.push(filter.state);
    }
    if (filter.entity) {
      where.push('entity = ?');
      args.push(filter.entity);
    }
    const sql = `SELECT * FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    args.push(filter.limit && filter.limit > 0 ? filter.limit : 100);
    return (this.db.prepare(sql).all(...args) as TaskRow[]).map(toTask);
  }

  /** The one `KIND:NAME` entity tasks were run on named `name`; the name itself when none. */
  private entityOf(name: string): string {
    const rows = this.db.prepare("SELECT DISTINCT entity FROM tasks WHERE substr(entity, instr(entity, ':') + 1) = ? ORDER BY entity").all(name) as {
      entity: string;
    }[];
    if (rows.length > 1) {
      const kinds = rows.map((r) => r.entity);
      throw fail('ENTITY_AMBIGUOUS', `"${name}" names ${rows.length} things: ${kinds.join(', ')}; say which (e.g. --entity ${kinds[0]})`);
    }
    return rows[0]?.entity ?? name;
  }

  /** Log lines of a task after `fromSeq`. @throws SpokeError TASK_NOT_FOUND */
  lines(id: number, fromSeq = 0): TaskLogEntry[] {
    this.get(id);
    return (
      this.db.prepare('SELECT * FROM task_log WHERE task_id = ? AND seq > ? ORDER BY seq').all(id, fromSeq) as {
        task_id: number;
        seq: number;
        ts_ms: number;
        level: TaskLogEntry['level'];
        message: string;
      }[]
    ).map((l) => ({ taskId: l.task_id, seq: l.seq, tsMs: l.ts_ms, level: l.level, message: l.message }));
  }

  /** Counts by state, for `spoke status`. */
  counts(): { queued: number; running: number } {
    const one = (s: string) => (this.db.prepare('SELECT count(*) AS n FROM tasks WHERE state = ?').get(s) as { n: number }).n;
    return { queued: one('queued'), running: one('running') };
  }

  /** Task counts by kind and state (the metrics' gauge). */
  countsByKindState(): { kind: string; state: string; count: number }[] {
    return this.db.prepare('SELECT kind, state, count(*) AS count FROM tasks GROUP BY kind, state ORDER BY kind, state').all() as {
      kind: string;
      state: string;
      count: number;
    }[];
  }

  /**
   * Cancels a queued task at once, or asks a running one to stop (its handler sees the abort
   * signal; the task ends `cancelled`).
   * @throws SpokeError TASK_NOT_FOUND, TASK_FINISHED
   */
  cancel(id: number): TaskInfo {
    const t = this.get(id);
    if (isFinal(t.state)) throw fail('TASK_FINISHED', `task ${id} already ${t.state}`);
    if (t.state === 'queued') {
      this.appendLine(id, 'warn', 'cancelled by the operator before it started');
      this.transition(id, 'cancelled', { errorCode: 'TASK_CANCELLED', errorMessage: 'cancelled by the operator' });
      this.schedule();
      return this.get(id);
    }
    const r = this.running.get(id);
    this.appendLine(id, 'warn', 'cancel requested by the operator');
    r?.controller.abort(fail('TASK_CANCELLED', 'cancelled by the operator'));
    return this.get(id);
  }

  /**
   * Subscribes to one task's events. Returns the unsubscribe function.
   */
  subscribe(id: number, fn: (e: TaskEvent) => void): () => void {
    const key = `task:${id}`;
    this.events.on(key, fn);
    return () => this.events.off(key, fn);
  }

  /** Resolves when the task reaches a final state. */
  wait(id: number): Promise<TaskInfo> {
    return new Promise((resolve) => {
      const check = () => {
        const t = this.get(id);
        if (isFinal(t.state)) {
          off();
          resolve(t);
        }
      };
      const off = this.subscribe(id, (e) => {
        if (e.type === 'task') check();
      });
      check();
    });
  }

  private appendLine(id: number, level: TaskLogEntry['level'], message: string): void {
    const line = this.db.transaction(() => {
      const next = ((this.db.prepare('SELECT max(seq) AS s FROM task_log WHERE task_id = ?').get(id) as { s: number | null }).s ?? 0) + 1;
      const ts = this.clock();
      this.db.prepare('INSERT INTO task_log (task_id, seq, ts_ms, level, message) VALUES (?, ?, ?, ?, ?)').run(id, next, ts, level, message);
      return { taskId: id, seq: next, tsMs: ts, level, message };
    })();
    this.events.emit(`task:${id}`, { type: 'line', line } satisfies TaskEvent);
  }

  private transition(id: number, to: TaskState, extra: { result?: unknown; errorCode?: string; errorMessage?: string } = {}): void {
    const from = this.get(id).state;
    if (!TRANSITIONS[from].includes(to)) {
      throw fail('INTERNAL', `task ${id}: illegal transition ${from} -> ${to}`);
    }
    const now = this.clock();
    this.db
      .prepare(
        `UPDATE tasks SET state = ?, started_ms = CASE WHEN ? = 'running' THEN ? ELSE started_ms END,
           finished_ms = CASE WHEN ? IN ('succeeded', 'failed', 'cancelled') THEN ? ELSE finished_ms END,
           result_json = COALESCE(?, result_json), error_code = COALESCE(?, error_code), error_message = COALESCE(?, error_message)
         WHERE id = ?`,
      )
      .run(to, to, now, to, now, extra.result === undefined ? null : JSON.stringify(extra.result), extra.errorCode ?? null, extra.errorMessage ?? null, id);
    this.log.info({ task: id, from, to }, 'task state');
    const task = this.get(id);
    if (to === 'running') this.metrics.taskStarted(task.kind, (now - task.createdMs) / 1000);
    else if (isFinal(to)) this.metrics.taskFinished(task.kind, to, task.startedMs === null ? null : (now - task.startedMs) / 1000);
    this.emit(task);
  }

  private emit(task: TaskInfo): void {
    this.events.emit(`task:${task.id}`, { type: 'task', task } satisfies TaskEvent);
    this.events.emit('change', task);
  }

  /** Subscribes to every task's state changes (submitted, started, finished). Returns the unsubscribe function. */
  onChange(fn: (task: TaskInfo) => void): () => void {
    this.events.on('change', fn);
    return () => this.events.off('change', fn);
  }

  private schedule(): void {
    if (!this.started || this.stopping || this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  /** Starts every queued task whose locks are free, FIFO per entity, up to the limit. */
  private pump(): void {
    // Full: nothing can start. Else only ids and locks of the queue, the whole row of a task that
    // starts: 1,000 tasks submitted at once read the whole queue at every submit and every end
    // (issue 20: `server verify` of 1,000 agents).
    if (this.stopping || this.running.size >= this.concurrency) return;
    const held = new Set([...this.running.values()].flatMap((r) => r.locks));
    const queued = this.db.prepare("SELECT id, locks_json FROM tasks WHERE state = 'queued' ORDER BY id").all() as Pick<TaskRow, 'id' | 'locks_json'>[];
    const full = this.db.prepare('SELECT * FROM tasks WHERE id = ?');
    for (const q of queued) {
      if (this.running.size >= this.concurrency) break;
      const locks = JSON.parse(q.locks_json) as string[];
      const blocked = locks.some((l) => held.has(l));
      // Whether started or not, later tasks on these entities wait behind this one.
      locks.forEach((l) => held.add(l));
      if (!blocked) this.run(full.get(q.id) as TaskRow, locks);
    }
  }

  /** True when another writer (a newer master over the same rows) already ended the task. */
  private finishedElsewhere(id: number): boolean {
    const state = this.get(id).state;
    if (!isFinal(state)) return false;
    this.log.warn({ task: id, state }, 'task already final; result dropped');
    return true;
  }

  /** Runs a task; `resume` (for a task found running at start-up) replaces its handler. */
  private run(row: TaskRow, locks: string[], resume?: TaskHandler): void {
    const controller = new AbortController();
    const handler = resume ?? this.handlers.get(row.kind);
    const resumable = this.resumers.has(row.kind);
    if (!resume) this.transition(row.id, 'running');
    const task = this.get(row.id);
    const ctx: TaskContext = {
      task,
      signal: controller.signal,
      log: (message, level = 'info') => this.appendLine(row.id, level, message),
      stopping: this.stopController.signal,
    };
    const done = (async () => {
      try {
        if (!handler) throw fail('INTERNAL', `no handler for task kind ${row.kind}`);
        task.params = checkTaskParams(row, row.params_json);
        const result = await handler(ctx);
        // A resumable task that finished its work is done, even when the stop came meanwhile.
        if (controller.signal.aborted && !resumable) throw controller.signal.reason;
        if (this.finishedElsewhere(row.id)) return;
        ctx.log('succeeded');
        this.transition(row.id, 'succeeded', { result: result ?? null });
      } catch (e) {
        const err = isSpokeError(e) ? e : controller.signal.aborted && isSpokeError(controller.signal.reason) ? controller.signal.reason : null;
        if (!err) this.log.error({ err: e, task: row.id }, 'task handler crashed');
        const se: SpokeError = err ?? fail('INTERNAL', e instanceof Error ? e.message : String(e));
        if (this.finishedElsewhere(row.id)) return;
        if (this.stopping && resumable && se.code === 'TASK_INTERRUPTED') {
          // Left `running` on purpose: the next start-up rolls it back from its recorded steps.
          ctx.log('the master is stopping; what this task did is rolled back at the next start-up', 'warn');
          return;
        }
        const cancelled = se.code === 'TASK_CANCELLED';
        ctx.log(`${cancelled ? 'cancelled' : 'failed'}: ${se.code}: ${se.message}`, cancelled ? 'warn' : 'error');
        this.transition(row.id, cancelled ? 'cancelled' : 'failed', { errorCode: se.code, errorMessage: se.message });
      } finally {
        this.running.delete(row.id);
        this.schedule();
      }
    })();
    this.running.set(row.id, { controller, locks, done });
  }
}

function toTask(r: TaskRow): TaskInfo {
  return {
    id: r.id,
    kind: r.kind,
    entity: r.entity,
    state: r.state,
    params: jsonObject(r.params_json),
    result: r.result_json ? (JSON.parse(r.result_json) as unknown) : null,
    errorCode: r.error_code,
    errorMessage: r.error_message,
    createdMs: r.created_ms,
    startedMs: r.started_ms,
    finishedMs: r.finished_ms,
  };
}

/** A stored JSON object; {} for a row that holds anything else (the run refuses it: checkTaskParams). */
function jsonObject(text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
