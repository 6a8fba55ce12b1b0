/**
 * Debian's pebble (an ACME test server, RFC 8555) on loopback for end-to-end tests, with
 * pebble-challtestsrv as its DNS server: every name resolves to 127.0.0.1 (no AAAA), so the
 * HTTP-01 validation of any test domain reaches `httpPort` on loopback — a real web server
 * started by the test. Pebble's own TLS certificate comes from a private CA made here with
 * openssl (`caFile`: what the master is given as --acme-ca); the certificates it issues chain to
 * its root, fetched from its management port (`rootPem`).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { until } from './harness.js';
import { freePort, stopProcess } from './services.js';

export const PEBBLE = '/usr/bin/pebble';
export const CHALLTESTSRV = '/usr/bin/pebble-challtestsrv';

/** A running pebble and its DNS. */
export interface PrivatePebble {
  /** The ACME directory URL. */
  directory: string;
  /** The CA of pebble's own TLS (for --acme-ca). */
  caFile: string;
  /** The root the issued certificates chain to (PEM). */
  rootPem(): Promise<string>;
  out(): string;
  stop(): Promise<void>;
}

function get(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${res.statusCode} ${body}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Starts pebble-challtestsrv (DNS only) and pebble validating HTTP-01 on 127.0.0.1:`httpPort`. */
export async function startPebble(dir: string, httpPort: number): Promise<PrivatePebble> {
  mkdirSync(dir, { recursive: true });
  const ca = { key: join(dir, 'ca.key'), cert: join(dir, 'ca.pem') };
  const leaf = { key: join(dir, 'pebble.key'), csr: join(dir, 'pebble.csr'), cert: join(dir, 'pebble.pem'), ext: join(dir, 'ext.cnf') };
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=pebble test CA',
    '-keyout',
    ca.key,
    '-out',
    ca.cert,
  );
  ssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost', '-keyout', leaf.key, '-out', leaf.csr);
  writeFileSync(leaf.ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ssl('x509', '-req', '-in', leaf.csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-extfile', leaf.ext, '-out', leaf.cert);

  const [dns, mgmtDns, acme, mgmt] = [await freePort(), await freePort(), await freePort(), await freePort()];
  let out = '';
  const collect = (p: ChildProcess, name: string) => {
    p.stdout?.on('data', (d: Buffer) => (out += `[${name}] ${d.toString()}`));
    p.stderr?.on('data', (d: Buffer) => (out += `[${name}] ${d.toString()}`));
  };
  const dnsProc = spawn(
    CHALLTESTSRV,
    [
      '-dns01',
      `127.0.0.1:${dns}`,
      '-http01',
      '',
      '-https01',
      '',
      '-tlsalpn01',
      '',
      '-management',
      `127.0.0.1:${mgmtDns}`,
      '-defaultIPv4',
      '127.0.0.1',
      '-defaultIPv6',
      '',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  collect(dnsProc, 'challtestsrv');
  await until(
    'pebble-challtestsrv to start',
    () => /Starting challenge servers|dnsOneServer|DNS/i.test(out) || (dnsProc.exitCode !== null ? Promise.reject(new Error(out)) : false),
  );

  const config = join(dir, 'pebble.json');
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acme}`,
        managementListenAddress: `127.0.0.1:${mgmt}`,
        certificate: leaf.cert,
        privateKey: leaf.key,
        httpPort,
        tlsPort: 5001,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  // No random validation sleeps; nonces are not rejected at random (acme-client retries them,
  // but a test should not depend on that).
  const proc = spawn(PEBBLE, ['-config', config, '-dnsserver', `127.0.0.1:${dns}`], {
    env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  collect(proc, 'pebble');
  const caPem = execFileSync('cat', [ca.cert], { encoding: 'utf8' });
  const directory = `https://127.0.0.1:${acme}/dir`;
  await until('pebble to serve its directory', () =>
    get(directory, caPem).then(
      () => true,
      () => (proc.exitCode !== null ? Promise.reject(new Error(out)) : false),
    ),
  );
  return {
    directory,
    caFile: ca.cert,
    rootPem: () => get(`https://127.0.0.1:${mgmt}/roots/0`, caPem),
    out: () => out,
    stop: async () => {
      await stopProcess(proc);
      await stopProcess(dnsProc);
    },
  };
}
