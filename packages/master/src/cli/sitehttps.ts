/**
 * `spoke site https DOMAIN on|off [--acme | --self-signed | --cert FILE --key FILE] [--redirect]
 * [--hsts]`, and the HTTPS column and lines of `site ls`, `site show` and `spoke status`. The
 * operator's certificate and key are read here and sent once over the CLI's connection; the
 * master checks them before anything is queued.
 */
import { readFileSync } from 'node:fs';
import { fail, type wire } from '@spoke/shared/client';
import { UsageError, taskCommand, type Command } from './command.js';

function readPem(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw fail('INVALID_ARGUMENT', `${flag} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** `spoke site https`. */
export const siteHttpsCommands: Record<string, Command> = {
  'site https': taskCommand({
    usage: 'site https DOMAIN on|off [--acme | --self-signed | --cert FILE --key FILE] [--redirect] [--hsts] [--no-wait]',
    summary:
      'serve a site over HTTPS: an ACME certificate (default when the master has --acme-directory), your own (checked first) or a self-signed one; --redirect sends http to https, --hsts adds Strict-Transport-Security',
    options: {
      acme: { type: 'boolean' },
      'self-signed': { type: 'boolean' },
      cert: { type: 'string' },
      key: { type: 'string' },
      redirect: { type: 'boolean' },
      hsts: { type: 'boolean' },
    },
    args: [2, 2],
    start(ctx, [domain, state], o) {
      if (state !== 'on' && state !== 'off') throw new UsageError(`site https ${domain} ${state}: say on or off`);
      const cert = o.cert as string | undefined;
      const key = o.key as string | undefined;
      const picked = [o.acme === true, o['self-signed'] === true, cert !== undefined || key !== undefined].filter(Boolean).length;
      if (picked > 1) throw new UsageError('choose one of --acme, --self-signed, --cert FILE --key FILE');
      if ((cert === undefined) !== (key === undefined)) throw new UsageError('an operator certificate needs both --cert FILE and --key FILE');
      const source = o.acme === true ? 'acme' : o['self-signed'] === true ? 'self-signed' : cert ? 'operator' : '';
      return ctx.api().call('setSiteHttps', {
        domain,
        on: state === 'on',
        source,
        certPem: cert ? readPem('--cert', cert) : '',
        keyPem: key ? readPem('--key', key) : '',
        redirect: o.redirect === true,
        hsts: o.hsts === true,
      });
    },
  }),
};

function day(ms: number): string {
  return ms ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : '-';
}

/** The HTTPS column of `site ls`: off, the source and until when, or FAILING. */
export function httpsColumn(s: wire.Site): string {
  const h = s.https;
  if (!h || !h.enabled) return '-';
  if (h.failures > 0) return `FAILING ${h.failures}x`;
  return `${h.kind || h.source} until ${day(h.notAfterMs).slice(0, 10)}`;
}

/** The HTTPS lines of `site show`: settings, then each name with the certificate that serves it. */
export function httpsLines(s: wire.Site): [string, string][] {
  const h = s.https;
  if (!h) return [['https', 'off (spoke site https DOMAIN on)']];
  const lines: [string, string][] = [
    ['https', h.enabled ? `on (${h.source}${h.redirect ? ', http redirects to https' : ''}${h.hsts ? ', HSTS' : ''})` : 'off (a certificate is kept)'],
  ];
  if (!h.enabled) return lines;
  const renews = h.renewAtMs ? day(h.renewAtMs) : 'not renewed by Spoke (operator certificate)';
  for (const name of [s.domain, ...s.aliases]) {
    const covered = !h.uncovered.includes(name);
    lines.push([
      `certificate ${name}`,
      covered
        ? `${h.kind}, issuer ${h.issuer}, names ${h.names.join(' ')}, not after ${day(h.notAfterMs)}, renews ${renews}`
        : h.source === 'operator'
          ? `NOT COVERED by the operator certificate (browsers warn; install one that covers it: spoke site https ${s.domain} on --cert FILE --key FILE)`
          : 'NOT COVERED yet (a new certificate is ordered at the next renewer tick)',
    ]);
  }
  if (h.failures > 0)
    lines.push(['https renewal', `FAILING ${h.failures}x: ${h.lastError}; next attempt ${day(h.nextAttemptMs)} (the certificate in use stays)`]);
  return lines;
}

/** The HTTPS part of `site show -o json`. */
export function httpsJson(s: wire.Site) {
  const h = s.https;
  if (!h) return null;
  return {
    enabled: h.enabled,
    source: h.source,
    redirect: h.redirect,
    hsts: h.hsts,
    certificate: h.kind || null,
    issuer: h.issuer || null,
    names: h.names,
    notAfter: h.notAfterMs ? new Date(h.notAfterMs).toISOString() : null,
    renewAt: h.renewAtMs ? new Date(h.renewAtMs).toISOString() : null,
    failures: h.failures,
    lastError: h.lastError || null,
    nextAttempt: h.nextAttemptMs ? new Date(h.nextAttemptMs).toISOString() : null,
    uncovered: h.uncovered,
  };
}

/** The HTTPS lines of `spoke status`. */
export function statusHttpsLines(s: wire.MasterStatus): [string, string][] {
  return [
    ['acme', s.acmeDirectory || 'not configured (spoke-master --acme-directory URL)'],
    ...s.httpsFailing.map((l): [string, string] => ['HTTPS FAILING', l]),
  ];
}
