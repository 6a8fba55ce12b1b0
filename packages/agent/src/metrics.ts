/**
 * The agent's metrics. The connection reports commands and converges through `AgentMetrics`
 * (passed in; `NO_AGENT_METRICS` when metrics are off); `PromAgentMetrics` keeps them on its own
 * prom-client registry and reads the link state at scrape. Readiness (`/readyz`) is the link:
 * the agent has no gRPC server of its own, so its health lives on the metrics listener.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Events the agent reports. Cheap; never throw. */
export interface AgentMetrics {
  /** A master command was answered (`ok` or the error code) after `seconds`. */
  command(type: string, result: string, seconds: number): void;
  /** A converge: bytes fetched from the master, bytes reused from this host's own disk. */
  converged(bytesFetched: number, bytesReused: number): void;
}

/** Metrics off. */
export const NO_AGENT_METRICS: AgentMetrics = { command: () => undefined, converged: () => undefined };

const LINK_STATES = ['idle', 'connecting', 'connected', 'backoff', 'stopped'] as const;

/** The agent's Prometheus registry and series. */
export class PromAgentMetrics implements AgentMetrics {
  readonly registry = new Registry();
  private readonly commands: Counter<'type' | 'result'>;
  private readonly seconds: Histogram<'type'>;
  private readonly bytes: Counter<'kind'>;

  /** `link` reads the connection's state at scrape. */
  constructor(link: () => string) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'spoke_agent_' });
    this.commands = new Counter({
      name: 'spoke_agent_commands_total',
      help: 'Master commands answered, by type and result (ok or the error code).',
      labelNames: ['type', 'result'],
      registers,
    });
    this.seconds = new Histogram({
      name: 'spoke_agent_command_duration_seconds',
      help: 'Time master commands took on this agent.',
      labelNames: ['type'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900],
      registers,
    });
    this.bytes = new Counter({
      name: 'spoke_agent_converge_bytes_total',
      help: "Converge bytes: fetched from the master, or reused from this host's disk.",
      labelNames: ['kind'],
      registers,
    });
    new Gauge({
      name: 'spoke_agent_link_state',
      help: 'The link to the master: 1 for the current state, 0 for the others.',
      labelNames: ['state'],
      registers,
      collect() {
        const now = link();
        for (const s of LINK_STATES) this.set({ state: s }, s === now ? 1 : 0);
      },
    });
  }

  command(type: string, result: string, seconds: number): void {
    this.commands.inc({ type, result });
    this.seconds.observe({ type }, Math.max(0, seconds));
  }

  converged(bytesFetched: number, bytesReused: number): void {
    this.bytes.inc({ kind: 'fetched' }, bytesFetched);
    this.bytes.inc({ kind: 'reused' }, bytesReused);
  }

  /** The exposition for `/metrics`. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
