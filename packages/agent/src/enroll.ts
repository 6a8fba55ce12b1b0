/**
 * `spoke-agent enroll`: makes a key (0600) and CSR, pins the master's CA from the token's
 * fingerprint, and trades the token for a certificate whose identity is the server name.
 */
import { connect as tlsConnect, type DetailedPeerCertificate } from 'node:tls';
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { resolve } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { MASTER_TLS_NAME, channelOptions, clientTls, createCsr, fail, fromServiceError, grpcTarget, parseHostPort, stateDirHolder, wire } from '@spoke/shared';
import { checkRoots, identityFiles, writeAgentConfig, DEFAULT_ROOTS } from './config.js';

/** What enroll returns. */
export interface EnrollResult {
  server: string;
  cluster: string;
  stateDir: string;
}

const TOKEN_RE = /^spoke1\.[A-Za-z0-9_-]{43}\.([0-9a-f]{64})$/;

/**
 * Reads the master's certificate chain without trusting it yet and returns the CA certificate
 * whose SHA-256 matches the pin.
 * @throws SpokeError MASTER_UNREACHABLE, CA_MISMATCH
 */
export function fetchPinnedCA(master: string, pin: string, timeoutMs = 10_000): Promise<string> {
  const { host, port } = parseHostPort(master);
  return new Promise((resolvePromise, reject) => {
    const sock = tlsConnect({ host, port, servername: MASTER_TLS_NAME, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(fail('MASTER_UNREACHABLE', `no TLS answer from ${master} within ${timeoutMs / 1000}s`));
    }, timeoutMs);
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(fail('MASTER_UNREACHABLE', `cannot reach the master at ${master}: ${e.message}`));
    });
    sock.once('secureConnect', () => {
      clearTimeout(timer);
      let c: DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
      const seen = new Set<string>();
      let found: string | undefined;
      while (c?.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        if (createHash('sha256').update(c.raw).digest('hex') === pin) {
          found = new X509Certificate(c.raw).toString();
          break;
        }
        c = c.issuerCertificate;
      }
      sock.end();
      if (!found) reject(fail('CA_MISMATCH', `the master at ${master} does not hold the CA this token was made for`));
      else resolvePromise(found);
    });
  });
}

/**
 * Refuses to enroll into a state dir that holds an identity (agent.json with a certificate)
 * unless `force`, and always while an agent runs on it — before the token is spent.
 * @throws SpokeError IDENTITY_EXISTS, STATE_DIR_LOCKED
 */
export function checkEnrollTarget(stateDir: string, force: boolean): void {
  const dir = resolve(stateDir);
  const pid = stateDirHolder(dir, 'agent');
  if (pid !== undefined) {
    throw fail('STATE_DIR_LOCKED', `an agent (pid ${pid}) is running on ${dir}; stop it before enrolling into its state dir`, { pid });
  }
  const files = identityFiles(dir);
  if (force || !existsSync(files.cert)) return;
  let who = 'an agent';
  try {
    const cfg = JSON.parse(readFileSync(files.config, 'utf8')) as { server?: string; cluster?: string; master?: string };
    who = `${cfg.server ?? '?'}${cfg.cluster ? ` (cluster ${cfg.cluster})` : ''}, enrolled with ${cfg.master ?? '?'}`;
  } catch {
    // a certificate without a readable agent.json is still an identity
  }
  throw fail(
    'IDENTITY_EXISTS',
    `${dir} already holds the identity of ${who}; enrolling would replace it. Use another --state-dir, or --force to replace it (the old identity stops working)`,
  );
}

/** Enrolls this host. @throws SpokeError TOKEN_*, CA_MISMATCH, MASTER_UNREACHABLE, CONFIG_INVALID, IDENTITY_EXISTS, STATE_DIR_LOCKED */
export async function enroll(input: { master: string; token: string; stateDir: string; roots?: string[]; force?: boolean }): Promise<EnrollResult> {
  const m = TOKEN_RE.exec(input.token.trim());
  if (!m) throw fail('TOKEN_INVALID', 'the enrollment token is malformed (expected spoke1.<secret>.<ca-fingerprint>)');
  checkEnrollTarget(input.stateDir, input.force === true);
  const roots = checkRoots(input.roots ?? DEFAULT_ROOTS);
  const caPem = await fetchPinnedCA(input.master, m[1] as string);
  const stateDir = resolve(input.stateDir);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const files = identityFiles(stateDir);
  const { csrPem, keyPem } = await createCsr('spoke-agent');
  const client = new wire.AgentClient(grpcTarget(input.master), clientTls(caPem), channelOptions());
  try {
    const res = await new Promise<wire.EnrollResponse>((ok, ko) => {
      client.enroll({ token: input.token.trim(), csrPem }, new Metadata(), { deadline: Date.now() + 30_000 }, (err, r) => (err ? ko(err) : ok(r)));
    }).catch((e: unknown) => {
      throw fromServiceError(e);
    });
    // Write the key first (0600), then the cert; rename so a crash never leaves half a file.
    const put = (file: string, data: string, mode: number) => {
      writeFileSync(`${file}.tmp`, data, { mode });
      renameSync(`${file}.tmp`, file);
    };
    put(files.key, keyPem, 0o600);
    put(files.ca, res.caPem, 0o644);
    put(files.cert, res.certPem, 0o644);
    writeAgentConfig(stateDir, { master: input.master, server: res.server, cluster: res.cluster, roots });
    return { server: res.server, cluster: res.cluster, stateDir };
  } finally {
    client.close();
  }
}
