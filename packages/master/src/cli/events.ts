/**
 * `spoke events [-f]`: every task state change and agent connect/disconnect, as they happen.
 */
import type { wire } from '@spoke/shared/client';
import { fromServiceError } from '@spoke/shared/client';
import { UsageError, type Command } from './command.js';

/** One event as an operator reads it: time, entity, what happened. */
export function eventLine(e: wire.SpokeEvent): string {
  const at = new Date(Number(e.tsMs)).toISOString().replace('T', ' ').slice(0, 19);
  const what = e.kind === 'task' ? `${e.taskKind} #${e.taskId} ${e.state}` : `agent ${e.state}`;
  return `${at}  ${e.entity.padEnd(28)} ${what}${e.message ? `: ${e.message}` : ''}\n`;
}

export const eventCommands: Record<string, Command> = {
  events: {
    usage: 'events [-f] [--limit N]',
    summary: 'task state changes and agents connecting or leaving; -f follows them as they happen',
    options: { follow: { type: 'boolean', short: 'f' }, limit: { type: 'string' } },
    args: [0, 0],
    async run(ctx, _p, o) {
      const limit = typeof o.limit === 'string' ? Number(o.limit) : 20;
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a whole number of events, at least 1');
      const stream = ctx.api().events({ follow: o.follow === true, backlog: limit });
      return new Promise<number>((resolve, reject) => {
        stream.on('data', (e: wire.SpokeEvent) => {
          ctx.io.out(
            ctx.json
              ? `${JSON.stringify({ tsMs: Number(e.tsMs), kind: e.kind, entity: e.entity, state: e.state, taskId: Number(e.taskId) || null, taskKind: e.taskKind || null, message: e.message || null })}\n`
              : eventLine(e),
          );
        });
        stream.on('end', () => resolve(0));
        stream.on('error', (err) => reject(fromServiceError(err)));
      });
    },
  },
};
