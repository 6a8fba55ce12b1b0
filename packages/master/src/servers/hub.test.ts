/**
 * The hub refuses a command an agent's capability predates (before sending anything) and turns a
 * ConfigurePlatform result into the domain report. The stream is an in-memory duplex.
 */
import { describe, expect, it, vi } from 'vitest';
import { CAPABILITY_VERSION, type wire } from '@spoke/shared';
import { connectFakeAgent } from '../testutil.js';

const connect = (capabilityVersion: number) => connectFakeAgent('w1', capabilityVersion);

const CMD = { type: 'configurePlatform' as const, platform: 'd7', tree: '/var/www/d7', kind: 'drupal7', pinnedImpl: '' };

describe('AgentHub capabilities', () => {
  it('refuses to send ConfigurePlatform to an agent older than capability 3, with a stable code', async () => {
    const { hub, ns, stream } = connect(2);
    expect(ns.getServer('w1').capabilityVersion).toBe(2); // the hello reached the namespace
    const before = stream.written.length; // the welcome
    const err = await hub.call('w1', CMD).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'AGENT_TOO_OLD' });
    expect((err as Error).message).toBe(
      `agent w1 has capability 2, configurePlatform needs 3; upgrade spoke-agent on w1 (this master speaks ${CAPABILITY_VERSION})`,
    );
    expect(stream.written.length).toBe(before);
    // what it knows still works
    const ping = hub.call('w1', { type: 'ping' });
    const sent = stream.written.at(-1) as wire.MasterCommand;
    stream.emit('data', {
      event: { $case: 'result', value: { id: sent.id, ok: true, errorCode: '', errorMessage: '', result: { $case: 'pong', value: {} } } },
    });
    await expect(ping).resolves.toBeNull();
  });

  it('sends ConfigurePlatform to a capability-3 agent and converts its result and errors', async () => {
    const { hub, stream } = connect(3);
    const call = hub.call('w1', CMD);
    const sent = stream.written.at(-1) as wire.MasterCommand;
    expect(sent.command).toEqual({ $case: 'configurePlatform', value: { platform: 'd7', tree: '/var/www/d7', kind: 'drupal7', pinnedImpl: '' } });
    const value = {
      impl: 'nginx',
      path: '/etc/nginx/conf.d/spoke-platform-d7.conf',
      changed: true,
      tested: true,
      reloaded: true,
      fixed: ['sites: mode 0755 → 0775'],
      problems: [],
    };
    stream.emit('data', {
      event: { $case: 'result', value: { id: sent.id, ok: true, errorCode: '', errorMessage: '', result: { $case: 'configurePlatform', value } } },
    });
    await expect(call).resolves.toEqual(value);

    const failing = hub.call('w1', CMD);
    const again = stream.written.at(-1) as wire.MasterCommand;
    stream.emit('data', {
      event: {
        $case: 'result',
        value: { id: again.id, ok: false, errorCode: 'WEBSERVER_CONFIG_INVALID', errorMessage: 'nginx -t rejected …', result: undefined },
      },
    });
    await expect(failing).rejects.toMatchObject({ code: 'WEBSERVER_CONFIG_INVALID', message: 'w1: nginx -t rejected …' });
  });

  it('refuses a vhost with a certificate and AcmeChallenge to agents before capability 12; a plain vhost still goes', async () => {
    const { hub, stream } = connect(11);
    const site = {
      type: 'configureSite' as const,
      domain: 'a.test',
      platform: 'wp',
      tree: '/var/www/wp',
      kind: 'wordpress',
      aliases: [],
      redirectAliases: false,
      enabled: true,
      webGroupFiles: [],
      pinnedImpl: '',
    };
    const before = stream.written.length;
    const tls = { certPem: '-----BEGIN CERTIFICATE-----', keyPem: 'k', redirect: false, hsts: false };
    await expect(hub.call('w1', { ...site, tls })).rejects.toMatchObject({ code: 'AGENT_TOO_OLD', message: expect.stringContaining('configureSite needs 12') });
    await expect(hub.call('w1', { type: 'acmeChallenge', token: 't'.repeat(20), keyAuthorization: 'x', remove: false })).rejects.toMatchObject({
      code: 'AGENT_TOO_OLD',
    });
    expect(stream.written.length).toBe(before);
    void hub.call('w1', site).catch(() => undefined);
    const sent = stream.written.at(-1) as wire.MasterCommand;
    expect(sent.command?.$case).toBe('configureSite');
    expect(sent.command?.$case === 'configureSite' && sent.command.value.tls).toBeUndefined();
  });

  it('sends the certificate and the challenge to a capability-12 agent', async () => {
    const { hub, stream } = connect(12);
    const tls = { certPem: 'CERT', keyPem: 'KEY', redirect: true, hsts: true };
    void hub
      .call('w1', {
        type: 'configureSite',
        domain: 'a.test',
        platform: 'wp',
        tree: '/var/www/wp',
        kind: 'wordpress',
        aliases: [],
        redirectAliases: false,
        enabled: true,
        webGroupFiles: [],
        pinnedImpl: '',
        tls,
      })
      .catch(() => undefined);
    const sent = stream.written.at(-1) as wire.MasterCommand;
    expect(sent.command?.$case === 'configureSite' && sent.command.value.tls).toEqual(tls);
    const challenge = hub.call('w1', { type: 'acmeChallenge', token: 'tok', keyAuthorization: 'tok.thumb', remove: false });
    const c = stream.written.at(-1) as wire.MasterCommand;
    expect(c.command).toEqual({ $case: 'acmeChallenge', value: { token: 'tok', keyAuthorization: 'tok.thumb', remove: false } });
    stream.emit('data', {
      event: { $case: 'result', value: { id: c.id, ok: true, errorCode: '', errorMessage: '', result: { $case: 'acmeChallenge', value: { path: '/x/tok' } } } },
    });
    await expect(challenge).resolves.toEqual({ path: '/x/tok' });
  });
});

describe('AgentHub command time limit', () => {
  it('is a limit on silence: each progress message starts it again; silence past it is AGENT_TIMEOUT', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const { hub, stream } = connect(CAPABILITY_VERSION);
      const seen: string[] = [];
      const call = hub.call('w1', { type: 'ping' }, { timeoutMs: 1000, onProgress: (p) => seen.push(p.message) });
      let settled = false;
      void call.then(
        () => (settled = true),
        () => (settled = true),
      );
      const sent = stream.written.at(-1) as wire.MasterCommand;
      // a transfer over a slow link: five seconds of progress, every 800 ms, past the 1 s limit five times over
      for (let i = 0; i < 6; i++) {
        await vi.advanceTimersByTimeAsync(800);
        stream.emit('data', { event: { $case: 'progress', value: { id: sent.id, message: `fetch ${i}`, done: i, total: 6 } } });
      }
      expect(settled).toBe(false);
      stream.emit('data', {
        event: { $case: 'result', value: { id: sent.id, ok: true, errorCode: '', errorMessage: '', result: { $case: 'pong', value: {} } } },
      });
      await expect(call).resolves.toBeNull();
      expect(seen).toHaveLength(6);

      // the same agent gone quiet: 1 s after its last word the call fails
      const quiet = hub.call('w1', { type: 'ping' }, { timeoutMs: 1000 });
      const id = (stream.written.at(-1) as wire.MasterCommand).id;
      await vi.advanceTimersByTimeAsync(600);
      stream.emit('data', { event: { $case: 'progress', value: { id, message: 'working', done: 0, total: 0 } } });
      const failed = expect(quiet).rejects.toMatchObject({ code: 'AGENT_TIMEOUT', message: 'agent w1 sent no word on ping (no progress, no result) for 1s' });
      await vi.advanceTimersByTimeAsync(1001);
      await failed;
    } finally {
      vi.useRealTimers();
    }
  });
});
