/**
 * The health part of `spoke status`: one line that says "ok" or how many problems, then one line
 * per agent offline, task failing, task stuck and site whose cron fails, each with what to run.
 */
import { ago } from './format.js';

/** The health fields of the Status reply (as the CLI gets them). */
export interface StatusHealth {
  agentsOffline: string[];
  tasksFailing: StatusHealthTask[];
  tasksStuck: StatusHealthTask[];
  cronFailing: { domain: string; failures: number; errorCode: string; message: string }[];
}

interface StatusHealthTask {
  id: number;
  kind: string;
  entity: string;
  state: string;
  errorCode: string;
  errorMessage: string;
  sinceMs: number;
}

/** The health lines of `spoke status` (each ends with a newline). */
export function healthLines(h: StatusHealth, now = Date.now()): string {
  const problems = h.agentsOffline.length + h.tasksFailing.length + h.tasksStuck.length + h.cronFailing.length;
  const out = [`health: ${problems === 0 ? 'ok' : `${problems} problem(s)`}`];
  if (h.agentsOffline.length) out.push(`  agents offline: ${h.agentsOffline.join(', ')} (see: spoke server show NAME)`);
  for (const t of h.tasksFailing) {
    out.push(`  task failing: #${t.id} ${t.kind} ${t.entity} failed ${ago(t.sinceMs, now)}: ${t.errorCode}: ${t.errorMessage} (see: spoke task log ${t.id})`);
  }
  for (const t of h.tasksStuck) {
    const what = t.state === 'running' ? `running since ${ago(t.sinceMs, now)}` : `queued since ${ago(t.sinceMs, now)}`;
    out.push(`  task stuck: #${t.id} ${t.kind} ${t.entity} ${what} (see: spoke task log ${t.id})`);
  }
  for (const c of h.cronFailing) {
    out.push(`  cron failing: ${c.domain}, ${c.failures} run(s) in a row: ${c.errorCode}: ${c.message} (see: spoke site cron ${c.domain} --history)`);
  }
  return `${out.join('\n')}\n`;
}
