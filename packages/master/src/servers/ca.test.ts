import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { certIdentity, createCA, createCsr } from '@spoke/shared';
import { Enroller, loadOrCreateCA, parseToken } from './ca.js';
import { addAgent, expectRefused, freshNamespace } from '../testutil.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function setup() {
  const f = freshNamespace();
  const ca = await createCA();
  const enroller = new Enroller({ db: f.db, ns: f.ns, ca, clock: () => f.now.ms });
  return { ...f, ca, enroller };
}

describe('CA', () => {
  it('is created once, with its key 0600, and reloaded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-ca-'));
    dirs.push(dir);
    const a = await loadOrCreateCA(dir);
    expect(statSync(join(dir, 'pki/ca.key')).mode & 0o777).toBe(0o600);
    const b = await loadOrCreateCA(dir);
    expect(b.certPem).toBe(a.certPem);
  });
});

describe('enrollment tokens', () => {
  it('a token enrolls once; the certificate names the server, not what the CSR asked for', async () => {
    const { enroller, ns, db } = await setup();
    const { token } = enroller.createToken({ server: 'web-1' });
    expect(parseToken(token).caFingerprint).toBe(enroller.caFingerprint);
    const { csrPem } = await createCsr('i-want-to-be-master');
    const e = await enroller.enroll(token, csrPem);
    const id = certIdentity(e.certPem);
    expect(id).toMatchObject({ commonName: 'web-1', role: 'agent' });
    expect(ns.authenticateAgent('web-1', id.fingerprint).name).toBe('web-1');
    const again = await createCsr('x');
    await expect(enroller.enroll(token, again.csrPem)).rejects.toMatchObject({ code: 'TOKEN_USED' });
    expect(db.prepare('SELECT count(*) AS n FROM servers').get()).toEqual({ n: 1 });
  });

  it('an expired token is refused and creates nothing', async () => {
    const { enroller, now, ns } = await setup();
    const { token } = enroller.createToken({ server: 'web-1', ttlMs: 1000 });
    now.ms += 1001;
    const { csrPem } = await createCsr('x');
    await expect(enroller.enroll(token, csrPem)).rejects.toMatchObject({ code: 'TOKEN_EXPIRED' });
    expect(ns.hasServer('web-1')).toBe(false);
  });

  it('refuses unknown, malformed and foreign tokens', async () => {
    const { enroller } = await setup();
    const other = await setup();
    const { csrPem } = await createCsr('x');
    const foreign = other.enroller.createToken({ server: 'web-1' }).token;
    await expect(enroller.enroll(foreign, csrPem)).rejects.toMatchObject({ code: 'CA_MISMATCH' });
    await expect(enroller.enroll('nonsense', csrPem)).rejects.toMatchObject({ code: 'TOKEN_INVALID' });
    const forged = `spoke1.${'A'.repeat(43)}.${enroller.caFingerprint}`;
    await expect(enroller.enroll(forged, csrPem)).rejects.toMatchObject({ code: 'TOKEN_INVALID' });
  });

  it('refuses a broken CSR without using the token', async () => {
    const { enroller } = await setup();
    const { token } = enroller.createToken({ server: 'web-1' });
    await expect(enroller.enroll(token, '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----')).rejects.toMatchObject({
      code: 'CSR_INVALID',
    });
    const { csrPem } = await createCsr('x');
    expect((await enroller.enroll(token, csrPem)).server).toBe('web-1');
  });

  it('a cluster token creates the cluster and joins it', async () => {
    const { enroller, ns } = await setup();
    for (const name of ['w1', 'w2']) {
      const { token } = enroller.createToken({ server: name, cluster: 'web' });
      await enroller.enroll(token, (await createCsr(name)).csrPem);
    }
    expect(ns.getServer('web')).toMatchObject({ kind: 'cluster', members: ['w1', 'w2'] });
  });

  it('token rules: names, ttl, existing servers, --replace', async () => {
    const { enroller, db, ns } = await setup();
    addAgent(ns, 'a1');
    addAgent(ns, 'm1', 'web');
    expectRefused(db, 'INVALID_NAME', () => enroller.createToken({ server: 'Bad Name' }));
    expectRefused(db, 'INVALID_TTL', () => enroller.createToken({ server: 'x', ttlMs: 8 * 86_400_000 }));
    expectRefused(db, 'SERVER_EXISTS', () => enroller.createToken({ server: 'a1' }));
    expectRefused(db, 'SERVER_IS_CLUSTER', () => enroller.createToken({ server: 'web' }));
    expectRefused(db, 'SERVER_NOT_CLUSTER', () => enroller.createToken({ server: 'x', cluster: 'a1' }));
    expectRefused(db, 'INVALID_NAME', () => enroller.createToken({ server: 'same', cluster: 'same' }));
    const { token } = enroller.createToken({ server: 'a1', replace: true });
    const e = await enroller.enroll(token, (await createCsr('a1')).csrPem);
    expect(ns.authenticateAgent('a1', certIdentity(e.certPem).fingerprint).name).toBe('a1');
    expect(() => ns.authenticateAgent('a1', 'fp-a1')).toThrow(expect.objectContaining({ code: 'CERT_REVOKED' }));
  });
});
