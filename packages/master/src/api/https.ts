/**
 * HTTPS at the operator edge: `SetSiteHttpsRequest` → SetHttpsInput, and a site's HTTPS view →
 * `SiteHttps` (never the key).
 */
import { fail, type wire } from '@spoke/shared';
import type { Core } from '../core.js';
import type { SetHttpsInput } from '../sites/https/https.js';
import type { HttpsSource } from '../sites/https/store.js';

const SOURCES: readonly string[] = ['acme', 'operator', 'self-signed'];

/** The request as the domain takes it. @throws SpokeError INVALID_ARGUMENT */
export function httpsFromWire(req: wire.SetSiteHttpsRequest): SetHttpsInput {
  if (req.source && !SOURCES.includes(req.source)) throw fail('INVALID_ARGUMENT', `source ${JSON.stringify(req.source)}: use acme, operator or self-signed`);
  return {
    domain: req.domain,
    on: req.on,
    source: req.source as HttpsSource | '',
    certPem: req.certPem || undefined,
    keyPem: req.keyPem || undefined,
    redirect: req.redirect,
    hsts: req.hsts,
  };
}

/** Adds the site's HTTPS (when it was ever turned on) to its wire form. */
export function withHttps(core: Core, site: wire.Site, view: Core['https']['view'] = (d, n) => core.https.view(d, n)): wire.Site {
  const v = view(site.domain, [site.domain, ...site.aliases]);
  if (!v) return site;
  return {
    ...site,
    https: {
      enabled: v.enabled,
      source: v.source,
      redirect: v.redirect,
      hsts: v.hsts,
      kind: v.certKind,
      issuer: v.issuer,
      names: v.names,
      notAfterMs: v.notAfterMs,
      renewAtMs: v.renewAtMs,
      failures: v.failures,
      lastError: v.lastError,
      nextAttemptMs: v.nextAttemptMs,
      uncovered: v.uncovered,
    },
  };
}
