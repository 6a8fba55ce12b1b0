/**
 * `spoke task …`: list, show, read or follow the log of, and cancel tasks.
 */
import { wire } from '@spoke/shared/client';
import { follow, idArg, kv, print, taskCommand, time, UsageError, type Command } from './command.js';
import { table, taskJson, taskStateFromName, taskStateName } from './format.js';

/** `spoke task …`. */
export const taskCommands: Record<string, Command> = {
  'task ls': {
    usage: 'task ls [--state S] [--entity E] [--limit N]',
    summary: 'list tasks, newest first',
    options: { state: { type: 'string' }, entity: { type: 'string' }, limit: { type: 'string' } },
    args: [0, 0],
    async run(ctx, _p, o) {
      let state = wire.TaskState.TASK_STATE_UNSPECIFIED;
      if (typeof o.state === 'string') {
        const s = taskStateFromName(o.state);
        if (s === undefined) throw new UsageError(`--state must be queued, running, succeeded, failed or cancelled`);
        state = s;
      }
      const limit = typeof o.limit === 'string' ? Number(o.limit) : 0;
      if (!Number.isInteger(limit) || limit < 0) throw new UsageError('--limit must be a whole number');
      const r = await ctx.api().call('listTasks', { state, entity: (o.entity as string | undefined) ?? '', limit });
      print(ctx, r.tasks.map(taskJson), () =>
        r.tasks.length
          ? table(
              ['ID', 'KIND', 'ENTITY', 'STATE', 'CREATED', 'ERROR'],
              r.tasks.map((t) => [
                t.id,
                t.kind,
                t.entity,
                taskStateName(t.state),
                new Date(t.createdMs).toISOString().replace('T', ' ').slice(0, 19),
                t.errorCode || '-',
              ]),
            )
          : 'no tasks\n',
      );
      return 0;
    },
  },
  'task show': {
    usage: 'task show ID',
    summary: 'show one task',
    args: [1, 1],
    async run(ctx, [id]) {
      const t = await ctx.api().call('getTask', { id: idArg(id as string) });
      const j = taskJson(t);
      print(ctx, j, () =>
        kv([
          ['id', t.id],
          ['kind', t.kind],
          ['entity', t.entity],
          ['state', j.state],
          ['created', j.created],
          ['started', j.started],
          ['finished', j.finished],
          ['error', t.errorCode ? `${t.errorCode}: ${t.errorMessage}` : ''],
        ]),
      );
      return 0;
    },
  },
  'task log': {
    usage: 'task log ID [-f]',
    summary: 'print a task log (-f follows it until the task ends)',
    options: { follow: { type: 'boolean', short: 'f' } },
    args: [1, 1],
    async run(ctx, [id], o) {
      const n = idArg(id as string);
      if (o.follow === true) {
        const t = await follow({ ...ctx, json: false }, n);
        return t.state === wire.TaskState.TASK_STATE_SUCCEEDED ? 0 : 1;
      }
      const r = await ctx.api().call('getTaskLog', { id: n });
      print(
        ctx,
        r.lines.map((l) => ({ seq: l.seq, ts: new Date(l.tsMs).toISOString(), level: l.level, message: l.message })),
        () => r.lines.map((l) => `${time(l.tsMs)} ${l.level === 'info' ? '' : `${l.level.toUpperCase()} `}${l.message}\n`).join(''),
      );
      return 0;
    },
  },
  'task rollback': taskCommand({
    usage: 'task rollback ID [--no-wait]',
    summary: 'finish the rollback of a failed site task whose undos did not all run ("rollback incomplete"): runs the failed undos again',
    args: [1, 1],
    start: (ctx, [id]) => ctx.api().call('rollbackTask', { id: idArg(id) }),
  }),
  'task cancel': {
    usage: 'task cancel ID',
    summary: 'cancel a queued task, or ask a running one to stop',
    args: [1, 1],
    async run(ctx, [id]) {
      const t = await ctx.api().call('cancelTask', { id: idArg(id as string) });
      print(ctx, taskJson(t), () => `task ${t.id}: ${taskStateName(t.state) === 'cancelled' ? 'cancelled' : 'cancel requested'}\n`);
      return 0;
    },
  },
};
