/**
 * The agent's link comes back from every way a master can go away: the stream ended cleanly,
 * the stream failed, the master gone (connect refused), something else on its port (TLS
 * handshake failure). A fake master (a real grpc-js server over mTLS with a test CA) plays them.
 * Only a refused identity stops the link.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Server, status as GrpcStatus, type ServerDuplexStream } from '@grpc/grpc-js';
import { MASTER_TLS_NAME, RootMap, createCA, createLogger, issueKeyPair, serverTls, wire, type KeyPair } from '@spoke/shared';
import { MasterConnection, type LinkState } from './connection.js';
import type { AgentTrees } from './sync.js';

type Call = ServerDuplexStream<wire.AgentEvent, wire.MasterCommand>;
const CHILD = join(import.meta.dirname, 'link-child.ts');
const REPO = join(import.meta.dirname, '../../..');

let ca: KeyPair;
let masterCert: KeyPair;
let agentCert: KeyPair;
const lines: string[] = [];
const log = createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(l) } });

/** A fake master on `port` (0: any): welcomes each Connect and hands the call to `onCall`. */
async function fakeMaster(port: number, onCall: (call: Call) => void): Promise<{ server: Server; port: number }> {
  const server = new Server();
  server.addService(wire.AgentService, {
    connect: (call: Call) => {
      call.on('error', () => undefined);
      call.write({ id: 'w', command: { $case: 'welcome', value: { server: 'w1', cluster: '', capabilityVersion: 1, heartbeatIntervalMs: 100 } } });
      onCall(call);
    },
  } as unknown as wire.AgentServer);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, serverTls(ca.certPem, masterCert.certPem, masterCert.keyPem), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { server, port: bound };
}

function link(port: number): { conn: MasterConnection; states: LinkState[]; hellos: () => number } {
  const conn = new MasterConnection({
    log,
    master: `127.0.0.1:${port}`,
    identity: { caPem: ca.certPem, certPem: agentCert.certPem, keyPem: agentCert.keyPem },
    roots: [],
    rootMap: new RootMap(''),
    detect: async () => [],
    backoffInitialMs: 50,
    backoffMaxMs: 200,
    trees: { setClient: () => undefined, observed: () => ({}) } as unknown as AgentTrees,
    web: {
      configurePlatform: () => Promise.reject(new Error('unused')),
      configureSite: () => Promise.reject(new Error('unused')),
      removeSite: () => Promise.reject(new Error('unused')),
      removePlatform: () => Promise.reject(new Error('unused')),
      settingsToWebGroup: () => Promise.reject(new Error('unused')),
    },
    installer: { install: () => Promise.reject(new Error('unused')) },
    sitePhp: { run: () => Promise.reject(new Error('unused')) },
    cron: { run: () => Promise.reject(new Error('unused')) },
    driftIntervalMs: 60_000,
  });
  const states: LinkState[] = [];
  let hellos = 0;
  conn.onState = (s) => {
    states.push(s);
    if (s === 'connected') hellos++;
  };
  return { conn, states, hellos: () => hellos };
}

async function until(what: string, fn: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const shutdown = (s: Server) => new Promise<void>((r) => s.tryShutdown(() => r()));

beforeAll(async () => {
  ca = await createCA('test CA');
  masterCert = await issueKeyPair(ca, { commonName: MASTER_TLS_NAME, role: 'master', dnsNames: [MASTER_TLS_NAME], ips: ['127.0.0.1'] });
  agentCert = await issueKeyPair(ca, { commonName: 'w1', role: 'agent' });
});

describe('MasterConnection', () => {
  let garbage: NetServer | undefined;
  afterAll(() => garbage?.close());

  it('a process running only the link stays alive and reconnects after a clean end, a failed stream, a master that is gone and a failed TLS handshake', async () => {
    let calls: Call[] = [];
    let m = await fakeMaster(0, (c) => calls.push(c));
    const port = m.port;
    const dir = mkdtempSync(join(tmpdir(), 'spoke-link-'));
    writeFileSync(join(dir, 'ca.pem'), ca.certPem);
    writeFileSync(join(dir, 'cert.pem'), agentCert.certPem);
    writeFileSync(join(dir, 'key.pem'), agentCert.keyPem);
    const child = spawn(process.execPath, ['--import', 'tsx/esm', CHILD, dir, `127.0.0.1:${port}`], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const hellos = () => out.split('\n').filter((l) => l === 'state connected').length;
    const alive = () => child.exitCode === null && child.signalCode === null;
    const back = async (what: string, n: number) => {
      await until(what, () => hellos() >= n || !alive(), 30_000);
      expect(alive(), `${what}:\n${out}`).toBe(true);
      expect(hellos()).toBe(n);
    };
    try {
      await back('first hello', 1);

      // 1. the master ends the stream cleanly (status OK)
      calls[0]?.end();
      await back('back after a clean end', 2);

      // 2. the stream fails
      calls[1]?.emit('error', Object.assign(new Error('boom'), { code: GrpcStatus.UNAVAILABLE, details: 'boom' }));
      await back('back after a failed stream', 3);

      // 3. the master goes away: connects are refused for a while
      m.server.forceShutdown();
      await new Promise((r) => setTimeout(r, 800));
      expect(alive(), out).toBe(true);

      // 4. something else answers on the port: every TLS handshake fails
      let handshakes = 0;
      garbage = createServer((s) => {
        handshakes++;
        s.on('error', () => undefined);
        s.write('SSH-2.0-not-a-master\r\n', () => s.destroy());
      });
      await new Promise<void>((r) => garbage?.listen(port, '127.0.0.1', () => r()));
      await until('handshakes tried', () => handshakes >= 2);
      await new Promise<void>((r) => garbage?.close(() => r()));
      garbage = undefined;
      expect(alive(), out).toBe(true);

      calls = [];
      m = await fakeMaster(port, (c) => calls.push(c));
      await back('back after the outage', 4);
      expect(out).not.toMatch(/^exit /m);
    } finally {
      child.kill('SIGKILL');
      m.server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('dials again when the link was left with no stream and no retry pending (the watchdog)', async () => {
    const calls: Call[] = [];
    const m = await fakeMaster(0, (c) => calls.push(c));
    const { conn, hellos } = link(m.port);
    conn.start();
    try {
      await until('first hello', () => hellos() === 1);
      expect(conn.ensureDialing('test')).toBe(false); // connected: nothing to do
      // Forget the stream as a bug would, without scheduling a retry.
      const inner = conn as unknown as { stream: { cancel(): void } | null };
      const s = inner.stream;
      inner.stream = null;
      s?.cancel();
      await until('watchdog dialed', () => hellos() === 2, 5_000);
      expect(lines.join('')).toMatch(/idle with no retry pending; dialing again.*"why":"watchdog"|"why":"watchdog".*idle with no retry pending/);
    } finally {
      conn.stop();
      await shutdown(m.server);
    }
  });

  it('stops for good when the master refuses its identity', async () => {
    const m = await fakeMaster(0, (c) =>
      c.emit('error', Object.assign(new Error('revoked'), { code: GrpcStatus.PERMISSION_DENIED, details: 'CERT_REVOKED: revoked' })),
    );
    const { conn } = link(m.port);
    conn.start();
    try {
      await until('stopped', () => conn.linkState === 'stopped');
      expect(conn.fatal).toMatchObject({ code: GrpcStatus.PERMISSION_DENIED });
      expect(conn.ensureDialing('test')).toBe(false);
    } finally {
      conn.stop();
      m.server.forceShutdown();
    }
  });
});
