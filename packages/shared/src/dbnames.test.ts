import { describe, expect, it } from 'vitest';
import { expectCode } from './testkit.js';
import { DumpTail, checkDbHost, checkDbName, checkDbPassword, checkDbUser, checkDumpComplete, generateDbPassword, siteDbName } from './dbnames.js';

const long = `${'a'.repeat(40)}.${'b'.repeat(40)}.example.com`; // 94 characters

describe('siteDbName', () => {
  it.each([
    // domain, taken, database, user
    ['example.com', [], 'example_com', 'example_com'],
    ['www.my-site.example.org', [], 'www_my_site_example_org', 'www_my_site_example_org'],
    ['123.example.com', [], 's_123_example_com', 's_123_example_com'],
    ['9x.io', [], 's_9x_io', 's_9x_io'],
    ['example.com', ['example_com'], 'example_com_2', 'example_com_2'],
    ['example.com', ['example_com', 'example_com_2', 'example_com_3'], 'example_com_4', 'example_com_4'],
    // a user name taken by another site makes both move on, so they stay a pair
    ['example.com', ['example_com_2'], 'example_com', 'example_com'],
    [long, [], `${'a'.repeat(40)}_${'b'.repeat(23)}`, 'a'.repeat(32)],
    [long, ['a'.repeat(32)], `${'a'.repeat(40)}_${'b'.repeat(21)}_2`, `${'a'.repeat(30)}_2`],
    // the cut lands on "_": it is trimmed before the suffix, never doubled
    [`${'a'.repeat(29)}.example.com`, [`${'a'.repeat(29)}_ex`], `${'a'.repeat(29)}_example_com_2`, `${'a'.repeat(29)}_2`],
    // reserved server schemas are never handed out
    ['information.schema', [], 'information_schema_2', 'information_schema_2'],
    ['performance.schema', [], 'performance_schema_2', 'performance_schema_2'],
  ])('%s with taken %j → %s / %s', (domain, taken, database, user) => {
    const got = siteDbName(domain, new Set(taken));
    expect(got).toEqual({ database, user });
    expect(got.database.length).toBeLessThanOrEqual(64);
    expect(got.user.length).toBeLessThanOrEqual(32);
    expect(checkDbName(got.database)).toBe(database);
    expect(checkDbUser(got.user)).toBe(user);
  });

  it('stays within the limits with many collisions', () => {
    const taken = new Set<string>();
    for (let i = 0; i < 150; i++) {
      const n = siteDbName(long, taken);
      expect(n.database.length).toBeLessThanOrEqual(64);
      expect(n.user.length).toBeLessThanOrEqual(32);
      expect(taken.has(n.database) || taken.has(n.user)).toBe(false);
      taken.add(n.database).add(n.user);
    }
    expect(siteDbName(long, taken).user).toBe(`${'a'.repeat(28)}_151`);
  });

  it.each(['', 'Example.com', 'nodot', 'a..b', 'bad_label.com', '-x.com'])('refuses domain %j', (d) => {
    expectCode(() => siteDbName(d, new Set()), 'INVALID_DOMAIN');
  });
});

describe('identifier checks', () => {
  it.each([
    ['example_com', true],
    ['_x', true],
    ['a'.repeat(64), true],
    ['a'.repeat(65), false],
    ['1abc', false],
    ['', false],
    ['Example', false],
    ['a-b', false],
    ['a.b', false],
    ['a`b', false],
    ["a'b", false],
    ['a b', false],
    ['a;drop', false],
    ['é', false],
    ['mysql', false],
    ['information_schema', false],
  ])('database %j valid=%s', (name, ok) => {
    if (ok) expect(() => checkDbName(name)).not.toThrow();
    else expectCode(() => checkDbName(name), 'INVALID_ARGUMENT');
  });

  it.each([
    ['example_com', true],
    ['a'.repeat(32), true],
    ['a'.repeat(33), false],
    ['root', false],
    ['9a', false],
    ['a@b', false],
    ["a'", false],
  ])('user %j valid=%s', (name, ok) => {
    if (ok) expect(() => checkDbUser(name)).not.toThrow();
    else expectCode(() => checkDbUser(name), 'INVALID_ARGUMENT');
  });

  it.each([
    ['127.0.0.1', true],
    ['::1', true],
    ['localhost', true],
    ['web-1.example.net', true],
    ['10.0.0.%', true],
    ['%', true],
    ['10.0.0.0/255.255.255.0', true],
    ['h'.repeat(255), true],
    ['h'.repeat(256), false],
    ['', false],
    ["h'", false],
    ['h`', false],
    ['a b', false],
    ['a\nb', false],
    ['a@b', false],
  ])('host %j valid=%s', (host, ok) => {
    if (ok) expect(() => checkDbHost(host)).not.toThrow();
    else expectCode(() => checkDbHost(host), 'INVALID_ARGUMENT');
  });

  it.each([
    ['x'.repeat(16), true],
    ['x'.repeat(128), true],
    ['x'.repeat(15), false],
    ['x'.repeat(129), false],
    [`${'x'.repeat(16)} `, false],
    [`${'x'.repeat(16)}\n`, false],
    [`${'x'.repeat(16)}é`, false],
    [`'"\\\`;${'x'.repeat(16)}`, true],
  ])('password %j valid=%s', (pw, ok) => {
    if (ok) expect(() => checkDbPassword(pw)).not.toThrow();
    else expectCode(() => checkDbPassword(pw), 'INVALID_ARGUMENT');
  });

  it('never repeats a refused password in the message', () => {
    const pw = 'secret with spaces in it';
    try {
      checkDbPassword(pw);
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).not.toContain('secret');
    }
  });

  it('generates random passwords of 32 base64url characters', () => {
    const a = generateDbPassword();
    const b = generateDbPassword();
    expect(a).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(a).not.toBe(b);
    expect(checkDbPassword(a)).toBe(a);
  });
});

describe('checkDumpComplete', () => {
  const head = '-- MariaDB dump 10.19\n\nCREATE TABLE `a` (id int);\nINSERT INTO `a` VALUES (1);\n';
  it.each<[string, 'DB_DUMP_INCOMPLETE' | undefined]>([
    [`${head}\n-- Dump completed on 2024-05-01 10:00:00\n`, undefined],
    [`${head}-- Dump completed\n`, undefined],
    [`${head}-- Dump completed on 2024-05-01 10:00:00`, undefined],
    [`${head}-- Dump completed on 2024-05-01 10:00:00\r\n\r\n`, undefined],
    ['', 'DB_DUMP_INCOMPLETE'],
    ['\n\n  \n', 'DB_DUMP_INCOMPLETE'],
    [head, 'DB_DUMP_INCOMPLETE'],
    [`${head}-- Dump completed on 2024-05-01\nINSERT INTO \`a\` VALUES (2);\n`, 'DB_DUMP_INCOMPLETE'],
    [`${head}-- Dump comp`, 'DB_DUMP_INCOMPLETE'],
    [`${head} -- Dump completed\n`, 'DB_DUMP_INCOMPLETE'],
  ])('%j → %s', (dump, code) => {
    for (const check of [() => checkDumpComplete(Buffer.from(dump), Buffer.byteLength(dump)), () => checkDumpComplete(dump, dump.length)]) {
      if (code === undefined) expect(check).not.toThrow();
      else expectCode(check, code);
    }
  });

  it('says why in one line', () => {
    try {
      checkDumpComplete(Buffer.from(head), head.length, 'dump of example_com');
      expect.unreachable();
    } catch (e) {
      expect(String(e)).toMatch(/^DB_DUMP_INCOMPLETE: dump of example_com \(\d+ bytes\) lacks its "-- Dump completed" line/);
      expect((e as Error).message).not.toContain('\n');
    }
  });

  it('DumpTail follows a dump cut in chunks of any size', () => {
    const dump = Buffer.from(`${head}${'INSERT INTO `a` VALUES (3);\n'.repeat(500)}-- Dump completed on 2024-05-01 10:00:00\n`);
    for (const size of [1, 7, 100, 511, 512, 513, 4096, dump.length]) {
      const t = new DumpTail();
      for (let i = 0; i < dump.length; i += size) t.update(dump.subarray(i, i + size));
      expect(t.bytes).toBe(dump.length);
      expect(() => t.check()).not.toThrow();
      const cut = new DumpTail();
      cut.update(dump.subarray(0, dump.length - 30));
      expectCode(() => cut.check(), 'DB_DUMP_INCOMPLETE');
    }
    expectCode(() => new DumpTail().check(), 'DB_DUMP_INCOMPLETE');
  });
});
