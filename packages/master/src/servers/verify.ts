/**
 * `server.verify`: asks the agent (every member, for a cluster, in parallel) to report its
 * services, that its roots are writable, and free disk. Fails naming each member that failed.
 */
import { formatBytes as human, fail, isSpokeError } from '@spoke/shared';
import type { AgentHub } from './hub.js';
import type { VerifyReport } from '@spoke/shared';
import type { Namespace } from '../namespace/namespace.js';
import type { TaskHandler } from '../tasks/engine.js';

/** The handler for `server.verify` tasks. */
export function verifyServerTask(deps: { ns: Namespace; hub: AgentHub; minFreeBytes: number }): TaskHandler {
  return async ({ task, signal, log }) => {
    const name = String(task.params.server);
    const targets = deps.ns.targets(name);
    const server = deps.ns.getServer(name);
    if (targets.length === 0) throw fail('CLUSTER_NEEDS_MEMBER', `cluster ${name} has no members`);
    if (server.kind === 'cluster') log(`verifying cluster ${name}: ${targets.join(', ')}`);
    const results = await Promise.all(
      targets.map(async (member) => {
        try {
          const r = await deps.hub.call(member, { type: 'verifyServer', minFreeBytes: deps.minFreeBytes }, { signal, log, timeoutMs: 60_000 });
          const problems = reportProblems(r, deps.minFreeBytes);
          const svc = r.services.map((s) => `${s.impl}${s.version ? ` ${s.version}` : ''}`).join(', ') || 'none detected';
          log(`${member}: services: ${svc}`);
          for (const root of r.roots) {
            log(
              `${member}: root ${root.path}: ${root.writable ? 'writable' : `NOT writable (${root.error})`}, ${human(root.freeBytes)} free of ${human(root.totalBytes)}`,
              root.writable ? 'info' : 'error',
            );
          }
          if (problems.length) log(`${member}: ${problems.join('; ')}`, 'error');
          return { member, ok: problems.length === 0, report: r, problems };
        } catch (e) {
          if (signal.aborted) throw e;
          const msg = isSpokeError(e) ? `${e.code}: ${e.message}` : String(e);
          log(`${member}: ${msg}`, 'error');
          return { member, ok: false, report: null as VerifyReport | null, problems: [msg] };
        }
      }),
    );
    const failed = results.filter((r) => !r.ok);
    if (failed.length > 0) {
      throw fail('VERIFY_FAILED', `verify of ${name} failed on ${failed.map((f) => `${f.member} (${f.problems.join('; ')})`).join(', ')}`, {
        failed: failed.map((f) => f.member),
      });
    }
    return { server: name, members: results.map((r) => ({ name: r.member, ...r.report })) };
  };
}

/** What is wrong in one agent's report (empty when all is well). */
export function reportProblems(r: VerifyReport, minFreeBytes: number): string[] {
  const out: string[] = [];
  for (const root of r.roots) {
    if (!root.writable) out.push(`root ${root.path} is not writable`);
    else if (root.freeBytes < minFreeBytes) out.push(`root ${root.path} has only ${human(root.freeBytes)} free (need ${human(minFreeBytes)})`);
  }
  if (r.roots.length === 0) out.push('the agent has no roots configured');
  return out;
}
