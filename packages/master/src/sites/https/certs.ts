/**
 * Site certificates: reading a PEM chain, checking an operator's certificate before it is used
 * (the key matches, the names cover the site, it is valid now, the chain is complete and in
 * order), making a self-signed one, and when a certificate renews. @peculiar/x509 over Node's
 * WebCrypto (as the CA in shared/pki.ts); the key match through Node's X509Certificate.
 */
import 'reflect-metadata';
import { X509Certificate as NodeX509, createPrivateKey, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { fail } from '@spoke/shared';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const DAY_MS = 86_400_000;

/** What a certificate says, as `site show` prints it. */
export interface CertInfo {
  /** Issuer and subject, as RFC 4514 strings. */
  issuer: string;
  subject: string;
  /** DNS names of the subjectAltName (the CN when there is none). */
  names: string[];
  notBeforeMs: number;
  notAfterMs: number;
  /** SHA-256 of the leaf, hex. */
  fingerprint: string;
  /** The leaf signed itself. */
  selfSigned: boolean;
  /** Certificates in the PEM (leaf + chain). */
  chainLength: number;
}

/** The PEM blocks of a chain, leaf first. @throws SpokeError CERT_INVALID */
export function splitChain(pem: string): string[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw fail('CERT_INVALID', 'no PEM certificate found (expected -----BEGIN CERTIFICATE----- blocks, leaf first)');
  return blocks;
}

function parse(pem: string, what: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(pem);
  } catch (e) {
    throw fail('CERT_INVALID', `${what} is not a readable X.509 certificate: ${(e as Error).message}`);
  }
}

function dnsNames(c: x509.X509Certificate): string[] {
  const san = c.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san ? san.names.items.filter((n) => n.type === 'dns').map((n) => n.value.toLowerCase()) : [];
  if (names.length) return names;
  const cn = /(?:^|,\s*)CN=([^,]+)/.exec(c.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}

/** Reads the leaf of a PEM chain. @throws SpokeError CERT_INVALID */
export async function inspectChain(pem: string): Promise<CertInfo> {
  const blocks = splitChain(pem);
  const leaf = parse(blocks[0] as string, 'the first certificate');
  const selfSigned = leaf.subject === leaf.issuer && (await leaf.verify({ publicKey: leaf.publicKey, signatureOnly: true }).catch(() => false));
  return {
    issuer: leaf.issuer,
    subject: leaf.subject,
    names: dnsNames(leaf),
    notBeforeMs: leaf.notBefore.getTime(),
    notAfterMs: leaf.notAfter.getTime(),
    fingerprint: Buffer.from(await leaf.getThumbprint('SHA-256')).toString('hex'),
    selfSigned,
    chainLength: blocks.length,
  };
}

/** Whether a certificate name covers a host: the same name, or `*.rest` for one more label. */
export function nameCovers(certName: string, host: string): boolean {
  if (certName === host) return true;
  if (!certName.startsWith('*.')) return false;
  const dot = host.indexOf('.');
  return dot > 0 && host.slice(dot + 1) === certName.slice(2);
}

/** The hosts no name of the certificate covers. */
export function uncovered(certNames: readonly string[], hosts: readonly string[]): string[] {
  return hosts.filter((h) => !certNames.some((n) => nameCovers(n, h)));
}

/**
 * Checks an operator's certificate for a site before anything is stored: the chain parses, the
 * key is the leaf's, the names cover `hosts` (the domain and every alias), it is valid at `nowMs`,
 * and each certificate is signed by the next one (a leaf alone must be self-signed: its issuer's
 * certificate belongs in the file).
 * @throws SpokeError CERT_INVALID, CERT_KEY_MISMATCH, CERT_NAMES_MISMATCH, CERT_EXPIRED, CERT_CHAIN_INCOMPLETE
 */
export async function checkCertificate(input: { certPem: string; keyPem: string; hosts: readonly string[]; nowMs: number }): Promise<CertInfo> {
  const blocks = splitChain(input.certPem);
  const certs = blocks.map((b, i) => parse(b, i === 0 ? 'the first certificate' : `certificate ${i + 1} of the chain`));
  const info = await inspectChain(input.certPem);
  let key;
  try {
    key = createPrivateKey(input.keyPem);
  } catch (e) {
    throw fail('CERT_INVALID', `the key is not a readable PEM private key: ${(e as Error).message}`);
  }
  if (!new NodeX509(blocks[0] as string).checkPrivateKey(key)) {
    throw fail(
      'CERT_KEY_MISMATCH',
      `the key does not belong to the certificate for ${info.names.join(', ') || info.subject}; give the key the certificate was issued for`,
    );
  }
  const missing = uncovered(info.names, input.hosts);
  if (missing.length) {
    throw fail(
      'CERT_NAMES_MISMATCH',
      `the certificate covers ${info.names.join(', ') || 'no DNS name'}, not ${missing.join(', ')}; get one for every name of the site (or remove the alias first)`,
    );
  }
  if (input.nowMs >= info.notAfterMs) throw fail('CERT_EXPIRED', `the certificate expired on ${new Date(info.notAfterMs).toISOString()}; renew it first`);
  if (input.nowMs < info.notBeforeMs) throw fail('CERT_INVALID', `the certificate is not valid before ${new Date(info.notBeforeMs).toISOString()}`);
  for (let i = 0; i + 1 < certs.length; i++) {
    const c = certs[i] as x509.X509Certificate;
    const up = certs[i + 1] as x509.X509Certificate;
    const signed = c.issuer === up.subject && (await c.verify({ publicKey: up.publicKey, signatureOnly: true }).catch(() => false));
    if (!signed) {
      throw fail(
        'CERT_CHAIN_INCOMPLETE',
        `certificate ${i + 1} (${c.subject}) is not signed by certificate ${i + 2} (${up.subject}); put the chain in order, leaf first, then each issuer`,
      );
    }
  }
  const last = certs[certs.length - 1] as x509.X509Certificate;
  if (certs.length === 1 && !info.selfSigned) {
    throw fail(
      'CERT_CHAIN_INCOMPLETE',
      `the file holds only the leaf, issued by ${last.issuer}; append the issuer's certificate (the intermediate chain) after it`,
    );
  }
  return info;
}

/** Makes a self-signed certificate for `hosts` (ECDSA P-256, valid 90 days from `nowMs`). */
export async function selfSigned(hosts: readonly string[], nowMs: number): Promise<{ certPem: string; keyPem: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const serial = Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)));
  serial[0] = (serial[0] ?? 0) & 0x7f;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: `CN=${hosts[0] ?? 'spoke'}`,
    notBefore: new Date(nowMs - 60_000),
    notAfter: new Date(nowMs + 90 * DAY_MS),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({ type: 'dns' as const, value: h }))),
    ],
  });
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem'), keyPem: x509.PemConverter.encode(der, 'PRIVATE KEY') };
}

/**
 * When a certificate is renewed: at 2/3 of its lifetime, or 30 days before not-after, whichever
 * comes first (a 90-day certificate: day 60; a 1-year one: day 243; a 40-day one: day 10).
 */
export function renewAt(notBeforeMs: number, notAfterMs: number): number {
  return Math.min(notBeforeMs + Math.floor(((notAfterMs - notBeforeMs) * 2) / 3), notAfterMs - 30 * DAY_MS);
}

/** How long to wait after `failures` failed renewals in a row: 1 h, doubling, at most 24 h. */
export function retryDelayMs(failures: number): number {
  return Math.min(3_600_000 * 2 ** Math.max(0, failures - 1), DAY_MS);
}
