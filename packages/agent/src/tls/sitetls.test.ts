/**
 * The agent's certificate store and challenge files: pairs 0600 in a 0700 dir named by their
 * content, pruned to the one in use; challenge answers checked (token, key authorization) and
 * kept inside the challenge dir.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@spoke/shared';
import { SiteTlsStore } from './sitetls.js';
import { code } from '../testutil.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-sitetls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pair(cn: string): { cert: string; key: string } {
  const k = join(dir, `${cn}.key`);
  const c = join(dir, `${cn}.crt`);
  const r = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${cn}`, '-keyout', k, '-out', c],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  return { cert: readFileSync(c, 'utf8'), key: readFileSync(k, 'utf8') };
}

const store = new SiteTlsStore({ stateDir: join(dir, 'state'), acmeDir: join(dir, 'acme'), log: silentLogger() });

describe('site certificates on the agent', () => {
  it('writes a pair 0600 in a 0700 dir, the same pair under the same names, and prunes the others', () => {
    const a = pair('a.test');
    const b = pair('b.test');
    const pa = store.write('a.test', a.cert, a.key);
    expect(store.write('a.test', a.cert, a.key)).toEqual(pa);
    const pb = store.write('a.test', b.cert, b.key);
    expect(pb.cert).not.toBe(pa.cert);
    for (const p of [pa.cert, pa.key, pb.key]) expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'state', 'tls', 'a.test')).mode & 0o777).toBe(0o700);
    expect(readFileSync(pb.key, 'utf8')).toBe(b.key.trim() + '\n');
    expect(store.prune('a.test', pb).sort()).toEqual([pa.cert, pa.key].sort());
    expect(readdirSync(join(dir, 'state', 'tls', 'a.test')).sort()).toEqual([pb.cert, pb.key].map((p) => p.split('/').pop()).sort());
    store.prune('a.test', null);
    expect(existsSync(join(dir, 'state', 'tls', 'a.test'))).toBe(false);
  });

  it('refuses what is not PEM, and a hostile domain', () => {
    const a = pair('c.test');
    expect(code(() => store.write('c.test', 'x', a.key))).toBe('CERT_INVALID');
    expect(code(() => store.write('c.test', a.cert, `${a.key}\nssl_certificate /etc/shadow;`))).toBe('CERT_INVALID');
    expect(code(() => store.write('../../etc', a.cert, a.key))).toBe('INVALID_DOMAIN');
  });

  it('puts a challenge answer 0644 in the challenge dir and removes it; a bad token or answer is refused', () => {
    const token = 'A'.repeat(43);
    const path = store.challenge(token, `${token}.${'b'.repeat(43)}`, false);
    expect(path).toBe(join(dir, 'acme', token));
    expect(readFileSync(path, 'utf8')).toBe(`${token}.${'b'.repeat(43)}`);
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(statSync(join(dir, 'acme')).mode & 0o777).toBe(0o755);
    store.challenge(token, '', true);
    expect(existsSync(path)).toBe(false);
    expect(code(() => store.challenge('../../etc/passwd-xxxxxxxx', 'x', false))).toBe('INVALID_ARGUMENT');
    expect(code(() => store.challenge(token, `other.${'b'.repeat(43)}`, false))).toBe('INVALID_ARGUMENT');
  });
});
