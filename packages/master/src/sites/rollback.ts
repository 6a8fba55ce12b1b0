/**
 * `spoke task rollback ID`: finishes the rollback of a site task whose undo failed (an agent
 * offline past its wait, a web server config that would not load). The failed task's row keeps
 * each failed undo with its data (steps.ts); this queues a `task.rollback` task that holds the
 * same locks as the failed one and runs those undos again, in reverse, logging into its own log.
 * It ends `succeeded` when every one of them is done, or fails saying what is still left and the
 * same command to run again. An incomplete rollback's message names this command.
 */
import { fail } from '@spoke/shared';
import type { Db } from '../namespace/store.js';
import type { SubmitInput, TaskContext, TaskEngine } from '../tasks/engine.js';
import type { TaskInfo } from '../types.js';
import { failedUndos, finishRollback, type Step, type StepLog } from '../tasks/steps.js';

/** The task kind that finishes a rollback. */
export const ROLLBACK_TASK = 'task.rollback';

/** What a finished `task.rollback` returns. */
export interface RollbackResult {
  /** The task whose rollback was finished. */
  task: number;
  /** The steps undone now, in the order they were undone. */
  undone: string[];
}

/** Plans and runs `task.rollback` tasks for the site tasks. */
export class SiteRollback {
  constructor(
    private readonly deps: {
      tasks: TaskEngine;
      db: Db;
      log: StepLog;
      /** The task kinds whose rollbacks this finishes (the site tasks). */
      kinds: readonly string[];
      /** The steps of a task of one of `kinds`, from its kind and params (as after a restart). */
      stepsOf: (ctx: TaskContext) => Step[];
    },
  ) {
    deps.tasks.register(ROLLBACK_TASK, (ctx) => this.run(ctx));
  }

  /**
   * What to queue to finish task `id`'s rollback.
   * @throws SpokeError TASK_NOT_FOUND; TASK_FINISHED (not a site task that failed with undos left)
   */
  plan(id: number): SubmitInput {
    const t = this.deps.tasks.get(id);
    if (!this.deps.kinds.includes(t.kind)) throw fail('TASK_FINISHED', `task ${id} is a ${t.kind}: only site tasks have steps to roll back`);
    if (t.state !== 'failed' && t.state !== 'cancelled')
      throw fail('TASK_FINISHED', `task ${id} is ${t.state}: only a failed or cancelled task has a rollback to finish`);
    const left = failedUndos(this.deps.log, id);
    if (left.length === 0) throw fail('TASK_FINISHED', `task ${id} has no failed undo left to run (its rollback is complete)`);
    const row = this.deps.db.prepare('SELECT locks_json FROM tasks WHERE id = ?').get(id) as { locks_json: string | null } | undefined;
    const locks = row?.locks_json ? (JSON.parse(row.locks_json) as string[]) : [];
    return { kind: ROLLBACK_TASK, entity: t.entity, locks, params: { task: id } };
  }

  /** Queues the task that finishes task `id`'s rollback (see plan). */
  submit(id: number): TaskInfo {
    return this.deps.tasks.submit(this.plan(id));
  }

  private async run(ctx: TaskContext): Promise<RollbackResult> {
    const id = Number(ctx.task.params.task);
    const orig = this.deps.tasks.get(id);
    // The steps are built as for the failed task (its id names its scratch dirs); the undos log here.
    const steps = this.deps.stepsOf({ ...ctx, task: { ...orig } });
    const undone = await finishRollback(ctx, steps, this.deps.log, id);
    ctx.log(`the rollback of task ${id} (${orig.kind} on ${orig.entity}) is complete: undid ${undone.join(', ')}`);
    return { task: id, undone };
  }
}
