/**
 * The link's liveness judged by what is heard (liveness.ts): a busy connection whose probe is
 * never answered stays alive while data arrives; silence ends it, cancelling what is open on
 * it; and a MasterConnection whose connection went silent (a TCP proxy that stops forwarding
 * without closing, like a link that went away) dials a new connection instead of reusing the
 * dead one.
 */
import { connect, createServer, type Server as NetServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, credentials, Server, ServerCredentials, status as GrpcStatus, type ServerWritableStream } from '@grpc/grpc-js';
import { MASTER_TLS_NAME, RootMap, createCA, createLogger, issueKeyPair, serverTls, wire, type KeyPair } from '@spoke/shared';
import { MasterConnection, type ConnectionDeps } from './connection.js';
import { LinkLiveness } from './liveness.js';
import type { AgentTrees } from './sync.js';

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };

async function until(what: string, fn: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('LinkLiveness', () => {
  it('stays alive while messages arrive though its probe is never answered, and is dead after silence, with its open calls cancelled', async () => {
    const server = new Server();
    let streamFor = 0;
    server.addService(
      {
        stream: {
          path: '/t.T/Stream',
          requestStream: false,
          responseStream: true,
          requestSerialize: raw.serialize,
          requestDeserialize: raw.deserialize,
          responseSerialize: raw.serialize,
          responseDeserialize: raw.deserialize,
        },
        probe: {
          path: '/t.T/Probe',
          requestStream: false,
          responseStream: false,
          requestSerialize: raw.serialize,
          requestDeserialize: raw.deserialize,
          responseSerialize: raw.serialize,
          responseDeserialize: raw.deserialize,
        },
      },
      {
        // a message every 150 ms for `streamFor` ms, then silence with the call left open
        stream: (call: ServerWritableStream<Buffer, Buffer>) => {
          const end = Date.now() + streamFor;
          const t = setInterval(() => {
            if (Date.now() < end) call.write(Buffer.from('x'));
            else clearInterval(t);
          }, 150);
          call.on('cancelled', () => clearInterval(t));
        },
        probe: () => undefined, // never answers: the answer waits behind the data, or never comes
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    let client: Client | undefined;
    let dead = 0;
    const probes: number[] = [];
    const l = new LinkLiveness({
      probeAfterMs: 100,
      deadAfterMs: 1500,
      probe: () =>
        new Promise((resolve) => {
          probes.push(Date.now());
          (client as Client).makeUnaryRequest('/t.T/Probe', raw.serialize, raw.deserialize, Buffer.alloc(0), () => resolve(undefined));
        }),
      onDead: () => dead++,
    });
    client = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), { interceptors: [l.interceptor] });
    try {
      streamFor = 3000;
      const call = client.makeServerStreamRequest('/t.T/Stream', raw.serialize, raw.deserialize, Buffer.alloc(0));
      let got = 0;
      let ended: number | undefined;
      call.on('data', () => got++);
      call.on('error', (e: { code: number }) => (ended = e.code));
      const seen: string[] = [];
      const t0 = Date.now();
      // 3 s of messages every 150 ms, each gap past the 100 ms after which it probes, and no
      // probe ever answered: alive all along, the data is what counts
      while (Date.now() - t0 < 2900) {
        seen.push(l.check());
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(got).toBeGreaterThan(10);
      expect(seen).toContain('probing');
      expect(seen).not.toContain('dead');
      expect(dead).toBe(0);
      const probedWhileStreaming = probes.length;
      expect(probedWhileStreaming).toBeGreaterThanOrEqual(1);
      // then silence: probed (unanswered), then dead, the stream and the probe cancelled
      await until('dead', () => l.check() === 'dead', 5000);
      expect(dead).toBe(1);
      await until('stream ended', () => ended !== undefined);
      expect(ended).toBe(GrpcStatus.UNAVAILABLE);
      expect(l.openCalls()).toBe(0);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });
});

/** A TCP proxy that can stop forwarding on the connections it has (sockets left open). */
async function proxy(target: number): Promise<{ port: number; freeze: () => void; connections: () => number; closed: () => number; close: () => void }> {
  const pairs: { a: Socket; b: Socket; frozen: boolean }[] = [];
  let closed = 0;
  const srv: NetServer = createServer((a) => {
    const b = connect(target, '127.0.0.1');
    const pair = { a, b, frozen: false };
    pairs.push(pair);
    a.on('data', (d) => pair.frozen || b.write(d));
    b.on('data', (d) => pair.frozen || a.write(d));
    a.on('error', () => b.destroy());
    b.on('error', () => a.destroy());
    a.on('close', () => {
      closed++;
      b.destroy();
    });
    b.on('close', () => a.destroy());
  });
  const port = await new Promise<number>((r) => srv.listen(0, '127.0.0.1', () => r((srv.address() as { port: number }).port)));
  return {
    port,
    freeze: () => pairs.forEach((p) => (p.frozen = true)),
    connections: () => pairs.length,
    closed: () => closed,
    close: () => {
      pairs.forEach((p) => (p.a.destroy(), p.b.destroy()));
      srv.close();
    },
  };
}

describe('MasterConnection liveness', () => {
  let ca: KeyPair;
  let masterCert: KeyPair;
  let agentCert: KeyPair;
  beforeAll(async () => {
    ca = await createCA('test CA');
    masterCert = await issueKeyPair(ca, { commonName: MASTER_TLS_NAME, role: 'master', dnsNames: [MASTER_TLS_NAME], ips: ['127.0.0.1'] });
    agentCert = await issueKeyPair(ca, { commonName: 'w1', role: 'agent' });
  });
  const servers: Server[] = [];
  afterAll(() => servers.forEach((s) => s.forceShutdown()));

  /** A master that welcomes each Connect and then says nothing (more handlers in `extra`), behind a proxy. */
  async function quietMaster(extra: object = {}) {
    const server = new Server();
    servers.push(server);
    let welcomes = 0;
    server.addService(wire.AgentService, {
      connect: (call: { on: (e: string, f: () => void) => void; write: (m: wire.MasterCommand) => void }) => {
        call.on('error', () => undefined);
        welcomes++;
        call.write({ id: 'w', command: { $case: 'welcome', value: { server: 'w1', cluster: '', capabilityVersion: 1, heartbeatIntervalMs: 50 } } });
      },
      ...extra,
    } as unknown as wire.AgentServer);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', serverTls(ca.certPem, masterCert.certPem, masterCert.keyPem), (e, p) => (e ? reject(e) : resolve(p))),
    );
    return { px: await proxy(port), welcomes: () => welcomes };
  }

  /** The agent's link to `port`, with `extra` deps; its log lines in `lines`. */
  function link(port: number, extra: Partial<ConnectionDeps> = {}): { conn: MasterConnection; lines: string[] } {
    const lines: string[] = [];
    const conn = new MasterConnection({
      log: createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(l) } }),
      master: `127.0.0.1:${port}`,
      identity: { caPem: ca.certPem, certPem: agentCert.certPem, keyPem: agentCert.keyPem },
      roots: [],
      rootMap: new RootMap(''),
      detect: async () => [],
      backoffInitialMs: 20,
      backoffMaxMs: 100,
      trees: { setClient: () => undefined, observed: () => ({}) } as unknown as AgentTrees,
      web: {} as never,
      installer: {} as never,
      sitePhp: {} as never,
      cron: {} as never,
      driftIntervalMs: 60_000,
      ...extra,
    });
    return { conn, lines };
  }

  it('a connection gone silent (proxy stops forwarding, nothing closed) is given up and a new one dialed', async () => {
    // a master that welcomes and then says nothing: only the probe's answer (UNIMPLEMENTED here) is heard
    const { px, welcomes } = await quietMaster();
    const { conn, lines } = link(px.port, { liveness: { probeAfterMs: 150, deadAfterMs: 600 } });
    conn.start();
    try {
      await until('first welcome', () => welcomes() === 1 && conn.linkState === 'connected');
      // idle but answered: a second of probes (each answered UNIMPLEMENTED) keeps it up
      await new Promise((r) => setTimeout(r, 1000));
      expect(welcomes()).toBe(1);
      expect(px.connections()).toBe(1);
      px.freeze();
      await until('a second welcome, over a new connection', () => welcomes() === 2 && conn.linkState === 'connected');
      expect(px.connections()).toBe(2);
      expect(lines.join('')).toContain('the connection is dead; reconnecting');
    } finally {
      conn.stop();
      px.close();
    }
  });

  it('transfers go on a second connection, closed again once idle; the control connection stays', async () => {
    const { px, welcomes } = await quietMaster({ getManifest: (call: { end: () => void }) => call.end() });
    let bulk: wire.AgentClient | undefined;
    const { conn } = link(px.port, {
      trees: { setClient: (c: wire.AgentClient) => (bulk = c), observed: () => ({}) } as unknown as AgentTrees,
      bulkIdleMs: 1000,
    });
    conn.start();
    try {
      await until('welcomed', () => welcomes() === 1 && conn.linkState === 'connected');
      expect(px.connections()).toBe(1); // the bulk connection is dialed by its first transfer
      const call = (bulk as wire.AgentClient).getManifest({ tree: '/var/www/p', rootHash: '', baseRootHash: '' });
      await new Promise<void>((resolve, reject) => {
        call.on('data', () => undefined);
        call.on('end', () => resolve());
        call.on('error', reject);
      });
      expect(px.connections()).toBe(2);
      // after the idle time, at grpc-js' next sweep of its subchannel pool (every 10 s)
      await until('the idle bulk connection closed', () => px.closed() === 1, 30_000);
      expect(conn.linkState).toBe('connected');
      expect(welcomes()).toBe(1);
    } finally {
      conn.stop();
      px.close();
    }
  });
});
