/**
 * The master's metrics. Components report events through `MasterMetrics` (passed in through
 * their constructors; `NO_METRICS` when metrics are off); `PromMasterMetrics` turns them into
 * Prometheus series on its own registry (no global registry), and reads the gauges — agents
 * online, tasks by kind and state, heartbeat age, SQLite size — from the components at scrape.
 */
import { statSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Events the master's components report. Every method is cheap and never throws. */
export interface MasterMetrics {
  /** A task left `queued` after `waitSeconds` in the queue. */
  taskStarted(kind: string, waitSeconds: number): void;
  /** A task ended (`succeeded`, `failed`, `cancelled`); `runSeconds` null when it never ran. */
  taskFinished(kind: string, state: string, runSeconds: number | null): void;
  /** One server's converge: bytes the master sent, bytes the agent reused from its own disk. */
  converged(bytesSent: number, bytesReused: number): void;
  /** A heartbeat arrived `gapSeconds` after the agent's previous sign of life. */
  heartbeat(gapSeconds: number): void;
  /** A cron run was recorded (`ok` or the error code). */
  cronRun(result: string, seconds: number): void;
}

/** Metrics off: every event is dropped. */
export const NO_METRICS: MasterMetrics = {
  taskStarted: () => undefined,
  taskFinished: () => undefined,
  converged: () => undefined,
  heartbeat: () => undefined,
  cronRun: () => undefined,
};

/** What the gauges are read from at scrape time. */
export interface MasterGaugeSources {
  /** Enrolled agent servers and whether each is online now. */
  agents(): { server: string; online: boolean; heartbeatAgeSeconds: number | null }[];
  /** Task counts by kind and state (every state in the store). */
  tasksByKindState(): { kind: string; state: string; count: number }[];
  /** The SQLite database file (its -wal beside it is counted too). */
  dbPath: string;
  /** Readiness of the master (SERVING on the gRPC health service). */
  ready(): boolean;
  /** The certificates HTTPS sites serve now: not-after and failed renewals in a row. */
  certificates?(): { domain: string; notAfterMs: number; failures: number }[];
}

/** Buckets for task and queue times: 50 ms to 1 h. */
const TASK_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

/** The master's Prometheus registry and series. */
export class PromMasterMetrics implements MasterMetrics {
  readonly registry = new Registry();
  private readonly queueWait: Histogram<'kind'>;
  private readonly duration: Histogram<'kind' | 'state'>;
  private readonly bytes: Counter<'kind'>;
  private readonly beats: Histogram;
  private readonly cron: Counter<'result'>;
  private readonly cronSeconds: Histogram;
  private sources: MasterGaugeSources | null = null;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'spoke_master_' });
    this.queueWait = new Histogram({
      name: 'spoke_task_queue_wait_seconds',
      help: 'Time tasks waited queued before they started.',
      labelNames: ['kind'],
      buckets: TASK_BUCKETS,
      registers,
    });
    this.duration = new Histogram({
      name: 'spoke_task_duration_seconds',
      help: 'Time tasks ran, by kind and final state.',
      labelNames: ['kind', 'state'],
      buckets: TASK_BUCKETS,
      registers,
    });
    this.bytes = new Counter({
      name: 'spoke_converge_bytes_total',
      help: 'Converge bytes: sent by the master, or reused by agents from their own disk.',
      labelNames: ['kind'],
      registers,
    });
    this.beats = new Histogram({
      name: 'spoke_agent_heartbeat_gap_seconds',
      help: "Time between an agent's heartbeats as the master saw them (lag shows as gaps above the interval).",
      buckets: [1, 2, 5, 7.5, 10, 15, 30, 60],
      registers,
    });
    this.cron = new Counter({ name: 'spoke_cron_runs_total', help: 'Site cron runs, by result (ok or the error code).', labelNames: ['result'], registers });
    this.cronSeconds = new Histogram({ name: 'spoke_cron_run_duration_seconds', help: 'Time site cron runs took.', buckets: TASK_BUCKETS, registers });
    const self = this;
    new Gauge({
      name: 'spoke_agents',
      help: 'Enrolled agent servers by state (online, offline).',
      labelNames: ['state'],
      registers,
      collect() {
        const a = self.sources?.agents() ?? [];
        const online = a.filter((x) => x.online).length;
        this.set({ state: 'online' }, online);
        this.set({ state: 'offline' }, a.length - online);
      },
    });
    new Gauge({
      name: 'spoke_agent_heartbeat_age_seconds',
      help: "Time since each connected agent's last heartbeat.",
      labelNames: ['server'],
      registers,
      collect() {
        this.reset();
        for (const a of self.sources?.agents() ?? []) if (a.heartbeatAgeSeconds !== null) this.set({ server: a.server }, a.heartbeatAgeSeconds);
      },
    });
    new Gauge({
      name: 'spoke_tasks',
      help: 'Tasks in the store by kind and state.',
      labelNames: ['kind', 'state'],
      registers,
      collect() {
        this.reset();
        for (const t of self.sources?.tasksByKindState() ?? []) this.set({ kind: t.kind, state: t.state }, t.count);
      },
    });
    new Gauge({
      name: 'spoke_sqlite_size_bytes',
      help: "Size of the master's SQLite database (with its write-ahead log).",
      registers,
      collect() {
        const p = self.sources?.dbPath;
        if (!p) return;
        const size = (f: string) => {
          try {
            return statSync(f).size;
          } catch {
            return 0;
          }
        };
        this.set(size(p) + size(`${p}-wal`));
      },
    });
    new Gauge({
      name: 'spoke_https_sites',
      help: 'Sites served over HTTPS, by renewal state (ok, or failing: its last renewal failed).',
      labelNames: ['renewal'],
      registers,
      collect() {
        const certs = self.sources?.certificates?.() ?? [];
        const failing = certs.filter((c) => c.failures > 0).length;
        this.set({ renewal: 'ok' }, certs.length - failing);
        this.set({ renewal: 'failing' }, failing);
      },
    });
    new Gauge({
      name: 'spoke_https_certificate_expiry_seconds',
      help: 'Seconds until the first served certificate expires (negative: it has), labelled with its site; absent without HTTPS sites. Alert well before 0.',
      labelNames: ['site'],
      registers,
      collect() {
        this.reset();
        let first: { domain: string; notAfterMs: number } | undefined;
        for (const c of self.sources?.certificates?.() ?? []) if (!first || c.notAfterMs < first.notAfterMs) first = c;
        if (first) this.set({ site: first.domain }, (first.notAfterMs - Date.now()) / 1000);
      },
    });
    new Gauge({
      name: 'spoke_master_ready',
      help: '1 when the master serves (its gRPC health status is SERVING), 0 while it starts or stops.',
      registers,
      collect() {
        this.set(self.sources?.ready() ? 1 : 0);
      },
    });
  }

  /** Where the gauges read from; set once the components exist. */
  setSources(s: MasterGaugeSources): void {
    this.sources = s;
  }

  taskStarted(kind: string, waitSeconds: number): void {
    this.queueWait.observe({ kind }, Math.max(0, waitSeconds));
  }

  taskFinished(kind: string, state: string, runSeconds: number | null): void {
    if (runSeconds !== null) this.duration.observe({ kind, state }, Math.max(0, runSeconds));
  }

  converged(bytesSent: number, bytesReused: number): void {
    this.bytes.inc({ kind: 'sent' }, bytesSent);
    this.bytes.inc({ kind: 'reused' }, bytesReused);
  }

  heartbeat(gapSeconds: number): void {
    this.beats.observe(Math.max(0, gapSeconds));
  }

  cronRun(result: string, seconds: number): void {
    this.cron.inc({ result });
    this.cronSeconds.observe(Math.max(0, seconds));
  }

  /** The exposition for `/metrics`. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
