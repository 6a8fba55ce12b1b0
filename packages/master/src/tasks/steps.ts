/**
 * The step/undo engine of the site tasks. A task is an ordered list of steps; each step's `do`
 * returns what its `undo` needs (plain JSON). After each step the finished steps (name + undo
 * data) are written to the task row (`tasks.steps_json`), so a master that stopped mid-task can
 * undo them at its next start-up from the row alone. A failure runs the undos of the finished
 * steps in reverse, each logged; an undo that fails is logged loudly and the others still run.
 * A step marked `commit` is a point of no return (a database dropped): once it is done, the steps
 * before it are not undone any more.
 */
import { fail, isErrorCode, isSpokeError, type SpokeError } from '@spoke/shared';
import type { Db } from '../namespace/store.js';
import type { TaskContext } from './engine.js';

/** One step of a task. */
export interface Step {
  /** Stable name: it is stored and finds the undo again after a restart. */
  name: string;
  /** Does the work; returns what `undo` needs (JSON), or undefined. */
  do(ctx: TaskContext): Promise<unknown>;
  /**
   * Undoes the step from its data alone (after a restart nothing else is left). Its context's
   * signal is aborted only by a master shutdown, never by a cancel. Absent: nothing to undo.
   */
  undo?(ctx: TaskContext, data: unknown): Promise<void>;
  /** Point of no return: once done, the steps before it (and it) are never undone. */
  commit?: boolean;
  /**
   * With `commit`: what the operator should do when a later step fails (the default, "run the
   * task again", suits a delete; a migrate has already moved the site).
   */
  recovery?: string;
}

/** A finished step as stored in the task row. */
export interface DoneStep {
  name: string;
  undo: unknown;
  /** Set when its undo failed (kept in the row for the record). */
  undoFailed?: string;
}

/** What the task row holds (tasks.steps_json). */
interface StepRecord {
  done: DoneStep[];
  /** The step running when the record was written (its effects are unknown after a crash). */
  inflight: string | null;
  /** The last commit step done (nothing before it is undone). */
  committed: string | null;
}

/** Reads and writes the finished steps of a task. */
export class StepLog {
  constructor(private readonly db: Db) {}

  /** The record of a task (empty when it has none). */
  load(taskId: number): StepRecord {
    const r = this.db.prepare('SELECT steps_json FROM tasks WHERE id = ?').get(taskId) as { steps_json: string | null } | undefined;
    if (!r?.steps_json) return { done: [], inflight: null, committed: null };
    return JSON.parse(r.steps_json) as StepRecord;
  }

  save(taskId: number, rec: StepRecord): void {
    this.db.prepare('UPDATE tasks SET steps_json = ? WHERE id = ?').run(JSON.stringify(rec), taskId);
  }
}

function describe(e: unknown): string {
  return isSpokeError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}

function asSpokeError(e: unknown): SpokeError {
  return isSpokeError(e) ? e : fail('INTERNAL', e instanceof Error ? e.message : String(e));
}

/** True when the master is stopping (a rollback then continues at the next start-up). */
function shuttingDown(ctx: TaskContext, e?: unknown): boolean {
  return ctx.stopping.aborted || (isSpokeError(e, 'TASK_INTERRUPTED') && ctx.signal.aborted);
}

/**
 * Runs the steps in order, recording each finished one. On failure, undoes the finished steps
 * (in reverse) and throws the original code with "; rolled back" or "; rollback incomplete: …"
 * added to the message. A shutdown stops the task where it is and leaves the record for
 * `resumeRollback` at the next start-up.
 * @throws SpokeError the failing step's error (message extended as above)
 */
export async function runSteps(ctx: TaskContext, steps: Step[], log: StepLog): Promise<void> {
  const names = new Set<string>();
  for (const s of steps) {
    if (names.has(s.name)) throw fail('INTERNAL', `step ${s.name} appears twice`);
    names.add(s.name);
  }
  const rec: StepRecord = { done: [], inflight: null, committed: null };
  log.save(ctx.task.id, rec);
  for (const step of steps) {
    rec.inflight = step.name;
    log.save(ctx.task.id, rec);
    let data: unknown;
    try {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      data = await step.do(ctx);
    } catch (e) {
      const err = asSpokeError(e);
      // Stopped mid-step: the record (with the step in flight) stays for the next start-up.
      if (shuttingDown(ctx, e)) throw err;
      rec.inflight = null;
      log.save(ctx.task.id, rec);
      ctx.log(`step ${step.name} failed: ${describe(err)}`, 'error');
      throw await undoAll(ctx, steps, rec, log, err, ctx.task.id);
    }
    if (step.commit) {
      rec.done = [];
      rec.committed = step.name;
    } else {
      rec.done.push({ name: step.name, undo: data === undefined ? null : (JSON.parse(JSON.stringify(data)) as unknown) });
    }
    rec.inflight = null;
    log.save(ctx.task.id, rec);
  }
}

/**
 * For a task found `running` at start-up: undoes the steps its row records and returns the error
 * the task ends with (TASK_INTERRUPTED, "rolled back" or "rollback incomplete: …").
 * @returns the SpokeError to throw
 */
export async function resumeRollback(ctx: TaskContext, steps: Step[], log: StepLog): Promise<SpokeError> {
  const rec = log.load(ctx.task.id);
  const cause = fail('TASK_INTERRUPTED', 'the master stopped while this task was running');
  if (rec.inflight) {
    ctx.log(
      `step ${rec.inflight} was running when the master stopped; whatever it did before the stop is not known and is not undone (check it by hand)`,
      'warn',
    );
    rec.inflight = null;
    log.save(ctx.task.id, rec);
  }
  return undoAll(ctx, steps, rec, log, cause, ctx.task.id);
}

/** The command that finishes the incomplete rollback of task `taskId` (see finishRollback). */
export function finishRollbackCommand(taskId: number): string {
  return `spoke task rollback ${taskId}`;
}

/** The undos of task `taskId` that failed (its steps record), oldest step first. */
export function failedUndos(log: StepLog, taskId: number): string[] {
  return log
    .load(taskId)
    .done.filter((d) => d.undoFailed)
    .map((d) => d.name);
}

/**
 * Runs again the undos of task `taskId` that failed (its record keeps their data), in reverse,
 * logging into `ctx` (the task that finishes the rollback). Returns the steps undone.
 * @throws SpokeError TASK_FINISHED (nothing left to undo); the code of an undo that fails again,
 *   its message saying the rollback is still incomplete and the command to run again
 */
export async function finishRollback(ctx: TaskContext, steps: Step[], log: StepLog, taskId: number): Promise<string[]> {
  const rec = log.load(taskId);
  const failed = rec.done.filter((d) => d.undoFailed);
  if (failed.length === 0) throw fail('TASK_FINISHED', `task ${taskId} has no failed undo left to run`);
  for (const d of failed) {
    ctx.log(`task ${taskId}: the undo of ${d.name} failed before (${d.undoFailed}); running it again`);
    delete d.undoFailed;
  }
  log.save(taskId, rec);
  const names = failed.map((d) => d.name).reverse();
  const err = await undoAll(ctx, steps, rec, log, fail('TASK_FINISHED', `task ${taskId}`), taskId);
  const still = rec.done.filter((d) => d.undoFailed);
  if (still.length) {
    const last = still[0]?.undoFailed ?? '';
    const code = /^([A-Z][A-Z0-9_]+): /.exec(last)?.[1];
    throw fail(code && isErrorCode(code) ? code : 'INTERNAL', err.message.replace(/^task \d+; /, `task ${taskId}: `));
  }
  return names;
}

/** Undoes the recorded steps in reverse; returns `cause` with the outcome added to its message. */
async function undoAll(ctx: TaskContext, steps: Step[], rec: StepRecord, log: StepLog, cause: SpokeError, taskId: number): Promise<SpokeError> {
  const pending = rec.done.filter((d) => !d.undoFailed);
  if (pending.length === 0) {
    const recovery = steps.find((s) => s.name === rec.committed)?.recovery ?? 'run the task again';
    const why = rec.committed ? `not rolled back: past the point of no return (${rec.committed}); ${recovery}` : 'nothing to roll back';
    ctx.log(why, rec.committed ? 'error' : 'info');
    return fail(cause.code, `${cause.message}; ${why}`, cause.details);
  }
  ctx.log(
    `rolling back ${pending.length} step(s): ${pending
      .map((d) => d.name)
      .reverse()
      .join(', ')}`,
    'warn',
  );
  // Undos run after a cancel too: only a shutdown stops them (the next start-up continues).
  const undoCtx: TaskContext = { ...ctx, signal: ctx.stopping };
  const failures: string[] = [];
  for (let i = rec.done.length - 1; i >= 0; i--) {
    const d = rec.done[i] as DoneStep;
    if (d.undoFailed) continue;
    const step = steps.find((s) => s.name === d.name);
    if (ctx.stopping.aborted) {
      ctx.log('the master is stopping; the rest of the rollback runs at the next start-up', 'warn');
      throw fail('TASK_INTERRUPTED', 'the master is shutting down');
    }
    try {
      if (!step) throw fail('INTERNAL', `no step named ${d.name} in this task any more`);
      if (step.undo) {
        await step.undo(undoCtx, d.undo);
        ctx.log(`undid ${d.name}`);
      } else {
        ctx.log(`${d.name}: nothing to undo`);
      }
      rec.done.splice(i, 1);
    } catch (e) {
      if (shuttingDown(undoCtx, e)) {
        ctx.log(`undo of ${d.name} interrupted by the shutdown; the rollback continues at the next start-up`, 'warn');
        throw asSpokeError(e);
      }
      const msg = describe(e);
      d.undoFailed = msg;
      failures.push(`undo of ${d.name} failed (${msg})`);
      ctx.log(`UNDO FAILED: ${d.name}: ${msg}; the rollback goes on (${finishRollbackCommand(taskId)} runs this undo again)`, 'error');
    }
    log.save(taskId, rec);
  }
  const outcome = failures.length
    ? `rollback incomplete: ${failures.join('; ')}; finish it with: ${finishRollbackCommand(taskId)}`
    : rec.committed
      ? `rolled back the steps after ${rec.committed} (the point of no return)`
      : 'rolled back';
  ctx.log(outcome, failures.length ? 'error' : 'warn');
  return fail(cause.code, `${cause.message}; ${outcome}`, cause.details);
}
