import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpTail } from '@spoke/shared';
import {
  dumpMarkerOffset,
  dumpSchema,
  dumpWithStatements,
  hostReplaceExpr,
  phpSerializedString,
  renameStatements,
  sqlString,
  SERIALIZED_RE,
  type DumpSchema,
} from './rename.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-rename-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const schema = (tables: Record<string, string[]>): DumpSchema => new Map(Object.entries(tables).map(([t, c]) => [t, new Set(c)]));

/**
 * A small evaluator of the expressions hostReplaceExpr builds (REPLACE, IF/RIGHT/LEFT/CONCAT on
 * one column), so the replacement is checked on values, not only as text.
 */
function evalHostReplace(value: string, from: string, to: string): string {
  const tail = `://${from}`;
  let v = value.endsWith(tail) ? value.slice(0, value.length - tail.length) + `://${to}` : value;
  for (const end of ['/', '"', "'", '?', '#', ':', '<', ')', ']', ',', ' ']) v = v.split(`://${from}${end}`).join(`://${to}${end}`);
  return v;
}

describe('rename statements', () => {
  it('WordPress: siteurl/home, posts, meta, comments, links; only tables and columns the dump has', () => {
    const all = schema({
      wp_options: ['option_id', 'option_name', 'option_value'],
      wp_posts: ['ID', 'guid', 'post_content', 'post_excerpt'],
      wp_postmeta: ['meta_value'],
      wp_comments: ['comment_content', 'comment_author_url'],
    });
    const st = renameStatements('wordpress', 'blog.test', 'news.test', all);
    expect(st).toHaveLength(1 + 3 + 1 + 2);
    expect(st[0]).toMatch(/^UPDATE `wp_options` SET `option_value` = .* WHERE `option_name` IN \('siteurl', 'home'\);$/);
    // every other statement skips serialized values and only touches rows naming the old host
    for (const s of st.slice(1)) {
      expect(s).toContain(`NOT REGEXP ${sqlString(SERIALIZED_RE)}`);
      expect(s).toContain("LIKE '%://blog.test%'");
    }
    expect(st.some((s) => s.startsWith('UPDATE `wp_links`'))).toBe(false); // no wp_links in this dump
    expect(renameStatements('wordpress', 'blog.test', 'news.test', schema({ wp_posts: ['guid'] }))).toEqual([
      expect.stringMatching(/^UPDATE `wp_posts` SET `guid` = /),
    ]);
    // no statement names a database, and none uses a backslash (NO_BACKSLASH_ESCAPES-proof)
    for (const s of st) {
      expect(s).not.toMatch(/`\.`|\bUSE\b/);
      expect(s).not.toContain('\\');
    }
    expect(renameStatements('wordpress', 'blog.test', 'blog.test', all)).toEqual([]);
  });

  it('the host replacement changes the host only, at a host boundary', () => {
    const e = hostReplaceExpr('c', 'blog.test', 'news.test');
    expect(e).toContain("IF(RIGHT(`c`, 12) = '://blog.test', CONCAT(LEFT(`c`, CHAR_LENGTH(`c`) - 12), '://news.test'), `c`)");
    expect(e).toContain('REPLACE(');
    expect(e).toContain("'://blog.test'''"); // the quote terminator, doubled
    const cases: [string, string][] = [
      ['http://blog.test', 'http://news.test'],
      ['https://blog.test/wp/', 'https://news.test/wp/'],
      ['<a href="http://blog.test">x</a> http://blog.test:8080/y', '<a href="http://news.test">x</a> http://news.test:8080/y'],
      ['http://blog.testing.com/ and http://www.blog.test/', 'http://blog.testing.com/ and http://www.blog.test/'],
      ['mailto:a@blog.test', 'mailto:a@blog.test'],
    ];
    for (const [v, want] of cases) expect(evalHostReplace(v, 'blog.test', 'news.test')).toBe(want);
  });

  it('serialized PHP values are recognised (and left alone); plain text is not', () => {
    const re = new RegExp(SERIALIZED_RE);
    for (const v of ['a:2:{i:0;s:16:"http://blog.test";}', 's:16:"http://blog.test";', 'O:8:"stdClass":0:{}', 'i:5;', 'b:1;', 'd:0.5;', 'N;'])
      expect(re.test(v), v).toBe(true);
    for (const v of ['http://blog.test', '<p>see http://blog.test/</p>', 'a: list', 'sites/blog.test/files/x.png']) expect(re.test(v), v).toBe(false);
  });

  it('Drupal: D6 file paths, exact serialized path variables rebuilt with their new length, bodies, caches emptied', () => {
    const st = renameStatements(
      'drupal6',
      'old.example',
      'new-name.example',
      schema({
        files: ['fid', 'filepath'],
        variable: ['name', 'value'],
        node_revisions: ['body', 'teaser'],
        cache: ['cid'],
        cache_page: ['cid'],
        cachetags: ['tag'],
      }),
    );
    expect(st).toContain(
      "UPDATE `files` SET `filepath` = CONCAT('sites/new-name.example/', SUBSTRING(`filepath`, 19)) WHERE LEFT(`filepath`, 18) = 'sites/old.example/';",
    );
    expect(phpSerializedString('sites/new-name.example/files')).toBe('s:28:"sites/new-name.example/files";');
    expect(st).toContain(
      `UPDATE \`variable\` SET \`value\` = 's:28:"sites/new-name.example/files";' WHERE \`name\` IN ('file_directory_path', 'file_public_path') AND \`value\` = 's:23:"sites/old.example/files";';`,
    );
    expect(st.filter((s) => s.startsWith('UPDATE `node_revisions`'))).toHaveLength(2);
    expect(st.filter((s) => s.startsWith('DELETE FROM'))).toEqual(['DELETE FROM `cache`;', 'DELETE FROM `cache_page`;']);
    // Drupal 8: no files table or variables; bodies only when present
    expect(renameStatements('drupal8', 'old.example', 'new.example', schema({ node__body: ['body_value', 'body_summary'], users: ['uid'] }))).toHaveLength(2);
    expect(() => renameStatements('mediawiki', 'a.example', 'b.example', schema({}))).toThrow(/PLATFORM_KIND_UNSUPPORTED|mediawiki/);
    expect(() => renameStatements('wordpress', 'a.example', "b'.example", schema({}))).toThrow();
  });
});

describe('the dump carrying the statements', () => {
  const dump = [
    '-- MariaDB dump',
    '/*!40101 SET NAMES utf8mb4 */;',
    'DROP TABLE IF EXISTS `wp_options`;',
    'CREATE TABLE `wp_options` (',
    '  `option_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,',
    "  `option_name` varchar(191) NOT NULL DEFAULT '',",
    '  `option_value` longtext NOT NULL,',
    '  PRIMARY KEY (`option_id`)',
    ') ENGINE=InnoDB;',
    "INSERT INTO `wp_options` VALUES (1,'siteurl','http://blog.test');",
    'CREATE TABLE `odd``name` (',
    '  `a``b` int',
    ');',
    '/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;',
    '',
    '-- Dump completed on 2025-01-01 10:00:00',
    '',
  ].join('\n');

  it('reads the tables and columns of the dump', async () => {
    const f = join(dir, 'a.sql');
    writeFileSync(f, dump);
    const s = await dumpSchema(f);
    expect([...s.keys()]).toEqual(['wp_options', 'odd`name']);
    expect([...(s.get('wp_options') ?? [])]).toEqual(['option_id', 'option_name', 'option_value']);
    expect([...(s.get('odd`name') ?? [])]).toEqual(['a`b']);
  });

  it('puts the statements just before the completion line, which stays last (the agent checks it)', async () => {
    const f = join(dir, 'b.sql');
    writeFileSync(f, dump);
    const at = await dumpMarkerOffset(f);
    expect(dump.slice(at)).toBe('-- Dump completed on 2025-01-01 10:00:00\n');
    const chunks: Buffer[] = [];
    for await (const c of dumpWithStatements(f, at, 'UPDATE `wp_options` SET x = 1;')) chunks.push(Buffer.from(c as Buffer));
    const out = Buffer.concat(chunks).toString('utf8');
    expect(out).toBe(dump.slice(0, at) + "-- Spoke: rename the site's stored data\nUPDATE `wp_options` SET x = 1;\n" + dump.slice(at));
    const tail = new DumpTail();
    tail.update(Buffer.from(out));
    expect(() => tail.check()).not.toThrow();
    // nothing to add: the dump as it is
    const same: Buffer[] = [];
    for await (const c of dumpWithStatements(f, at, '')) same.push(Buffer.from(c as Buffer));
    expect(Buffer.concat(same).toString('utf8')).toBe(dump);
  });

  it('refuses a dump without its completion line', async () => {
    const f = join(dir, 'c.sql');
    writeFileSync(f, dump.replace('-- Dump completed on 2025-01-01 10:00:00\n', ''));
    await expect(dumpMarkerOffset(f)).rejects.toMatchObject({ code: 'DB_DUMP_INCOMPLETE' });
  });
});
