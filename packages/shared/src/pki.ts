/**
 * PKI helpers (ECDSA P-256, @peculiar/x509 over Node's WebCrypto). The master is a CA; agents and
 * operators get certificates whose common name is their identity and whose OU is their role.
 */
import 'reflect-metadata';
import { createHash, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { fail } from './errors.js';
import { MASTER_TLS_NAME } from './tlsname.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG: EcKeyGenParams & EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY_MS = 86_400_000;

/** The roles a client certificate can carry (its subject OU). */
export type CertRole = 'agent' | 'operator' | 'master';

/** A PEM certificate with its PKCS#8 PEM private key. */
export interface KeyPair {
  certPem: string;
  keyPem: string;
}

export { MASTER_TLS_NAME };

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function pemToKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decode(pem)[0];
  if (!der) throw fail('CONFIG_INVALID', 'private key PEM is empty');
  return webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign']);
}

function serial(): string {
  // Positive 16-byte serial number.
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0] ?? 0) & 0x7f;
  return Buffer.from(b).toString('hex');
}

function dnEscape(v: string): string {
  return v.replace(/([,+"\\<>;=])/g, '\\$1');
}

/** Creates a self-signed CA valid for `years` (default 10). */
export async function createCA(commonName = 'Spoke CA', years = 10): Promise<KeyPair> {
  const keys = await newKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${dnEscape(commonName)}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + years * 365 * DAY_MS),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

/** Creates a new private key and a CSR for `commonName`. The key never leaves the caller. */
export async function createCsr(commonName: string): Promise<{ csrPem: string; keyPem: string }> {
  const keys = await newKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${dnEscape(commonName)}`,
    keys,
    signingAlgorithm: ALG,
  });
  return { csrPem: csr.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

/** What to put in a certificate signed by the CA. */
export interface IssueOptions {
  commonName: string;
  role: CertRole;
  /** Validity in days (default 825). */
  days?: number;
  /** DNS names and IPs for a server certificate. */
  dnsNames?: string[];
  ips?: string[];
}

/**
 * Signs a CSR with the CA. The subject is set by the CA (never taken from the CSR), so an agent
 * cannot ask for another identity.
 * @throws SpokeError CSR_INVALID when the CSR does not parse or its signature is wrong
 */
export async function signCsr(ca: KeyPair, csrPem: string, opts: IssueOptions): Promise<string> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch {
    throw fail('CSR_INVALID', 'the certificate request does not parse as PEM PKCS#10');
  }
  if (!(await csr.verify())) throw fail('CSR_INVALID', 'the certificate request signature is not valid');
  const publicKey = await csr.publicKey.export(ALG, ['verify']);
  return issue(ca, publicKey, opts);
}

/** Issues a certificate for a key pair generated here (used for the master's own TLS cert). */
export async function issueKeyPair(ca: KeyPair, opts: IssueOptions): Promise<KeyPair> {
  const keys = await newKeys();
  const certPem = await issue(ca, keys.publicKey, opts);
  return { certPem, keyPem: await keyToPem(keys.privateKey) };
}

async function issue(ca: KeyPair, publicKey: CryptoKey, opts: IssueOptions): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await pemToKey(ca.keyPem);
  const now = Date.now();
  const san: x509.JsonGeneralName[] = [
    ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const usages = opts.role === 'master' ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth] : [x509.ExtendedKeyUsage.clientAuth];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension(usages, false),
    await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
  ];
  if (san.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(san, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${dnEscape(opts.commonName)}, OU=${opts.role}`,
    issuer: caCert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (opts.days ?? 825) * DAY_MS),
    signingAlgorithm: ALG,
    publicKey,
    signingKey: caKey,
    extensions,
  });
  return cert.toString('pem');
}

/** SHA-256 of a certificate's DER, lowercase hex. */
export function certFingerprint(certPemOrDer: string | Buffer): string {
  const der = typeof certPemOrDer === 'string' ? new X509Certificate(certPemOrDer).raw : certPemOrDer;
  return createHash('sha256').update(der).digest('hex');
}

/** Identity read from a certificate: common name, role (OU), expiry. */
export interface CertIdentity {
  commonName: string;
  role: string;
  notAfter: Date;
  fingerprint: string;
}

/** Reads the identity of a PEM certificate. */
export function certIdentity(certPem: string): CertIdentity {
  const c = new X509Certificate(certPem);
  const field = (k: string) =>
    c.subject
      .split('\n')
      .find((l) => l.startsWith(`${k}=`))
      ?.slice(k.length + 1) ?? '';
  return {
    commonName: field('CN'),
    role: field('OU'),
    notAfter: new Date(c.validTo),
    fingerprint: certFingerprint(c.raw),
  };
}
