/**
 * Site databases across the real link: a master (in this process, so the test can call its hub
 * the way the future site tasks will), the built spoke-agent bundle as a daemon with a `db`
 * section, and a private MariaDB. Covers the Db* commands over mTLS gRPC, dumps streamed up with
 * PutDump into a file and back down with GetDump, and the master's own checks on uploads.
 */
import { createReadStream, createWriteStream, chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientTls, channelOptions, createLogger, generateDbPassword, grpcTarget, wire } from '@spoke/shared';
import { expectCode } from '@spoke/shared/testkit';
import { compileMasterOptions, startMaster, type RunningMaster } from '@spoke/master';
import { startMariaDb, type PrivateMariaDb } from '@spoke/agent/testkit';
import { BIN, Daemon, cleanup, runNode, scratch, until } from '../harness.js';

const ROOT_PW = 'db-link "root" #pw\\x';
const dir = scratch('spoke-dblink-');
let db: PrivateMariaDb;
let master: RunningMaster;
let agent: Daemon;
const masterLog: string[] = [];
const stateDir = join(dir, 'agent-db1', 'state');
const PW = generateDbPassword();
const SITE = { database: 'example_com', user: 'example_com', password: PW, hosts: ['web-1'] };

async function q(sql: string): Promise<unknown[]> {
  const c = await db.connect();
  try {
    return (await c.query(sql))[0] as unknown[];
  } finally {
    await c.end();
  }
}

/** A gRPC client holding db1's own certificate (what a rogue or confused agent could send). */
function agentClient(): wire.AgentClient {
  const read = (f: string) => readFileSync(join(stateDir, f), 'utf8');
  return new wire.AgentClient(grpcTarget(master.listen), clientTls(read('ca.crt'), read('agent.crt'), read('agent.key')), channelOptions());
}

function putDump(client: wire.AgentClient, chunks: wire.DumpChunk[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = client.putDump((err, res) => (err ? reject(err) : resolve(res?.bytes ?? -1)));
    for (const c of chunks) call.write(c);
    call.end();
  });
}

const hub = () => master.core.hub;

beforeAll(async () => {
  db = await startMariaDb(join(dir, 'mariadb'), ROOT_PW);
  const opts = compileMasterOptions({ stateDir: join(dir, 'master'), listen: '127.0.0.1:0', heartbeatIntervalMs: 250 });
  master = await startMaster(opts, { log: createLogger({ level: 'debug', destination: { write: (l: string) => void masterLog.push(l) } }) });
  const { token } = master.core.enroller.createToken({ server: 'db1' });
  const r = await runNode(BIN.agent, ['enroll', '--master', master.listen, '--token', token, '--state-dir', stateDir, '--roots', '/var/aegir,/var/www']);
  expect(r.code, r.stderr).toBe(0);
  const cfgFile = join(stateDir, 'agent.json');
  const cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  cfg.db = { host: '127.0.0.1', port: db.port, adminUser: 'root', adminPassword: ROOT_PW, grantHosts: { 'web-1': ['127.0.0.1'] } };
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  chmodSync(cfgFile, 0o600);
  agent = new Daemon(BIN.agent, ['run', '--state-dir', stateDir, '--root', join(dir, 'agent-db1', 'root')]);
  await until('db1 online', () => hub().isOnline('db1') || (!agent.alive ? Promise.reject(new Error(agent.out)) : false));
});

afterAll(async () => {
  await agent?.stop('SIGKILL');
  await master?.stop();
  await db?.stop();
  cleanup(dir);
});

describe('site databases over the agent link', () => {
  it('creates a site database on the agent from the master; a second create is DB_EXISTS', async () => {
    expect(await hub().call('db1', { type: 'dbCreate', ...SITE })).toEqual({
      hosts: ['127.0.0.1'],
      added: ['127.0.0.1'],
      removed: [],
      siteHost: '127.0.0.1',
      sitePort: db.port,
    });
    const c = await db.connect('example_com', PW, 'example_com');
    await c.query('CREATE TABLE node (nid INT PRIMARY KEY, title TEXT)');
    await c.query("INSERT INTO node VALUES (1, 'one'), (2, 'two ✓')");
    await c.end();
    expect(await expectCode(hub().call('db1', { type: 'dbCreate', ...SITE }))).toMatchObject({
      code: 'DB_EXISTS',
      message: expect.stringMatching(/^db1: database example_com already exists/),
    });
  });

  const file = join(dir, 'example_com.sql');
  it('streams a dump up into a file on the master (PutDump), checked complete', async () => {
    const r = await hub().call('db1', { type: 'dbDump', database: 'example_com' }, { dumpTo: createWriteStream(file), timeoutMs: 60_000 });
    const text = readFileSync(file, 'utf8');
    expect(r.bytes).toBe(statSync(file).size);
    expect(text).toMatch(/INSERT INTO `node` VALUES\s*\(1,'one'\),\s*\(2,'two ✓'\);/);
    expect(text.trimEnd().split('\n').pop()).toMatch(/^-- Dump completed/);
    const sink = new PassThrough();
    expect(await expectCode(hub().call('db1', { type: 'dbDump', database: 'nope_com' }, { dumpTo: sink }))).toMatchObject({ code: 'DB_NOT_FOUND' });
    expect(sink.destroyed).toBe(true);
  });

  it('refuses to restore a cut-short dump (DB_DUMP_INCOMPLETE) and leaves the database alone', async () => {
    const cut = join(dir, 'cut.sql');
    const text = readFileSync(file, 'utf8');
    writeFileSync(cut, text.slice(0, text.indexOf('INSERT INTO')));
    await q('DELETE FROM example_com.node WHERE nid = 2');
    const r = await expectCode(hub().call('db1', { type: 'dbRestore', database: 'example_com' }, { restoreFrom: () => createReadStream(cut) }));
    expect(r.code).toBe('DB_DUMP_INCOMPLETE');
    expect(await q('SELECT nid FROM example_com.node')).toEqual([{ nid: 1 }]);
  });

  it('streams the dump back down (GetDump) and restores it', async () => {
    await q('DROP TABLE example_com.node');
    const r = await hub().call('db1', { type: 'dbRestore', database: 'example_com' }, { restoreFrom: () => createReadStream(file), timeoutMs: 60_000 });
    expect(r.bytes).toBe(statSync(file).size);
    expect(await q('SELECT nid, title FROM example_com.node ORDER BY nid')).toEqual([
      { nid: 1, title: 'one' },
      { nid: 2, title: 'two ✓' },
    ]);
  });

  it('takes a dump upload only for a command it sent to that agent, and checks it on arrival', async () => {
    const client = agentClient();
    try {
      const unknown = await putDump(client, [{ commandId: 'no-such-command', data: Buffer.from('-- Dump completed\n') }]).catch(
        (e: { details?: string }) => e.details,
      );
      expect(unknown).toBe('no dump upload is expected from db1 for command "no-such-command"');
      // a transfer the hub registered (as a dbDump call does): cut short → refused, sink destroyed
      const cutSink = new PassThrough();
      const cutHandle = hub().dumps.expectUpload('cmd-cut', 'db1', 'example_com', cutSink);
      const cut = await putDump(client, [{ commandId: 'cmd-cut', data: Buffer.from('CREATE TABLE t (x INT);\n') }]).catch(
        (e: { details?: string }) => e.details,
      );
      expect(cut).toMatch(/^the dump of example_com from db1 \(24 bytes\) lacks its "-- Dump completed" line/);
      expect(cutSink.destroyed).toBe(true);
      expect(() => cutHandle.finish()).toThrow(/did not receive in full/);
      // complete → written to the sink and ended
      const okSink = new PassThrough();
      const got: Buffer[] = [];
      okSink.on('data', (b: Buffer) => got.push(b));
      const okHandle = hub().dumps.expectUpload('cmd-ok', 'db1', 'example_com', okSink);
      const bytes = await putDump(client, [
        { commandId: 'cmd-ok', data: Buffer.from('CREATE TABLE t (x INT);\n') },
        { commandId: '', data: Buffer.from('-- Dump completed on 2024-01-01\n') },
      ]);
      expect(bytes).toBe(56);
      expect(Buffer.concat(got).toString()).toBe('CREATE TABLE t (x INT);\n-- Dump completed on 2024-01-01\n');
      expect(() => okHandle.finish()).not.toThrow();
      // taken once: the same command id again is unknown
      const again = await putDump(client, [{ commandId: 'cmd-ok', data: Buffer.from('x') }]).catch((e: { details?: string }) => e.details);
      expect(again).toMatch(/no dump upload is expected/);
    } finally {
      client.close();
    }
  });

  it('moves a dump of several MiB both ways (many chunks, backpressure)', async () => {
    await q('CREATE TABLE example_com.big (id INT PRIMARY KEY, v TEXT)');
    await q("INSERT INTO example_com.big SELECT seq, CONCAT(REPEAT(MD5(seq), 24), '✓') FROM mysql.seq_1_to_20000");
    const sum = async () => q('SELECT COUNT(*) AS n, SUM(CRC32(v)) AS crc FROM example_com.big');
    const before = await sum();
    const bigFile = join(dir, 'big.sql');
    const up = await hub().call(
      'db1',
      { type: 'dbDump', database: 'example_com' },
      { dumpTo: createWriteStream(bigFile, { highWaterMark: 16 * 1024 }), timeoutMs: 120_000 },
    );
    expect(up.bytes).toBeGreaterThan(12 * 1024 * 1024);
    expect(statSync(bigFile).size).toBe(up.bytes);
    await q('DROP TABLE example_com.big');
    const down = await hub().call('db1', { type: 'dbRestore', database: 'example_com' }, { restoreFrom: () => createReadStream(bigFile), timeoutMs: 120_000 });
    expect(down.bytes).toBe(up.bytes);
    expect(await sum()).toEqual(before);
  });

  it('drops the site database from the master; the password was never logged', async () => {
    expect(await hub().call('db1', { type: 'dbDrop', database: 'example_com', user: 'example_com', hosts: ['web-1'] })).toEqual({
      databaseExisted: true,
      usersDropped: ['127.0.0.1'],
    });
    expect(await q("SELECT User FROM mysql.user WHERE User = 'example_com'")).toEqual([]);
    expect(await q("SHOW DATABASES LIKE 'example\\_com'")).toEqual([]);
    expect(agent.out).toContain('site database dropped');
    expect(agent.out).not.toContain(PW);
    expect(agent.out).not.toContain('db-link');
    expect(masterLog.join('')).not.toContain(PW);
  });
});
