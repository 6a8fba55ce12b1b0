/**
 * Health and metrics from real daemons (issue 20): the master's gRPC health service on both
 * listeners, asked by a real grpc-js health client (grpc-health-check's service definition);
 * `/metrics` of the master and of an agent (both started with `--metrics 127.0.0.1:0`) parsed by a
 * Prometheus text-format parser after a real converge; `/readyz` following the agent's link;
 * `spoke status` naming the offline agent and the failing task; NOT_SERVING while the master stops.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Client, credentials, makeGenericClientConstructor, type ChannelCredentials, type ServiceDefinition, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import parsePrometheusTextFormat, { type PromFamily } from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentUnderTest, BIN, MasterUnderTest, cleanup, runNode, scratch, until } from '../harness.js';

const dir = scratch('spoke-health-');
const master = new MasterUnderTest(dir);
const w1 = new AgentUnderTest(dir, 'w1');
const P = '/var/www/app';
let masterMetrics = '';
let agentMetrics = '';

type HealthClient = Client & {
  Check(req: { service: string }, cb: (e: ServiceError | null, r?: { status: string }) => void): void;
  Watch(req: { service: string }): NodeJS.ReadableStream & { cancel(): void };
};
const HealthClientCtor = makeGenericClientConstructor(healthService as ServiceDefinition, 'Health');

/** The generic client's methods are untyped (`Function`): bound here to the health service's shapes. */
type ServiceClient = InstanceType<typeof HealthClientCtor>;

function typed(c: ServiceClient): HealthClient {
  const method = (name: string): Function => {
    const fn = c[name];
    if (typeof fn !== 'function') throw new Error(`the health client has no ${name}`);
    return fn;
  };
  const Check: HealthClient['Check'] = method('Check').bind(c);
  const Watch: HealthClient['Watch'] = method('Watch').bind(c);
  return Object.assign(c, { Check, Watch });
}

function healthClient(listener: 'tls' | 'socket'): HealthClient {
  if (listener === 'socket') return typed(new HealthClientCtor(`unix://${join(master.stateDir, 'spoke.sock')}`, credentials.createInsecure()));
  const creds: ChannelCredentials = credentials.createSsl(readFileSync(join(master.stateDir, 'pki', 'ca.crt')));
  return typed(new HealthClientCtor(master.listen, creds, { 'grpc.ssl_target_name_override': 'spoke-master' }));
}

function check(c: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) => c.Check({ service }, (e, r) => (e ? reject(e) : resolve(r?.status ?? ''))));
}

async function scrape(addr: string): Promise<PromFamily[]> {
  const r = await fetch(`http://${addr}/metrics`);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusTextFormat(await r.text());
}

/** The value of one sample: a family and the labels it must have. */
function sample(fams: PromFamily[], name: string, labels: Record<string, string> = {}): number {
  const f = fams.find((x) => x.name === name);
  if (!f) throw new Error(`no metric ${name}`);
  const m = f.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  if (!m) throw new Error(`no ${name} sample with ${JSON.stringify(labels)}`);
  return Number(m.value ?? m.count);
}

/**
 * A histogram's observation count (its +Inf bucket). parse-prometheus-text-format folds the series
 * of a labelled histogram into one sample without labels, so this is used where the histogram has
 * exactly one label set so far; `labels` is then checked on the raw exposition line.
 */
async function histogramCount(addr: string, fams: PromFamily[], name: string, labels: string): Promise<number> {
  const f = fams.find((x) => x.name === name);
  expect(f?.type).toBe('HISTOGRAM');
  expect(f?.metrics).toHaveLength(1);
  const text = await (await fetch(`http://${addr}/metrics`)).text();
  const series = text.split('\n').filter((l) => l.startsWith(`${name}_count{`));
  expect(series).toEqual([expect.stringContaining(`${name}_count{${labels}}`)]);
  return Number(f?.metrics[0]?.buckets?.['+Inf']);
}

beforeAll(async () => {
  mkdirSync(join(master.root, P, 'lib'), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(master.root, P, 'lib', `f${i}.php`), `<?php // ${i}\n${'x'.repeat(1000 + i)}\n`);
  await master.start({}, ['--metrics', '127.0.0.1:0']);
  masterMetrics = /metrics on http:\/\/(\S+)\/metrics/.exec(master.daemon?.out ?? '')?.[1] ?? '';
  const t = await master.cli('server', 'token', 'w1');
  const r = await w1.enroll(master.listen, t.stdout.trim());
  expect(r.code, r.stderr).toBe(0);
  const d = w1.run({}, ['--metrics', '127.0.0.1:0']);
  agentMetrics = await until('agent metrics listener', () => /"metrics":"([^"]+)"/.exec(d.out)?.[1]);
  await until('w1 online', async () => (await master.json<{ online: boolean }>('server', 'show', 'w1')).online);
}, 60_000);

afterAll(async () => {
  await w1.daemon?.stop();
  await master.daemon?.stop();
  cleanup(dir);
});

describe('health and metrics', () => {
  it('serves grpc.health.v1 on the TLS port and the unix socket', async () => {
    expect(masterMetrics).toMatch(/^127\.0\.0\.1:\d+$/);
    const tls = healthClient('tls');
    const sock = healthClient('socket');
    try {
      expect(await check(tls, '')).toBe('SERVING');
      expect(await check(tls, 'spoke.v1.Agent')).toBe('SERVING');
      expect(await check(tls, 'spoke.v1.Operator')).toBe('SERVING');
      expect(await check(sock, '')).toBe('SERVING');
      expect(await check(sock, 'spoke.v1.Operator')).toBe('SERVING');
      // The socket serves no Agent service: the health service says it does not know it.
      await expect(check(sock, 'spoke.v1.Agent')).rejects.toMatchObject({ code: 5 });
    } finally {
      tls.close();
      sock.close();
    }
  });

  it('exposes Prometheus metrics from the master and the agent after a converge', async () => {
    const add = await master.task('platform', 'add', 'app', '--path', P, '--server', 'w1');
    expect(add.t.state, add.log).toBe('succeeded');
    // Heartbeats come every 250 ms (FAST_ENV): wait for a few gaps to be observed.
    await until(
      'heartbeat gaps',
      async () => Number((await scrape(masterMetrics)).find((f) => f.name === 'spoke_agent_heartbeat_gap_seconds')?.metrics[0]?.count) >= 2,
    );
    const m = await scrape(masterMetrics);
    expect(sample(m, 'spoke_agents', { state: 'online' })).toBe(1);
    expect(sample(m, 'spoke_agents', { state: 'offline' })).toBe(0);
    expect(sample(m, 'spoke_tasks', { kind: 'platform.verify', state: 'succeeded' })).toBe(1);
    expect(await histogramCount(masterMetrics, m, 'spoke_task_duration_seconds', 'kind="platform.verify",state="succeeded"')).toBe(1);
    expect(await histogramCount(masterMetrics, m, 'spoke_task_queue_wait_seconds', 'kind="platform.verify"')).toBe(1);
    expect(sample(m, 'spoke_converge_bytes_total', { kind: 'sent' })).toBeGreaterThan(20_000);
    expect(sample(m, 'spoke_converge_bytes_total', { kind: 'reused' })).toBe(0);
    expect(sample(m, 'spoke_sqlite_size_bytes')).toBeGreaterThan(0);
    expect(sample(m, 'spoke_agent_heartbeat_age_seconds', { server: 'w1' })).toBeGreaterThanOrEqual(0);
    expect(sample(m, 'spoke_master_ready')).toBe(1);
    expect(m.find((f) => f.name === 'spoke_cron_runs_total')?.type).toBe('COUNTER');

    const a = await scrape(agentMetrics);
    expect(sample(a, 'spoke_agent_commands_total', { type: 'converge', result: 'ok' })).toBe(1);
    expect(sample(a, 'spoke_agent_converge_bytes_total', { kind: 'fetched' })).toBe(sample(m, 'spoke_converge_bytes_total', { kind: 'sent' }));
    expect(sample(a, 'spoke_agent_link_state', { state: 'connected' })).toBe(1);
    expect(sample(a, 'spoke_agent_link_state', { state: 'backoff' })).toBe(0);

    for (const addr of [masterMetrics, agentMetrics]) {
      expect((await fetch(`http://${addr}/healthz`)).status).toBe(200);
      const ready = await fetch(`http://${addr}/readyz`);
      expect(ready.status, await ready.clone().text()).toBe(200);
      expect((await fetch(`http://${addr}/nothing`)).status).toBe(404);
    }
  });

  it('spoke status names the offline agent and the failing task', async () => {
    await w1.daemon?.stop();
    await until('w1 offline', async () => !(await master.json<{ online: boolean }>('server', 'show', 'w1')).online);
    const v = await master.task('server', 'verify', 'w1');
    expect(v.t.state).toBe('failed');
    const s = await master.json<{ agentsOffline: string[]; tasksFailing: { id: number; kind: string; errorCode: string }[]; tasksStuck: unknown[] }>('status');
    expect(s.agentsOffline).toEqual(['w1']);
    expect(s.tasksFailing.map((t) => [t.id, t.kind, t.errorCode])).toEqual([[v.t.id, 'server.verify', v.t.error?.code]]);
    expect(s.tasksStuck).toEqual([]);
    const human = await master.cli('status');
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('health: 2 problem(s)');
    expect(human.stdout).toContain('agents offline: w1');
    expect(human.stdout).toContain(`task failing: #${v.t.id} server.verify server:w1`);
    const m = await scrape(masterMetrics);
    expect(sample(m, 'spoke_agents', { state: 'offline' })).toBe(1);
    expect(sample(m, 'spoke_tasks', { kind: 'server.verify', state: 'failed' })).toBe(1);
  });

  it('the agent is not ready while its master is away; the master says NOT_SERVING as it stops', async () => {
    w1.run({}, ['--metrics', agentMetrics]);
    await until('w1 online again', async () => (await master.json<{ online: boolean }>('server', 'show', 'w1')).online);
    await until('agent ready', async () => (await fetch(`http://${agentMetrics}/readyz`)).status === 200);
    const sock = healthClient('socket');
    const seen: string[] = [];
    const watch = sock.Watch({ service: '' });
    watch.on('data', (r: { status: string }) => seen.push(r.status));
    watch.on('error', () => undefined);
    await until('watch SERVING', () => seen.includes('SERVING'));
    await master.daemon?.stop();
    expect(seen).toEqual(['SERVING', 'NOT_SERVING']);
    sock.close();
    const r = await until('agent not ready', async () => {
      const x = await fetch(`http://${agentMetrics}/readyz`);
      return x.status === 503 ? x.text() : undefined;
    });
    expect(r).toMatch(/^not ready: link (connecting|backoff)/);
  });

  it('refuses a --metrics that is not HOST:PORT with one line', async () => {
    const r = await runNode(BIN.master, ['run', '--state-dir', join(dir, 'bad'), '--metrics', 'everywhere']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error: CONFIG_INVALID: --metrics / SPOKE_METRICS wants HOST:PORT (e.g. 127.0.0.1:9464), not "everywhere"\n');
  });
});
