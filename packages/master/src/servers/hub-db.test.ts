/**
 * The hub's site database commands: refused to agents older than capability 4 before anything
 * is sent, sent with their fields, and answered with domain reports or the agent's stable code;
 * dumps in flight (DumpTransfers) taken once, only by the agent the command went to, checked.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { wire } from '@spoke/shared';
import { connectFakeAgent } from '../testutil.js';

const connect = (capabilityVersion: number) => connectFakeAgent('db1', capabilityVersion);

const SPEC = { database: 'example_com', user: 'example_com', password: 'pw-pw-pw-pw-pw-pw-pw', hosts: ['w1', 'w2'] };

describe('AgentHub site database commands', () => {
  it('refuses them to an agent older than capability 4', async () => {
    const { hub, stream } = connect(3);
    const before = stream.written.length;
    for (const cmd of [
      { type: 'dbCreate' as const, ...SPEC },
      { type: 'dbGrants' as const, ...SPEC },
      { type: 'dbDrop' as const, database: 'example_com', user: 'example_com', hosts: [] },
      { type: 'dbDump' as const, database: 'example_com' },
      { type: 'dbRestore' as const, database: 'example_com' },
    ]) {
      await expect(hub.call('db1', cmd)).rejects.toMatchObject({ code: 'AGENT_TOO_OLD', message: expect.stringContaining(`${cmd.type} needs 4`) });
    }
    expect(stream.written.length).toBe(before);
  });

  it('sends dbCreate, dbGrants, dbDrop and converts their results', async () => {
    const { hub, answer } = connect(4);
    const create = hub.call('db1', { type: 'dbCreate', ...SPEC });
    const sent = answer({
      ok: true,
      errorCode: '',
      errorMessage: '',
      result: { $case: 'dbCreate', value: { hosts: ['10.0.0.1', '10.0.0.2'], siteHost: '10.0.0.9', sitePort: 3307 } },
    });
    expect(sent.command).toEqual({ $case: 'dbCreate', value: SPEC });
    await expect(create).resolves.toEqual({
      hosts: ['10.0.0.1', '10.0.0.2'],
      added: ['10.0.0.1', '10.0.0.2'],
      removed: [],
      siteHost: '10.0.0.9',
      sitePort: 3307,
    });

    const grants = hub.call('db1', { type: 'dbGrants', ...SPEC, hosts: ['w2'] });
    expect(
      answer({
        ok: true,
        errorCode: '',
        errorMessage: '',
        result: { $case: 'dbGrants', value: { hosts: ['10.0.0.2'], added: [], removed: ['10.0.0.1'], siteHost: '10.0.0.9', sitePort: 3307 } },
      }).command,
    ).toEqual({
      $case: 'dbGrants',
      value: { ...SPEC, hosts: ['w2'] },
    });
    await expect(grants).resolves.toEqual({ hosts: ['10.0.0.2'], added: [], removed: ['10.0.0.1'], siteHost: '10.0.0.9', sitePort: 3307 });

    const drop = hub.call('db1', { type: 'dbDrop', database: 'example_com', user: 'example_com', hosts: ['w2'] });
    expect(
      answer({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'dbDrop', value: { databaseExisted: true, usersDropped: ['10.0.0.2'] } } }).command,
    ).toEqual({
      $case: 'dbDrop',
      value: { database: 'example_com', user: 'example_com', hosts: ['w2'] },
    });
    await expect(drop).resolves.toEqual({ databaseExisted: true, usersDropped: ['10.0.0.2'] });
  });

  it("passes the agent's stable code on", async () => {
    const { hub, answer } = connect(4);
    const create = hub.call('db1', { type: 'dbCreate', ...SPEC });
    answer({
      ok: false,
      errorCode: 'DB_EXISTS',
      errorMessage: 'database example_com already exists on 127.0.0.1:3306; it was left as it is',
      result: undefined,
    });
    await expect(create).rejects.toMatchObject({
      code: 'DB_EXISTS',
      message: 'db1: database example_com already exists on 127.0.0.1:3306; it was left as it is',
    });
    const grants = hub.call('db1', { type: 'dbGrants', ...SPEC });
    answer({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'pong', value: {} } });
    await expect(grants).rejects.toMatchObject({ code: 'INTERNAL', message: 'agent answered dbGrants with pong' });
  });

  it('dbDump: the upload is taken once, only from that agent, checked, and the sink ended', async () => {
    const { hub, stream, answer } = connect(4);
    const before = stream.written.length;
    await expect(hub.call('db1', { type: 'dbDump', database: 'example_com' })).rejects.toMatchObject({
      code: 'INTERNAL',
      message: 'dbDump needs CallOptions.dumpTo',
    });
    expect(stream.written.length).toBe(before);

    const sink = new PassThrough();
    const got: Buffer[] = [];
    sink.on('data', (b: Buffer) => got.push(b));
    const dump = hub.call('db1', { type: 'dbDump', database: 'example_com' }, { dumpTo: sink });
    const sent = stream.written.at(-1) as wire.MasterCommand;
    expect(sent.command).toEqual({ $case: 'dbDump', value: { database: 'example_com' } });
    expect(() => hub.dumps.acceptUpload('w9', sent.id)).toThrow(expect.objectContaining({ code: 'DB_TRANSFER_UNKNOWN' }));
    const up = hub.dumps.acceptUpload('db1', sent.id);
    expect(() => hub.dumps.acceptUpload('db1', sent.id)).toThrow(/no dump upload is expected from db1/);
    await up.write(Buffer.from('CREATE TABLE t (x INT);\n'));
    await up.write(Buffer.from('-- Dump completed on 2024-01-01\n'));
    expect(await up.end()).toBe(56);
    answer({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'dbDump', value: { bytes: 56 } } });
    await expect(dump).resolves.toEqual({ bytes: 56 });
    expect(Buffer.concat(got).toString()).toBe('CREATE TABLE t (x INT);\n-- Dump completed on 2024-01-01\n');
    expect(sink.writableFinished).toBe(true);
  });

  it('dbDump: a cut-short upload is refused and the sink destroyed; an agent error ends the transfer', async () => {
    const { hub, stream, answer } = connect(4);
    const sink = new PassThrough();
    const dump = hub.call('db1', { type: 'dbDump', database: 'example_com' }, { dumpTo: sink });
    const sent = stream.written.at(-1) as wire.MasterCommand;
    const up = hub.dumps.acceptUpload('db1', sent.id);
    await up.write(Buffer.from('CREATE TABLE t (x INT);\nINSERT INTO t VALU'));
    await expect(up.end()).rejects.toMatchObject({ code: 'DB_DUMP_INCOMPLETE' });
    expect(sink.destroyed).toBe(true);
    // an agent claiming success anyway is not believed
    answer({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'dbDump', value: { bytes: 40 } } });
    await expect(dump).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('did not receive in full') });

    const sink2 = new PassThrough();
    const dump2 = hub.call('db1', { type: 'dbDump', database: 'example_com' }, { dumpTo: sink2 });
    const sent2 = answer({ ok: false, errorCode: 'DB_NOT_FOUND', errorMessage: 'database example_com does not exist on 127.0.0.1:3306', result: undefined });
    await expect(dump2).rejects.toMatchObject({ code: 'DB_NOT_FOUND' });
    expect(sink2.destroyed).toBe(true);
    expect(() => hub.dumps.acceptUpload('db1', sent2.id)).toThrow(expect.objectContaining({ code: 'DB_TRANSFER_UNKNOWN' }));
  });

  it('dbRestore: the download is opened once by that agent and closed when the command ends', async () => {
    const { hub, stream, answer } = connect(4);
    const src = new PassThrough();
    src.end('-- Dump completed\n');
    const restore = hub.call('db1', { type: 'dbRestore', database: 'example_com' }, { restoreFrom: () => src });
    const sent = stream.written.at(-1) as wire.MasterCommand;
    expect(sent.command).toEqual({ $case: 'dbRestore', value: { database: 'example_com' } });
    expect(() => hub.dumps.openDownload('w9', sent.id)).toThrow(/no dump download is expected from w9/);
    expect(hub.dumps.openDownload('db1', sent.id)).toBe(src);
    expect(() => hub.dumps.openDownload('db1', sent.id)).toThrow(expect.objectContaining({ code: 'DB_TRANSFER_UNKNOWN' }));
    answer({ ok: true, errorCode: '', errorMessage: '', result: { $case: 'dbRestore', value: { bytes: 18 } } });
    await expect(restore).resolves.toEqual({ bytes: 18 });
    expect(src.destroyed).toBe(true);
  });
});
