import { describe, expect, it } from 'vitest';
import type { wire } from '@spoke/shared';
import type { OperatorApi, OperatorRequest, OperatorResponse, OperatorUnary } from './client.js';

// Checked by `pnpm typecheck` (tsc -b includes this file): each @ts-expect-error must meet an
// error, or the typecheck fails.
function wrongPairsDoNotCompile(api: OperatorApi): unknown[] {
  return [
    // @ts-expect-error getSite takes a NameRequest
    api.call('getSite', { platform: 'x' }),
    // @ts-expect-error status answers a MasterStatus, not a Task
    api.call('status', {}) as Promise<wire.Task>,
    // @ts-expect-error watchTask is a stream, not a unary call
    api.call('watchTask', { id: 1, fromSeq: 0 }),
  ];
}

describe('OperatorApi.call types', () => {
  it("take each method's request and response from the generated service", () => {
    const req: OperatorRequest<'installSite'> = {
      domain: 'a.test',
      platform: 'p',
      dbServer: '',
      aliases: [],
      title: '',
      adminUser: '',
      adminEmail: '',
      redirectAliases: false,
      profile: '',
      locale: '',
      cronInterval: '',
      https: false,
    };
    const res = { task: undefined, adminPassword: 'x' } satisfies Partial<OperatorResponse<'installSite'>>;
    const m: OperatorUnary = 'siteLoginUrl';
    expect([req.domain, res.adminPassword, m, typeof wrongPairsDoNotCompile]).toEqual(['a.test', 'x', 'siteLoginUrl', 'function']);
  });
});
