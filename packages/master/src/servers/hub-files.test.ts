/**
 * Site files transfers through the hub (the same DumpTransfers as dumps, on the `files` channel):
 * siteFilesPack's tar goes into CallOptions.filesTo unchecked for a dump marker, siteFilesUnpack
 * offers CallOptions.filesFrom; a files transfer cannot be taken through the dump RPCs (nor the
 * reverse), only by the agent the command went to, only once; capability 6 is required.
 */
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { wire } from '@spoke/shared';
import { connectFakeAgent } from '../testutil.js';

const connect = (capabilityVersion: number) => connectFakeAgent('w1', capabilityVersion);

describe('AgentHub site files transfers', () => {
  it('refuses them to an agent older than capability 6, and without filesTo / filesFrom', async () => {
    const { hub, stream } = connect(5);
    const before = stream.written.length;
    await expect(hub.call('w1', { type: 'siteFilesPack', tree: '/var/www/wp', domain: 'a.test' }, { filesTo: new PassThrough() })).rejects.toMatchObject({
      code: 'AGENT_TOO_OLD',
    });
    const { hub: hub6 } = connect(6);
    await expect(hub6.call('w1', { type: 'siteFilesPack', tree: '/var/www/wp', domain: 'a.test' })).rejects.toMatchObject({
      code: 'INTERNAL',
      message: 'siteFilesPack needs CallOptions.filesTo',
    });
    await expect(hub6.call('w1', { type: 'siteFilesUnpack', tree: '/var/www/wp', domain: 'a.test', replace: true })).rejects.toMatchObject({
      code: 'INTERNAL',
      message: 'siteFilesUnpack needs CallOptions.filesFrom',
    });
    expect(stream.written.length).toBe(before);
  });

  it('siteFilesPack: the tar arrives in filesTo (no dump marker needed), only on the files channel, once', async () => {
    const { hub, answer, stream } = connect(6);
    const sink = new PassThrough();
    const got: Buffer[] = [];
    sink.on('data', (b: Buffer) => got.push(b));
    const pack = hub.call('w1', { type: 'siteFilesPack', tree: '/var/www/wp', domain: 'a.test' }, { filesTo: sink });
    const sent = stream.written.at(-1) as wire.MasterCommand;
    expect(sent.command).toEqual({ $case: 'siteFilesPack', value: { tree: '/var/www/wp', domain: 'a.test' } });
    expect(() => hub.dumps.acceptUpload('w1', sent.id)).toThrow(expect.objectContaining({ code: 'DB_TRANSFER_UNKNOWN' })); // not through PutDump
    expect(() => hub.dumps.acceptUpload('w9', sent.id, 'files')).toThrow(expect.objectContaining({ code: 'TRANSFER_UNKNOWN' }));
    const up = hub.dumps.acceptUpload('w1', sent.id, 'files');
    expect(() => hub.dumps.acceptUpload('w1', sent.id, 'files')).toThrow(/no site files upload is expected from w1/);
    await up.write(Buffer.from('tar bytes'));
    expect(await up.end()).toBe(9);
    answer({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'siteFilesPack', value: { bytes: 9, entries: 3, skipped: ['files/sock: socket'] } } });
    await expect(pack).resolves.toEqual({ bytes: 9, entries: 3, skipped: ['files/sock: socket'] });
    expect(Buffer.concat(got).toString()).toBe('tar bytes');
    expect(sink.writableFinished).toBe(true);
  });

  it('siteFilesPack: an agent that reports success without the whole upload fails, and the sink is destroyed', async () => {
    const { hub, answer, stream } = connect(6);
    const sink = new PassThrough();
    const pack = hub.call('w1', { type: 'siteFilesPack', tree: '/var/www/wp', domain: 'a.test' }, { filesTo: sink });
    const sent = stream.written.at(-1) as wire.MasterCommand;
    await hub.dumps.acceptUpload('w1', sent.id, 'files').write(Buffer.from('half'));
    answer({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'siteFilesPack', value: { bytes: 9, entries: 1, skipped: [] } } });
    await expect(pack).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('did not receive in full') });
    expect(sink.destroyed).toBe(true);
  });

  it('siteFilesUnpack: filesFrom is opened for the GetFiles of that command only, once', async () => {
    const { hub, answer, stream } = connect(6);
    const src = Readable.from([Buffer.from('tar')]);
    const unpack = hub.call('w1', { type: 'siteFilesUnpack', tree: '/var/www/wp', domain: 'a.test', replace: false }, { filesFrom: () => src });
    const sent = stream.written.at(-1) as wire.MasterCommand;
    expect(sent.command).toEqual({ $case: 'siteFilesUnpack', value: { tree: '/var/www/wp', domain: 'a.test', replace: false } });
    expect(() => hub.dumps.openDownload('w1', sent.id)).toThrow(expect.objectContaining({ code: 'DB_TRANSFER_UNKNOWN' }));
    expect(hub.dumps.openDownload('w1', sent.id, 'files')).toBe(src);
    expect(() => hub.dumps.openDownload('w1', sent.id, 'files')).toThrow(expect.objectContaining({ code: 'TRANSFER_UNKNOWN' }));
    answer({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'siteFilesUnpack', value: { bytes: 3, entries: 2, replaced: ['files'] } } });
    await expect(unpack).resolves.toEqual({ bytes: 3, entries: 2, replaced: ['files'] });
  });
});
