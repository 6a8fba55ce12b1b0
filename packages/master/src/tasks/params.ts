/**
 * The params of each task kind, by schema. A task row's params are written at submit and read
 * when the task runs, possibly by a later master (after a restart or an upgrade), so the task
 * engine checks them against their kind's schema before the handler sees them: a row that does
 * not fit fails its task with TASK_PARAMS_INVALID and one line naming the field, instead of
 * crashing a handler half-way. Handlers read typed params with `paramsOf`.
 */
import { z } from 'zod';
import { fail, parseWith } from '@spoke/shared';
import type { TaskInfo } from '../types.js';

const name = z.string().min(1);
/** Every site task names its site and its platform. */
const site = { domain: name, platform: name };
const flag = z.boolean().optional();

/**
 * The schema of each task kind's params. Keys a schema does not name are kept (a row from an
 * older or newer master may carry them).
 */
export const TASK_PARAMS = {
  'server.verify': z.looseObject({ server: name }),
  /** Finishes what a server's removal from a cluster left on it (servers/membership.ts). */
  'server.forget': z.looseObject({ server: name }),
  'platform.verify': z.looseObject({ platform: name, why: z.string().optional() }),
  'platform.converge': z.looseObject({ platform: name, server: name.optional(), why: z.string().optional() }),
  'platform.remove': z.looseObject({
    platform: name,
    force: flag,
    deleteFiles: flag,
    offlineOk: flag,
    /** Site delete tasks queued by a forced removal, reported in its log. */
    siteTasks: z.array(z.number().int()).optional(),
  }),
  'site.install': z.looseObject({
    ...site,
    dbServer: name,
    aliases: z.array(z.string()).optional(),
    kind: z.string(),
    title: z.string(),
    adminUser: z.string(),
    adminEmail: z.string(),
    redirectAliases: flag,
    profile: z.string().nullish(),
    locale: z.string().nullish(),
    cronIntervalS: z.number().int().min(0).optional(),
    /** --https: HTTPS steps after the install (absent in rows from before HTTPS). */
    https: flag,
  }),
  'site.verify': z.looseObject(site),
  'site.enable': z.looseObject(site),
  'site.disable': z.looseObject(site),
  'site.alias.add': z.looseObject({ ...site, alias: name }),
  'site.alias.rm': z.looseObject({ ...site, alias: name }),
  'site.alias.redirect': z.looseObject({ ...site, on: z.boolean() }),
  'site.import': z.looseObject({ ...site, dbServer: name, dbServerWhy: z.string().optional(), kind: z.string(), rewriteSettings: flag }),
  'site.delete': z.looseObject({ ...site, noBackup: flag }),
  'site.backup': z.looseObject(site),
  'site.restore': z.looseObject({ ...site, backupId: name }),
  'site.clone': z.looseObject({ ...site, newDomain: name, target: name, dbServer: name, https: flag }),
  // redirectOldForS: seconds the old name answers a 301 after a rename (absent: the default, 0: none)
  'site.migrate': z.looseObject({ ...site, newDomain: name, target: name, dbServer: name, https: flag, redirectOldForS: z.number().int().min(0).optional() }),
  // HTTPS (sites/https): on with a source (an operator pair is stored before the task: certId), or off
  'site.https': z.looseObject({
    ...site,
    on: z.boolean(),
    source: z.enum(['acme', 'self-signed', 'operator']).optional(),
    redirect: flag,
    hsts: flag,
    certId: z.string().optional(),
  }),
  'site.https.renew': z.looseObject(site),
  /** `spoke task rollback ID`: the failed site task whose undos run again. */
  'task.rollback': z.looseObject({ task: z.number().int().positive() }),
};

/** A task kind the master runs. */
export type TaskKind = keyof typeof TASK_PARAMS;

/** The checked params of a task kind. */
export type TaskParams<K extends TaskKind> = z.output<(typeof TASK_PARAMS)[K]>;

function isTaskKind(kind: string): kind is TaskKind {
  return Object.prototype.hasOwnProperty.call(TASK_PARAMS, kind);
}

/**
 * Reads a task row's params: JSON, checked by its kind's schema (a kind without one, e.g. in
 * tests, only needs a JSON object).
 * @throws SpokeError TASK_PARAMS_INVALID, e.g. `task 12 (site.install): params: adminUser must be a string`
 */
export function checkTaskParams(task: { id: number; kind: string }, paramsJson: string): Record<string, unknown> {
  const where = `task ${task.id} (${task.kind}): params`;
  let raw: unknown;
  try {
    raw = JSON.parse(paramsJson);
  } catch {
    throw fail('TASK_PARAMS_INVALID', `${where} are not JSON (${JSON.stringify(paramsJson.slice(0, 60))}); the task was not run`);
  }
  const schema = isTaskKind(task.kind) ? TASK_PARAMS[task.kind] : z.record(z.string(), z.unknown());
  return parseWith(schema, raw, where, 'TASK_PARAMS_INVALID') as Record<string, unknown>;
}

/**
 * A running task's params with their kind's type. The engine checked them before the handler ran.
 * @throws SpokeError INTERNAL when the task is of another kind
 */
export function paramsOf<K extends TaskKind>(task: Pick<TaskInfo, 'kind' | 'params'>, ...kinds: K[]): TaskParams<K> {
  if (!kinds.includes(task.kind as K)) throw fail('INTERNAL', `a ${task.kind} task read as ${kinds.join(' or ')}`);
  return task.params as TaskParams<K>;
}
