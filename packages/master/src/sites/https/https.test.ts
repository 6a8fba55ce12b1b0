/**
 * HTTPS on the master without agents: the operator certificate checks (real certificates from
 * the shared CA helpers and self-signed ones), the renew time and backoff, the refusals of
 * `site https` (nothing stored, nothing queued), and the renewer's choice of due sites over a
 * real in-memory store with a fake clock.
 */
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createCA, issueKeyPair, silentLogger, type SpokeError } from '@spoke/shared';
import { addAgent, siteTasksHarness, snapshot } from '../../testutil.js';
import { checkCertificate, inspectChain, nameCovers, renewAt, retryDelayMs, selfSigned } from './certs.js';
import { SiteHttps } from './https.js';
import { HttpsStore, type HttpsRecord } from './store.js';

const DAY = 86_400_000;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function refusedAsync(p: Promise<unknown>): Promise<SpokeError> {
  try {
    await p;
  } catch (e) {
    return e as SpokeError;
  }
  throw new Error('expected a refusal');
}

async function operatorChain(names: string[]) {
  const ca = await createCA('Operator Test CA');
  const leaf = await issueKeyPair(ca, { commonName: names[0] as string, role: 'master', dnsNames: names, days: 30 });
  return { ca, leaf, chain: leaf.certPem + ca.certPem };
}

describe('operator certificates are checked before use', () => {
  it('accepts a chain whose key, names, dates and order fit', async () => {
    const { leaf, chain } = await operatorChain(['a.test', 'www.a.test']);
    const info = await checkCertificate({ certPem: chain, keyPem: leaf.keyPem, hosts: ['a.test', 'www.a.test'], nowMs: Date.now() });
    expect(info).toMatchObject({ names: ['a.test', 'www.a.test'], chainLength: 2, selfSigned: false });
    expect(info.issuer).toContain('Operator Test CA');
  });

  it('refuses a key of another, a name not covered, an expired one, a leaf alone, the chain out of order, garbage', async () => {
    const { ca, leaf, chain } = await operatorChain(['a.test', 'www.a.test']);
    const other = await issueKeyPair(ca, { commonName: 'a.test', role: 'master', dnsNames: ['a.test'] });
    const now = Date.now();
    const check = (o: Partial<Parameters<typeof checkCertificate>[0]>) =>
      refusedAsync(checkCertificate({ certPem: chain, keyPem: leaf.keyPem, hosts: ['a.test'], nowMs: now, ...o }));
    const key = await check({ keyPem: other.keyPem });
    expect([key.code, key.message]).toEqual([
      'CERT_KEY_MISMATCH',
      'the key does not belong to the certificate for a.test, www.a.test; give the key the certificate was issued for',
    ]);
    const names = await check({ hosts: ['a.test', 'shop.a.test'] });
    expect([names.code, names.message]).toEqual([
      'CERT_NAMES_MISMATCH',
      'the certificate covers a.test, www.a.test, not shop.a.test; get one for every name of the site (or remove the alias first)',
    ]);
    expect((await check({ nowMs: now + 40 * DAY })).code).toBe('CERT_EXPIRED');
    const alone = await check({ certPem: leaf.certPem });
    expect(alone.code).toBe('CERT_CHAIN_INCOMPLETE');
    expect(alone.message).toMatch(/^the file holds only the leaf, issued by CN=Operator Test CA; append the issuer's certificate/);
    const otherCa = await createCA('Someone Else');
    expect((await check({ certPem: leaf.certPem + otherCa.certPem })).code).toBe('CERT_CHAIN_INCOMPLETE');
    expect((await check({ certPem: 'not a certificate' })).code).toBe('CERT_INVALID');
    expect((await check({ keyPem: 'not a key' })).code).toBe('CERT_INVALID');
  });

  it('a self-signed certificate covers its names and passes the checks alone', async () => {
    const now = Date.now();
    const s = await selfSigned(['a.test', 'www.a.test'], now);
    const info = await checkCertificate({ certPem: s.certPem, keyPem: s.keyPem, hosts: ['a.test', 'www.a.test'], nowMs: now });
    expect(info).toMatchObject({ selfSigned: true, names: ['a.test', 'www.a.test'], chainLength: 1 });
    expect(info.notAfterMs - info.notBeforeMs).toBe(90 * DAY + 60_000);
  });

  it('wildcards cover one label', () => {
    expect(nameCovers('*.a.test', 'www.a.test')).toBe(true);
    expect(nameCovers('*.a.test', 'a.test')).toBe(false);
    expect(nameCovers('*.a.test', 'x.www.a.test')).toBe(false);
  });
});

describe('renewal timing', () => {
  it('renews at 2/3 of the lifetime or 30 days before not-after, whichever is first', () => {
    expect(renewAt(0, 90 * DAY)).toBe(60 * DAY);
    expect(renewAt(0, 365 * DAY)).toBe(Math.floor((365 * DAY * 2) / 3));
    expect(renewAt(0, 40 * DAY)).toBe(10 * DAY);
    expect(renewAt(0, 1825 * DAY)).toBe(Math.floor((1825 * DAY * 2) / 3));
  });
  it('backs off 1 h, doubling, up to a day', () => {
    expect([1, 2, 3, 4, 5, 6, 10].map((n) => retryDelayMs(n) / 3_600_000)).toEqual([1, 2, 4, 8, 16, 24, 24]);
  });
});

function setup(opts: { acme?: boolean } = {}) {
  const h = siteTasksHarness('spoke-https-');
  dirs.push(h.root);
  addAgent(h.ns, 'web1');
  h.ns.addPlatform({ name: 'wp', path: '/var/www/wp', server: 'web1', source: { kind: 'existing' } });
  h.ns.setRegistry('wp', JSON.stringify({ kind: 'wordpress', coreVersion: '6.1', sites: [] }));
  h.ns.createSite({ domain: 'a.test', platform: 'wp', status: 'installed', aliases: ['www.a.test'] });
  const store = new HttpsStore({ db: h.db, dir: join(h.root, 'tls') });
  const acme = opts.acme ? ({ directoryUrl: 'https://acme.test/dir', issue: async () => ({ certPem: '', keyPem: '' }) } as never) : null;
  const https = new SiteHttps({ sites: h.sites.ops, tasks: h.tasks, db: h.db, store, acme, clock: () => h.now.ms, log: silentLogger() });
  return { ...h, store, https };
}

function row(over: Partial<HttpsRecord> = {}): HttpsRecord {
  return {
    domain: 'a.test',
    enabled: true,
    source: 'acme',
    redirect: false,
    hsts: false,
    certId: 'abcdefabcdefabcdefabcdef',
    certKind: 'acme',
    issuer: 'CN=Test',
    names: ['a.test', 'www.a.test'],
    notBeforeMs: 0,
    notAfterMs: 0,
    renewAtMs: 0,
    failures: 0,
    lastError: '',
    nextAttemptMs: 0,
    ...over,
  };
}

describe('site https refusals change nothing', () => {
  it('a mismatched operator key, acme without a directory, off with a certificate, an alias for the domain', async () => {
    const h = setup();
    const before = snapshot(h.db);
    const { leaf, chain } = await operatorChain(['a.test', 'www.a.test']);
    const other = await selfSigned(['a.test', 'www.a.test'], h.now.ms);
    const bad = await refusedAsync(h.https.set({ domain: 'a.test', on: true, certPem: chain, keyPem: other.keyPem }));
    expect(bad.code).toBe('CERT_KEY_MISMATCH');
    expect((await refusedAsync(h.https.set({ domain: 'a.test', on: true, source: 'acme' }))).code).toBe('ACME_NOT_CONFIGURED');
    expect((await refusedAsync(h.https.set({ domain: 'a.test', on: false, certPem: chain, keyPem: leaf.keyPem }))).code).toBe('INVALID_ARGUMENT');
    expect((await refusedAsync(h.https.set({ domain: 'www.a.test', on: true }))).code).toBe('SITE_NOT_FOUND');
    expect((await refusedAsync(h.https.set({ domain: 'a.test', on: true, certPem: chain }))).code).toBe('INVALID_ARGUMENT');
    expect(snapshot(h.db)).toEqual(before);
    expect(h.store.list()).toEqual([]);
  });

  it('a good operator certificate is stored 0600 and the task carries only its id', async () => {
    const h = setup();
    h.now.ms = Date.now();
    const { leaf, chain } = await operatorChain(['a.test', 'www.a.test']);
    const t = await h.https.set({ domain: 'a.test', on: true, certPem: chain, keyPem: leaf.keyPem, redirect: true });
    expect(t).toMatchObject({
      kind: 'site.https',
      entity: 'site:a.test',
      params: { domain: 'a.test', on: true, source: 'operator', redirect: true, hsts: false },
    });
    expect(JSON.stringify(t.params)).not.toMatch(/PRIVATE KEY|BEGIN/);
    const id = String(t.params.certId);
    expect(h.store.pair('a.test', id)).toEqual({ certPem: chain, keyPem: leaf.keyPem });
    expect((await inspectChain(h.store.pair('a.test', id).certPem)).names).toEqual(['a.test', 'www.a.test']);
    expect(statSync(join(h.root, 'tls', 'a.test', `${id}.key`)).mode & 0o777).toBe(0o600);
    expect(statSync(join(h.root, 'tls', 'a.test')).mode & 0o777).toBe(0o700);
  });
});

describe('a name the certificate does not cover', () => {
  it('is a note only when HTTPS serves a certificate without it; an operator certificate says how to replace it', () => {
    const h = setup({ acme: true });
    expect(h.https.coverageNote('a.test', 'shop.a.test')).toBeNull(); // no HTTPS
    h.store.put(row());
    expect(h.https.coverageNote('a.test', 'www.a.test')).toBeNull();
    expect(h.https.coverageNote('a.test', 'shop.a.test')).toMatch(/^the certificate of a\.test does not cover shop\.a\.test yet: the renewer orders one/);
    h.store.put(row({ source: 'operator', certKind: 'operator', names: ['a.test', '*.a.test'] }));
    expect(h.https.coverageNote('a.test', 'shop.a.test')).toBeNull(); // the wildcard covers it
    expect(h.https.coverageNote('a.test', 'x.shop.a.test')).toMatch(
      /^the operator certificate of a\.test \(names a\.test \*\.a\.test\) does not cover x\.shop\.a\.test: .*--cert FILE --key FILE$/,
    );
    h.store.put(row({ enabled: false }));
    expect(h.https.coverageNote('a.test', 'shop.a.test')).toBeNull();
  });
});

describe('the renewer', () => {
  it('is due at its renew time, for a name not covered, for a stand-in; waits after a failure; never for an operator certificate or a busy site', () => {
    const h = setup({ acme: true });
    const now = h.now.ms;
    const due = (busy: string[] = []) => h.https.due(h.now.ms, new Set(busy));
    h.store.put(row({ renewAtMs: now + DAY, notAfterMs: now + 30 * DAY }));
    expect(due()).toEqual([]);
    h.now.ms = now + DAY;
    expect(due()).toEqual(['a.test']);
    expect(due(['a.test'])).toEqual([]);
    h.now.ms = now;
    h.store.recordFailure('a.test', 'ACME_FAILED: down', now + DAY + 2 * 3_600_000);
    h.now.ms = now + DAY;
    expect(due()).toEqual([]);
    h.now.ms = now + DAY + 3 * 3_600_000;
    expect(due()).toEqual(['a.test']);
    expect(h.store.get('a.test')).toMatchObject({ failures: 1, lastError: 'ACME_FAILED: down' });
    h.now.ms = now;
    h.store.put(row({ renewAtMs: now + DAY, names: ['a.test'] }));
    expect(due()).toEqual(['a.test']); // www.a.test not covered
    h.store.put(row({ renewAtMs: now + DAY, certKind: 'self-signed' }));
    expect(due()).toEqual(['a.test']); // the self-signed stand-in of an ACME site
    h.store.put(row({ source: 'operator', certKind: 'operator', renewAtMs: 0, names: ['a.test'] }));
    expect(due()).toEqual([]);
    h.store.put(row({ enabled: false, renewAtMs: now - DAY }));
    expect(due()).toEqual([]);
  });

  it('tick queues one renewal per due site, not a second while it is queued', () => {
    const h = setup({ acme: true });
    h.store.put(row({ renewAtMs: h.now.ms - 1 }));
    const first = h.https.tick();
    expect(first.map((t) => [t.kind, t.entity])).toEqual([['site.https.renew', 'site:a.test']]);
    expect(h.https.tick()).toEqual([]);
  });
});
