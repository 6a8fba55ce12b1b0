/**
 * What every command file of the CLI shares: the shape of a command and the context it runs in,
 * the printing helpers, and the two ways a task is shown — `follow` (its log lines as they come)
 * and `taskCommand` (start a task on the master, follow it to its end, print the outcome).
 */
import { fromServiceError, wire } from '@spoke/shared/client';
import type { ConnectOptions, OperatorApi } from './client.js';
import { taskJson, taskStateName } from './format.js';

/** Where the CLI writes. */
export interface CliIO {
  out(s: string): void;
  err(s: string): void;
  /** Asks a yes/no question on the operator's terminal; absent when stdin is not a terminal. */
  confirm?(question: string): Promise<boolean>;
}

/** Context every command gets. */
export interface Ctx {
  io: CliIO;
  json: boolean;
  api(): OperatorApi;
  conn: ConnectOptions;
}

/** A command's options, as `node:util` parseArgs takes them. */
export type OptSpec = Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>;

/** One CLI command (`server ls`, `site install`, …). */
export interface Command {
  /** e.g. "server token NAME [--cluster C] [--ttl 1h] [--replace]" */
  usage: string;
  summary: string;
  options?: OptSpec;
  /** Number of positionals required (and max allowed). */
  args: [number, number];
  run(ctx: Ctx, pos: [string, string], opts: Record<string, unknown>): Promise<number>;
  /** Loads the full command when it runs (its code is large and rarely needed, e.g. `spoke up`). */
  load?(): Promise<Command>;
}

/** Thrown for usage errors (exit 2). */
export class UsageError extends Error {}

/** Prints `json` with `-o json`, else what `human` returns. */
export function print(ctx: Ctx, json: unknown, human: () => string): void {
  ctx.io.out(ctx.json ? `${JSON.stringify(json, null, 2)}\n` : human());
}

/** `key: value` lines, aligned; empty values print as `-`. */
export function kv(pairs: [string, string | number | boolean | null | undefined][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return `${pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 1)} ${v === null || v === undefined || v === '' ? '-' : String(v)}`).join('\n')}\n`;
}

/** A task id argument; throws UsageError unless it is a positive whole number. */
export function idArg(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`task id must be a positive number, got ${JSON.stringify(s)}`);
  return n;
}

/** The UTC time of day of `ms`, as task log lines show it. */
export function time(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

/** Seconds with one decimal (`1.5s`). */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** The `resultJson` of a finished task, parsed; `{}` when it has none. */
export function taskResult<T extends object>(final: wire.Task): Partial<T> {
  return final.resultJson ? (JSON.parse(final.resultJson) as Partial<T>) : {};
}

/**
 * Follows a task: prints its log lines as they come and returns its final state. Reconnects
 * (from the last line printed) while the master restarts.
 */
export async function follow(ctx: Ctx, id: number, opts: { quiet?: boolean } = {}): Promise<wire.Task> {
  const api = ctx.api();
  let last: wire.Task | undefined;
  let seq = 0;
  // The stream ends when the task reaches a final state; reconnect if the master restarts.
  for (let attempt = 0; ; attempt++) {
    try {
      await new Promise<void>((resolve, reject) => {
        const s = api.watch(id, seq);
        s.on('data', (ev: wire.TaskEvent) => {
          const e = ev.event;
          if (e?.$case === 'line') {
            seq = e.value.seq;
            if (!opts.quiet) {
              const lvl = e.value.level === 'info' ? '' : `${e.value.level.toUpperCase()} `;
              const line = `${time(e.value.tsMs)} ${lvl}${e.value.message}\n`;
              if (ctx.json) ctx.io.err(line);
              else ctx.io.out(line);
            }
          } else if (e?.$case === 'task') last = e.value;
        });
        s.on('error', reject);
        s.on('end', () => resolve());
      });
      if (last && [wire.TaskState.TASK_STATE_SUCCEEDED, wire.TaskState.TASK_STATE_FAILED, wire.TaskState.TASK_STATE_CANCELLED].includes(last.state)) {
        return last;
      }
    } catch (e) {
      const se = e as { code?: number };
      if (se.code !== 14 || attempt > 30) throw fromServiceError(e); // 14 = UNAVAILABLE: master restarting
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/**
 * Follows a task to its end and prints it; returns the exit code (0 when it succeeded). With
 * `noWait` it prints only the task id. `onSuccess` prints what the result says (table output);
 * `extraJson` adds fields to the `-o json` output of a succeeded task (what only this CLI run was
 * told, e.g. an install's admin password).
 */
export async function waitAndReport(
  ctx: Ctx,
  task: wire.Task,
  noWait: boolean,
  onSuccess?: (final: wire.Task) => void,
  extraJson?: (final: wire.Task) => Record<string, unknown>,
): Promise<number> {
  if (noWait) {
    print(ctx, taskJson(task), () => `${task.id}\n`);
    return 0;
  }
  if (!ctx.json) ctx.io.out(`task ${task.id}: ${task.kind} on ${task.entity}\n`);
  const final = await follow(ctx, task.id);
  const ok = final.state === wire.TaskState.TASK_STATE_SUCCEEDED;
  const dur = final.startedMs && final.finishedMs ? ` in ${((final.finishedMs - final.startedMs) / 1000).toFixed(1)}s` : '';
  print(ctx, { ...taskJson(final), ...(ok && extraJson ? extraJson(final) : {}) }, () => `task ${final.id} ${taskStateName(final.state)}${dur}\n`);
  if (!ok && !ctx.json) ctx.io.err(`error: ${final.errorCode || 'TASK_FAILED'}: ${final.errorMessage || 'task failed'}\n`);
  if (ok && !ctx.json) onSuccess?.(final);
  return ok ? 0 : 1;
}

/** A command that starts one task: see `taskCommand`. */
export interface TaskCommandSpec {
  usage: string;
  summary: string;
  /** The command's own options; `--no-wait` is added. */
  options?: OptSpec;
  args: [number, number];
  /** Checks the arguments (UsageError) and asks the master for the task. */
  start(ctx: Ctx, pos: [string, string], opts: Record<string, unknown>): Promise<wire.Task>;
  /** Prints what the succeeded task's result says (table output only). */
  done?(ctx: Ctx, final: wire.Task, pos: [string, string]): void;
}

/**
 * The shape most mutating commands share: start a task, then follow it to its end and print its
 * outcome (exit 1 when it failed) — or, with `--no-wait`, print its id and return at once.
 */
export function taskCommand(spec: TaskCommandSpec): Command {
  const { start, done } = spec;
  return {
    usage: spec.usage,
    summary: spec.summary,
    options: { ...spec.options, 'no-wait': { type: 'boolean' } },
    args: spec.args,
    async run(ctx, pos, o) {
      const task = await start(ctx, pos, o);
      return waitAndReport(ctx, task, o['no-wait'] === true, done && ((final) => done(ctx, final, pos)));
    },
  };
}
