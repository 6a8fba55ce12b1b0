/**
 * `spoke site cron`: run a site's cron now, change its interval, list its runs; and the cron
 * column and lines `site ls` and `site show` print.
 */
import { type wire } from '@spoke/shared/client';
import { formatCronInterval } from '../sites/cron.js';
import { kv, print, seconds, type Command } from './command.js';
import { cronRunJson, siteJson, table } from './format.js';

/** `spoke site cron`. */
export const siteCronCommands: Record<string, Command> = {
  'site cron': {
    usage: 'site cron DOMAIN [--interval 15m|1h|1d|off] [--history]',
    summary:
      "run the site's cron now on one of its web servers and wait for it (Drupal 7/8+ with the site's cron key, WordPress wp-cron.php, MediaWiki runJobs.php; recorded in the history like a scheduled run); --interval changes its schedule (default 1h; off stops it); --history lists its last runs",
    options: { interval: { type: 'string' }, history: { type: 'boolean' } },
    args: [1, 1],
    async run(ctx, [domain], o) {
      if (typeof o.interval === 'string') {
        const s = await ctx.api().call('setSiteCron', { domain, interval: o.interval });
        print(ctx, siteJson(s), () => kv(cronLines(s.domain, s.cron)));
        return 0;
      }
      if (o.history === true) {
        const r = await ctx.api().call('listCronRuns', { name: domain });
        print(ctx, r.runs.map(cronRunJson), () =>
          r.runs.length
            ? table(
                ['STARTED', 'TRIGGER', 'SERVER', 'DURATION', 'RESULT', 'MESSAGE'],
                r.runs.map((x) => [
                  new Date(x.startedMs).toISOString(),
                  x.trigger,
                  x.server || '-',
                  seconds(x.durationMs),
                  x.ok ? 'ok' : `failed (${x.errorCode})`,
                  x.message,
                ]),
              )
            : `no cron runs of ${domain} yet (spoke site cron ${domain} runs it now)\n`,
        );
        return 0;
      }
      const run = await ctx.api().call('runSiteCron', { name: domain }, 16 * 60_000);
      const where = run.server ? ` on ${run.server}` : '';
      if (!run.ok) {
        if (ctx.json) ctx.io.out(`${JSON.stringify(cronRunJson(run), null, 2)}\n`);
        ctx.io.err(`error: ${run.errorCode || 'SITE_CRON_FAILED'}: cron of ${run.domain} failed${where} after ${seconds(run.durationMs)}: ${run.message}\n`);
        return 1;
      }
      print(ctx, cronRunJson(run), () => `cron of ${run.domain} ran${where} in ${seconds(run.durationMs)}: ${run.message}\n`);
      return 0;
    },
  },
};

/** The CRON column of site ls: off, never, ok, failed N×, or FAILING N× from 3 failed runs in a row. */
export function cronColumn(c: wire.SiteCron | undefined): string {
  if (!c) return '-';
  if (c.failures >= 3) return `FAILING ${c.failures}x`;
  if (c.failures > 0) return `failed ${c.failures}x`;
  if (c.last) return 'ok';
  return c.intervalSeconds > 0 ? 'never' : 'off';
}

/** site show's cron lines. */
export function cronLines(domain: string, c: wire.SiteCron | undefined): [string, string][] {
  if (!c) return [];
  const last = c.last;
  const lines: [string, string][] = [
    [
      'cron',
      c.intervalSeconds > 0
        ? `every ${formatCronInterval(c.intervalSeconds)}${c.skipped ? ` (not run: ${c.skipped})` : ''}`
        : `off${c.skipped && c.skipped !== 'cron is off' ? ` (${c.skipped})` : ''}`,
    ],
    [
      'cron last run',
      last
        ? `${new Date(last.startedMs).toISOString()} on ${last.server || '-'} (${last.trigger}), ${seconds(last.durationMs)}, ${last.ok ? 'ok' : `failed: ${last.errorCode}: ${last.message}`}`
        : 'never',
    ],
  ];
  if (c.failures > 0) lines.push(['cron failures', `${c.failures} in a row${c.failures >= 3 ? ` (see: spoke site cron ${domain} --history)` : ''}`]);
  const next = c.nextRunMs ? new Date(c.nextRunMs).toISOString() : '-';
  lines.push(['cron next run', c.nextRunMs && c.nextRunMs <= Date.now() ? `${next} (due: runs at the scheduler's next free slot)` : next]);
  return lines;
}
