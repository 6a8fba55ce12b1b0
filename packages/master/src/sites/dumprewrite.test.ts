import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpLineRewriter, rewriteDump, SiteValueRewriter, sqlEscape, sqlUnescape } from './dumprewrite.js';
import { looksSerialized, parsePhp, serializePhp } from './phpserial.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-dumprewrite-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs PHP: `code` reads the binary string in $in (from stdin) and echoes its answer. */
function php(code: string, input: string): string {
  return execFileSync('php', ['-r', `$in = stream_get_contents(STDIN); ${code}`], { input: Buffer.from(input, 'latin1') }).toString('latin1');
}
/** PHP's own serialize() of a PHP expression (binary string). */
const phpSerialize = (expr: string): string => php(`echo serialize(${expr});`, '');
/** Bytes of UTF-8 text as a binary string (how the rewriter sees stored values). */
const bin = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

describe('PHP serialized values', () => {
  it('parse and write back byte for byte what PHP serialize() wrote (arrays, objects, floats, enums of classes, references, C:)', () => {
    const samples = [
      `["a" => "sites/x.test/files/é", "o" => new ArrayObject([1]), 2 => 1.5, "b" => true, "n" => null, "neg" => -3]`,
      `(function () { $o = new stdClass; $o->self = "x"; $o->list = [1, [2, ["deep" => "sites/x.test/private/a"]]]; return [$o, $o]; })()`,
      `new SplObjectStorage()`,
      `"s:5:\\"inner\\";"`,
      `0.1 + 0.2`,
    ];
    for (const expr of samples) {
      const s = phpSerialize(expr);
      expect(looksSerialized(s), s).toBe(true);
      expect(serializePhp(parsePhp(s))).toBe(s);
    }
  });

  it('refuses what is not exactly one serialized value', () => {
    for (const bad of ['s:5:"abc";', 's:3:"abc"', 'a:1:{s:1:"a";}', 'a:1:{i:0;i:1;}x', 'S:3:"abc";', 'x', 'a:1:{a:0:{}i:1;}']) {
      expect(() => parsePhp(bad), bad).toThrow();
    }
    expect(() => parsePhp('a:1:{i:0;'.repeat(2000) + 'N;' + '}'.repeat(2000))).toThrow(/nested too deeply/);
  });
});

describe('site value rewriter', () => {
  it('WordPress: serialized option with paths and hosts, multibyte text: lengths recounted, PHP unserializes it to the expected value', () => {
    const rw = new SiteValueRewriter('wordpress', 'blog.test', 'news.example');
    const before = phpSerialize(
      `["logo" => "http://blog.test/sites/blog.test/files/2026/12/ö.png", "list" => [serialize(["p" => "sites/blog.test/private/x"])], "other" => "http://blog.testing.example/sites/blog.testing/files/a", "k" => 7]`,
    );
    const after = rw.rewrite('wp_options', before);
    expect(after).not.toBe(before);
    const back = JSON.parse(php('echo json_encode(unserialize($in));', after)) as Record<string, unknown>;
    expect(back).toEqual({
      logo: 'http://news.example/sites/news.example/files/2026/12/ö.png',
      // serialized inside serialized (WordPress does that): rewritten inside too
      list: [phpSerialize(`["p" => "sites/news.example/private/x"]`)],
      other: 'http://blog.testing.example/sites/blog.testing/files/a',
      k: 7,
    });
    expect(rw.count).toEqual({ values: 1, skipped: {} });
  });

  it('plain values: paths renamed, hosts left to the rename statements; look-alike paths untouched', () => {
    const rw = new SiteValueRewriter('wordpress', 'blog.test', 'news.example');
    expect(rw.rewrite('wp_posts', bin('<img src="http://blog.test/sites/blog.test/files/a.png"> sites/blog.test/filesystem sites/blog.test/files'))).toBe(
      bin('<img src="http://blog.test/sites/news.example/files/a.png"> sites/blog.test/filesystem sites/news.example/files'),
    );
    expect(rw.rewrite('wp_posts', 'sites/blog.testing/files/a')).toBe('sites/blog.testing/files/a');
  });

  it('Drupal: no host rewrite even in serialized values; a value that looks serialized but is broken is left alone and counted', () => {
    const rw = new SiteValueRewriter('drupal7', 'old.test', 'new.test');
    expect(rw.rewrite('variable', 's:20:"sites/old.test/files";')).toBe('s:20:"sites/new.test/files";');
    expect(rw.rewrite('variable', 'a:1:{s:1:"u";s:30:"http://old.test/sites/old.test/files";}')).toBe(
      'a:1:{s:1:"u";s:30:"http://old.test/sites/old.test/files";}',
    );
    expect(rw.count.skipped).toEqual({ variable: 1 });
    const ok = phpSerialize(`["u" => "http://old.test/sites/old.test/files/x"]`);
    expect(rw.rewrite('cache', ok)).toBe(phpSerialize(`["u" => "http://old.test/sites/new.test/files/x"]`));
  });
});

describe('dump lines', () => {
  const rw = () => new SiteValueRewriter('drupal8', 'old.test', 'new.test');
  const hex = (s: string) => Buffer.from(s, 'latin1').toString('hex').toUpperCase();

  it('escapes round-trip as mariadb-dump writes them', () => {
    const bytes = 'a\'b"c\\d\ne\rf\0g\x1ah';
    expect(sqlEscape(bytes)).toBe('a\\\'b\\"c\\\\d\\ne\\rf\\0g\\Zh');
    expect(sqlUnescape(sqlEscape(bytes))).toBe(bytes);
  });

  it('rewrites quoted strings and hex blobs in INSERT lines; leaves other values, other lines and unmatched literals byte for byte', () => {
    const blob = phpSerialize(`["path" => "sites/old.test/files", "n" => "it's"]`);
    const line = `INSERT INTO \`config\` VALUES ('system.file','a\\'b sites/old.test/files/x.png\\n',0x${hex(blob)},NULL,12,0x00FF),('x','sites/old.testing/files',0x41,'')`;
    const r = rw();
    const out = new DumpLineRewriter(r).line(line);
    const want = phpSerialize(`["path" => "sites/new.test/files", "n" => "it's"]`);
    expect(out).toBe(
      `INSERT INTO \`config\` VALUES ('system.file','a\\'b sites/new.test/files/x.png\\n',0x${hex(want)},NULL,12,0x00FF),('x','sites/old.testing/files',0x41,'')`,
    );
    expect(r.count.values).toBe(2);
    for (const other of ['-- sites/old.test/files', 'CREATE TABLE `sites/old.test/files` (', "INSERT INTO `t` VALUES ('nothing here')"])
      expect(new DumpLineRewriter(r).line(other)).toBe(other);
  });

  it('mariadb-dump 10.x rows: INSERT alone on its line, one row per line, until the line ending in ;', () => {
    const r = rw();
    const lr = new DumpLineRewriter(r);
    const lines = [
      'INSERT INTO `node__body` VALUES',
      "(1,'sites/old.test/files/a'),",
      "(2,'sites/old.test/files/b');",
      "('sites/old.test/files/c')",
      'UNLOCK TABLES;',
    ];
    expect(lines.map((l) => lr.line(l))).toEqual([
      'INSERT INTO `node__body` VALUES',
      "(1,'sites/new.test/files/a'),",
      "(2,'sites/new.test/files/b');",
      "('sites/old.test/files/c')",
      'UNLOCK TABLES;',
    ]);
  });

  it('a whole dump file: only changed lines differ, bytes outside the values (latin1, CRs) kept', async () => {
    const src = join(dir, 'in.sql');
    const dst = join(dir, 'out.sql');
    const body = Buffer.concat([
      Buffer.from('-- MariaDB dump\r\n/*!40101 SET NAMES utf8mb4 */;\n', 'latin1'),
      Buffer.from('INSERT INTO `node__body` VALUES\n(1,\'<img src=\\"/sites/old.test/files/é.png\\">\');\n', 'utf8'),
      Buffer.from([0xff, 0xfe, 0x0a]),
      Buffer.from('-- Dump completed on 2026-12-06', 'latin1'),
    ]);
    writeFileSync(src, body);
    const n = await rewriteDump(src, dst, 'drupal8', 'old.test', 'new.test');
    expect(n).toEqual({ values: 1, skipped: {} });
    expect(readFileSync(dst)).toEqual(Buffer.from(body.toString('latin1').replace('sites/old.test/files', 'sites/new.test/files'), 'latin1'));
  });
});
