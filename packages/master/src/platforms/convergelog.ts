/**
 * What a platform converge writes to the task log: progress lines (ProgressMeter), the advice for
 * a conflict, what a drift repair kept in quarantine, and what an agent did with a web-server
 * config file.
 */
import { formatBytes as human, type ConflictInfo, type QuarantineInfo } from '@spoke/shared';

/**
 * One server's converge progress as task log lines: at most one a second; bytes, rate and ETA
 * while something is moving, the rate over what moved since the first report that moved any
 * (timed from the task's start, it counted the master's scan and the agent's checks: a 2 s
 * transfer showed "4.4 MiB/s ETA 41s").
 */
export class ProgressMeter {
  private last = Number.NEGATIVE_INFINITY;
  private from: { at: number; done: number } | undefined;
  private phase = '';

  constructor(
    private readonly server: string,
    private readonly everyMs = 1000,
  ) {}

  /** The line for this report at `now` (ms), or undefined when one was logged less than everyMs ago. */
  line(pr: { message: string; done: number; total: number }, now: number): string | undefined {
    const phase = pr.message.split(' ', 1)[0] ?? '';
    if (phase !== this.phase) {
      // each phase counts its own bytes from 0 (reuse, then fetch)
      this.phase = phase;
      this.from = undefined;
    }
    if (pr.done > 0 && this.from === undefined) this.from = { at: now, done: pr.done };
    if (now - this.last < this.everyMs) return undefined;
    this.last = now;
    if (pr.total === 0) return `${this.server}: ${pr.message}`;
    const from = this.from;
    const rate = from !== undefined && now > from.at ? ((pr.done - from.done) * 1000) / (now - from.at) : 0;
    const eta = rate > 0 && pr.total > pr.done ? ` ETA ${Math.ceil((pr.total - pr.done) / rate)}s` : '';
    return `${this.server}: ${pr.message}, ${human(pr.done)}/${human(pr.total)}${rate > 0 ? `, ${human(rate)}/s` : ''}${eta}`;
  }
}

/**
 * What an operator does about a converge conflict (user data where the platform has a file or
 * symlink), as one line: the agent kept the directory and converged everything else.
 */
export function conflictAdvice(platform: string, server: string, c: ConflictInfo): string {
  return (
    `${server}: ${c.path}: the platform has a ${c.wanted} here, but ${server} holds user data in ${c.userData}; ` +
    `kept as it is, everything else converged. To fix: move the user data out of ${c.path} on ${server} ` +
    `(or make ${c.path} a directory again on the master), then run: spoke platform verify ${platform}`
  );
}

/** The task-log line for what a drift repair kept in a server's quarantine. */
export function quarantineLine(server: string, q: QuarantineInfo): string {
  const lost = q.skipped > 0 ? `; ${q.skipped} more could not be kept (over the quarantine's size bound)` : '';
  const sample = q.paths.slice(0, 5).join(' ');
  return `${server}: the repair removed or overwrote ${q.files} hand-made file(s) (${human(q.bytes)}): ${sample}${q.files > 5 ? ' …' : ''}; kept in quarantine ${q.dir} on ${server}${lost}`;
}

/** What an agent did with a web-server config file (a platform's or a site's), for the task log. */
export function configOutcome(r: { changed: boolean; reloaded: boolean; reloadWait?: string }): string {
  const waited = r.reloaded && r.reloadWait ? `; ${r.reloadWait}` : '';
  if (r.changed) return r.reloaded ? `written, tested and reloaded${waited}` : 'written and tested, not reloaded';
  return r.reloaded ? `unchanged; reloaded${waited}` : 'unchanged';
}
