/**
 * The opt-in HTTP listener of both daemons (`--metrics HOST:PORT`): `/metrics` in the Prometheus
 * text format, `/healthz` (the process answers) and `/readyz` (it can do its work: 200 or 503).
 * It knows nothing of prom-client: the daemon hands in how to render the metrics.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fail } from './errors.js';
import { parseHostPort } from './grpc.js';

/** What the listener serves. */
export interface MetricsSource {
  /** The exposition: content type and body (prom-client `register.contentType`, `metrics()`). */
  render(): Promise<{ contentType: string; body: string }>;
  /** Readiness and why not (a one-line reason shown by /readyz). */
  ready(): { ready: boolean; reason: string };
}

/** A started listener. */
export interface MetricsListener {
  /** Bound address, HOST:PORT (the real port when 0 was asked). */
  address: string;
  close(): Promise<void>;
}

/**
 * Starts the listener on `listen` (HOST:PORT; port 0 = ephemeral).
 * @throws SpokeError CONFIG_INVALID (not HOST:PORT, or the address cannot be bound)
 */
export async function startMetricsListener(listen: string, source: MetricsSource): Promise<MetricsListener> {
  const { host, port } = parseHostPort(listen);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/metrics') {
      source.render().then(
        (m) => res.writeHead(200, { 'content-type': m.contentType }).end(m.body),
        (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${e instanceof Error ? e.message : String(e)}\n`),
      );
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (path === '/readyz') {
      const r = source.ready();
      res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' }).end(`${r.ready ? 'ready' : 'not ready'}: ${r.reason}\n`);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(fail('CONFIG_INVALID', `cannot listen for metrics on ${listen}: ${e.code ?? e.message}`)));
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    address: `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
