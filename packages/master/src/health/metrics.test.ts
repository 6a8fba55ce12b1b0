import { describe, expect, it } from 'vitest';
import { PromMasterMetrics } from './metrics.js';

const DAY = 86_400_000;

function sources(certificates?: () => { domain: string; notAfterMs: number; failures: number }[]) {
  return { agents: () => [], tasksByKindState: () => [], dbPath: '/nonexistent/spoke.db', ready: () => true, ...(certificates ? { certificates } : {}) };
}

const line = (body: string, name: string) => body.split('\n').find((l) => l.startsWith(name));

describe('HTTPS gauges', () => {
  it('count HTTPS sites by renewal state and give the seconds until the first certificate expires', async () => {
    const m = new PromMasterMetrics();
    const now = Date.now();
    m.setSources(
      sources(() => [
        { domain: 'a.test', notAfterMs: now + 30 * DAY, failures: 0 },
        { domain: 'b.test', notAfterMs: now + 5 * DAY, failures: 2 },
        { domain: 'c.test', notAfterMs: now + 60 * DAY, failures: 0 },
      ]),
    );
    const { body } = await m.render();
    expect(line(body, 'spoke_https_sites{renewal="ok"}')).toBe('spoke_https_sites{renewal="ok"} 2');
    expect(line(body, 'spoke_https_sites{renewal="failing"}')).toBe('spoke_https_sites{renewal="failing"} 1');
    const expiry = Number(line(body, 'spoke_https_certificate_expiry_seconds{site="b.test"} ')?.split(' ')[1]);
    expect(expiry).toBeGreaterThan(5 * 86_400 - 60);
    expect(expiry).toBeLessThanOrEqual(5 * 86_400);
  });

  it('without HTTPS sites: zero sites and no expiry sample', async () => {
    const m = new PromMasterMetrics();
    m.setSources(sources(() => []));
    const { body } = await m.render();
    expect(line(body, 'spoke_https_sites{renewal="ok"}')).toBe('spoke_https_sites{renewal="ok"} 0');
    expect(line(body, 'spoke_https_certificate_expiry_seconds')).toBeUndefined();
  });
});
