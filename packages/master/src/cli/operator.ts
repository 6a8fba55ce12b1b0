/**
 * `spoke status` (the master itself) and `spoke operator cert` (an operator certificate for using
 * the CLI over TCP).
 */
import { UsageError, kv, print, type Command } from './command.js';
import { parseDuration } from './format.js';
import { operatorJson, operatorTable } from './fleet.js';
import { statusHttpsLines } from './sitehttps.js';
import { healthLines } from './health.js';

/** `spoke status`. */
export const statusCommands: Record<string, Command> = {
  status: {
    usage: 'status',
    summary: 'show the master: address, CA fingerprint, counts, health (agents offline, tasks failing or stuck, cron failing)',
    args: [0, 0],
    async run(ctx) {
      const s = await ctx.api().call('status', {});
      print(
        ctx,
        { ...s, started: new Date(s.startedMs).toISOString() },
        () =>
          kv([
            ['version', s.version],
            ['listen', s.listen],
            ['state dir', s.stateDir],
            ['root', s.root || '/'],
            ['CA fingerprint', s.caFingerprint],
            ['started', new Date(s.startedMs).toISOString()],
            ['servers', `${s.servers} (${s.serversOnline} agents online)`],
            ['platforms', s.platforms],
            ['sites', s.sites],
            ['tasks', `${s.tasksRunning} running, ${s.tasksQueued} queued`],
            ...statusHttpsLines(s),
          ]) + healthLines(s),
      );
      return 0;
    },
  },
};

/** `spoke operator cert`. */
export const operatorCommands: Record<string, Command> = {
  'operator cert': {
    usage: 'operator cert NAME --out DIR [--ttl 365d]',
    summary: 'issue an operator certificate for using the CLI over TCP (--master, --cert-dir)',
    options: { out: { type: 'string' }, ttl: { type: 'string' } },
    args: [1, 1],
    async run(ctx, [name], o) {
      if (typeof o.out !== 'string') throw new UsageError('operator cert needs --out DIR');
      const ttl = typeof o.ttl === 'string' ? parseDuration(o.ttl) : 365 * 86400;
      if (ttl === undefined) throw new UsageError('--ttl: use a duration like 30d');
      const { createCsr } = await import('@spoke/shared');
      const { mkdirSync, writeFileSync } = await import('node:fs');
      const { join } = await import('node:path');
      const { csrPem, keyPem } = await createCsr(name as string);
      const r = await ctx.api().call('issueOperatorCert', {
        name,
        csrPem,
        ttlSeconds: ttl,
      });
      mkdirSync(o.out, { recursive: true, mode: 0o700 });
      writeFileSync(join(o.out, 'operator.key'), keyPem, { mode: 0o600 });
      writeFileSync(join(o.out, 'operator.crt'), r.certPem, { mode: 0o644 });
      writeFileSync(join(o.out, 'ca.crt'), r.caPem, { mode: 0o644 });
      print(
        ctx,
        { name, dir: o.out },
        () => `wrote operator.key, operator.crt, ca.crt to ${o.out}\nuse: spoke --master HOST:PORT --cert-dir ${o.out} server ls\n`,
      );
      return 0;
    },
  },
  'operator ls': {
    usage: 'operator ls',
    summary: 'list the operator certificates issued (name, fingerprint, expiry, revoked)',
    args: [0, 0],
    async run(ctx) {
      const r = await ctx.api().call('listOperators', {});
      print(ctx, r.operators.map(operatorJson), () => operatorTable(r.operators));
      return 0;
    },
  },
  'operator revoke': {
    usage: 'operator revoke NAME',
    summary: 'revoke every valid certificate of an operator: the master refuses their next call',
    args: [1, 1],
    async run(ctx, [name]) {
      const r = await ctx.api().call('revokeOperator', { name });
      print(
        ctx,
        r.operators.map(operatorJson),
        () => `revoked ${r.operators.length} certificate(s) of ${name}: ${r.operators.map((c) => c.fingerprint.slice(0, 16)).join(', ')}\n`,
      );
      return 0;
    },
  },
};
