/**
 * Transport helpers shared by master, agent and CLI: credentials, channel options, addresses.
 */
import { credentials, experimental, type ServerCredentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { MASTER_TLS_NAME } from './tlsname.js';
import { fail } from './errors.js';

/** Channel options every client uses: the master is verified by its fixed TLS name. */
export function channelOptions(extra: ChannelOptions = {}): ChannelOptions {
  return {
    'grpc.ssl_target_name_override': MASTER_TLS_NAME,
    'grpc.default_authority': MASTER_TLS_NAME,
    'grpc.keepalive_time_ms': 20_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    // HTTP/2 lets a sender have only 64 KiB in flight per stream by default: the master then
    // waits for the agent's window update after every 64 KiB of FetchBlobs, while the agent is
    // busy writing the chunk before. Measured on a 20,000-file initial sync, both sides sat ~40 %
    // idle for the whole transfer. 16 MiB lets the master read ahead while the agent writes.
    'grpc-node.flow_control_window': 16 * 1024 * 1024,
    ...extra,
  };
}

/** mTLS client credentials from PEM strings. */
export function clientTls(caPem: string, certPem?: string, keyPem?: string): ChannelCredentials {
  return credentials.createSsl(Buffer.from(caPem), keyPem ? Buffer.from(keyPem) : null, certPem ? Buffer.from(certPem) : null);
}

/**
 * Server TLS that asks for a client certificate but does not require one: enrollment is the one
 * call made without a certificate; every other handler checks the verified peer certificate.
 */
export function serverTls(caPem: string, certPem: string, keyPem: string): ServerCredentials {
  const ca = Buffer.from(caPem);
  const identity = { certificate: Buffer.from(`${certPem.trim()}\n${caPem.trim()}\n`), privateKey: Buffer.from(keyPem) };
  // grpc-js registers its watcher only after adding these listeners, so answer on a microtask:
  // a synchronous answer would be lost and the server would drop every connection.
  const provider: experimental.CertificateProvider = {
    addCaCertificateListener: (l) => queueMicrotask(() => l({ caCertificate: ca })),
    removeCaCertificateListener: () => undefined,
    addIdentityCertificateListener: (l) => queueMicrotask(() => l(identity)),
    removeIdentityCertificateListener: () => undefined,
  };
  return experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

/**
 * Parses `HOST:PORT` (IPv6 as `[::1]:7443`).
 * @throws SpokeError CONFIG_INVALID
 */
export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw fail('CONFIG_INVALID', `address ${JSON.stringify(s)} is not HOST:PORT`);
  return { host: (m[1] ?? m[2]) as string, port };
}

/** `HOST:PORT` → a grpc target (`ipv6:[::1]:7443` style is handled by grpc-js itself). */
export function grpcTarget(hostPort: string): string {
  const { host, port } = parseHostPort(hostPort);
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
