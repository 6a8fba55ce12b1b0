/**
 * Renaming a site's own file paths inside its database dump, serialized-data safe. Spoke keeps a
 * site's user files under `sites/<domain>/files` (and `sites/<domain>/private`), so a clone or a
 * migrate with a new domain must also change `sites/OLD/files` to `sites/NEW/files` wherever the
 * stored data names it: WordPress posts, post meta and options (serialized widgets, theme mods),
 * Drupal 7 variables (`file_public_path`, serialized) and text fields, Drupal 8+ config
 * (serialized blobs) and body fields, in any table.
 *
 * It works on the dump as mariadb-dump writes it (one `INSERT INTO \`t\` VALUES (…),(…);` line per
 * batch, strings quoted with backslash escapes, blobs as `0x…` with --hex-blob): every string or
 * hex literal that holds the old path is decoded; a serialized PHP value is parsed, its strings
 * changed and written back with their new byte lengths (phpserial.ts), as WP-CLI's search-replace
 * does; a plain value is changed in place. Everything else is copied byte for byte. A value that
 * looks serialized but does not parse is left alone and counted (`skipped`), never broken.
 *
 * For WordPress the host (`://OLD` followed by one of HOST_END or the end) is rewritten too, but
 * only inside serialized values of `wp_*` tables: plain values are the rename statements' work
 * (rename.ts), which cannot reach into serialized data.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { checkDomain } from '@spoke/shared';
import type { PlatformKind } from '../platforms/registry/index.js';
import { looksSerialized, mapPhpStrings, parsePhp, serializePhp } from './phpserial.js';
import { HOST_END } from './rename.js';

/** What a dump rewrite changed. */
export interface DumpRewriteCount {
  /** Literals (one stored value each) written back changed. */
  values: number;
  /** Per table: values that hold the old path and look serialized but do not parse (left alone). */
  skipped: Record<string, number>;
}

function reEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Rewrites single stored values (binary strings: one char per byte) for one rename. */
export class SiteValueRewriter {
  /** Substrings a value must hold to be worth decoding (as bytes). */
  readonly needles: string[];
  private readonly path: RegExp;
  private readonly host: RegExp | null;
  private readonly to: string;
  readonly count: DumpRewriteCount = { values: 0, skipped: {} };

  /** @throws SpokeError INVALID_DOMAIN */
  constructor(kind: PlatformKind, from: string, to: string) {
    checkDomain(from);
    checkDomain(to);
    this.to = to;
    this.path = new RegExp(`sites/${reEscape(from)}/(files|private)(?![A-Za-z0-9_.-])`, 'g');
    this.needles = [`sites/${from}/`];
    this.host = null;
    if (kind === 'wordpress') {
      this.host = new RegExp(`://${reEscape(from)}(?=[${HOST_END.map(reEscape).join('')}]|$)`, 'g');
      this.needles.push(`://${from}`);
    }
  }

  /** True when the value may need a change (a cheap test before decoding). */
  mayHold(raw: string): boolean {
    return this.needles.some((n) => raw.includes(n));
  }

  /** The value with the site's paths (and, in serialized WordPress data, its host) renamed. */
  rewrite(table: string, value: string): string {
    const out = this.value(table, value, false, 0);
    if (out !== value) this.count.values++;
    return out;
  }

  private value(table: string, v: string, inSerialized: boolean, depth: number): string {
    if (!this.mayHold(v)) return v;
    if (depth < 8 && looksSerialized(v)) {
      let tree;
      try {
        tree = parsePhp(v);
      } catch {
        this.count.skipped[table] = (this.count.skipped[table] ?? 0) + 1;
        return v;
      }
      return mapPhpStrings(tree, (leaf) => this.value(table, leaf, true, depth + 1)) ? serializePhp(tree) : v;
    }
    let out = v.replace(this.path, `sites/${this.to}/$1`);
    if (inSerialized && this.host && table.startsWith('wp_')) out = out.replace(this.host, `://${this.to}`);
    return out;
  }
}

const UNESCAPE: Record<string, string> = { '0': '\0', n: '\n', r: '\r', t: '\t', b: '\b', Z: '\x1a' };

/** A MySQL string literal's body (between the quotes) as its bytes. */
export function sqlUnescape(body: string): string {
  return body.replace(/\\(.)|''/gs, (m, c: string | undefined) => (c === undefined ? "'" : (UNESCAPE[c] ?? c)));
}

/** Bytes as a string literal's body, escaped as mariadb-dump does (mysql_real_escape_string). */
export function sqlEscape(bytes: string): string {
  return bytes.replace(
    // NUL and Ctrl-Z are exactly what mariadb-dump escapes
    // eslint-disable-next-line no-control-regex
    /[\0\n\r\\'"\x1a]/g,
    (c) => ({ '\0': '\\0', '\n': '\\n', '\r': '\\r', '\\': '\\\\', "'": "\\'", '"': '\\"', '\x1a': '\\Z' })[c] as string,
  );
}

/**
 * The row lines of a dump, rewritten one by one. mariadb-dump 10.x writes `INSERT INTO \`t\`
 * VALUES` alone on a line and then one row per line (`(…),` … `(…);`); older dumps put the rows
 * on the INSERT line itself. Both are read; strings never span lines (newlines are escaped).
 */
export class DumpLineRewriter {
  /** The table whose rows the next lines hold (null outside an INSERT). */
  private table: string | null = null;
  private readonly hexNeedles: string[];

  constructor(private readonly rw: SiteValueRewriter) {
    this.hexNeedles = rw.needles.flatMap((n) => {
      const h = Buffer.from(n, 'latin1').toString('hex');
      return [h.toUpperCase(), h];
    });
  }

  /** One line (binary string, no newline) as it goes into the rewritten dump. */
  line(line: string): string {
    let from = 0;
    const m = /^INSERT INTO `((?:[^`]|``)+)` (?:\([^)]*\) )?VALUES ?/.exec(line);
    if (m) {
      this.table = (m[1] as string).replace(/``/g, '`');
      from = m[0].length;
    } else if (this.table === null || !line.startsWith('(')) {
      this.table = null;
      return line;
    }
    const table = this.table;
    if (line.endsWith(';')) this.table = null;
    if (!this.rw.mayHold(line) && !this.hexNeedles.some((h) => line.includes(h))) return line;
    return rewriteValues(line, from, table, this.rw, this.hexNeedles);
  }
}

/** `line` with the string and hex literals from `start` on rewritten (the same line when none changed). */
function rewriteValues(line: string, start: number, table: string, rw: SiteValueRewriter, hexNeedles: string[]): string {
  let out = '';
  let last = 0;
  let i = start;
  const n = line.length;
  while (i < n) {
    const c = line.charCodeAt(i);
    if (c === 0x27) {
      // a quoted string: backslash escapes (and '' for a quote, which mariadb-dump does not write)
      let j = i + 1;
      for (;;) {
        if (j >= n) return line; // unterminated: not a line this rewriter understands; keep it
        const d = line.charCodeAt(j);
        if (d === 0x5c) j += 2;
        else if (d === 0x27) {
          if (line.charCodeAt(j + 1) === 0x27) j += 2;
          else break;
        } else j++;
      }
      const body = line.slice(i + 1, j);
      if (rw.mayHold(body)) {
        const v = sqlUnescape(body);
        const nv = rw.rewrite(table, v);
        if (nv !== v) {
          out += `${line.slice(last, i)}'${sqlEscape(nv)}'`;
          last = j + 1;
        }
      }
      i = j + 1;
    } else if (c === 0x30 && line.charCodeAt(i + 1) === 0x78 && (line[i - 1] === ',' || line[i - 1] === '(')) {
      let j = i + 2;
      while (j < n && /[0-9A-Fa-f]/.test(line[j] as string)) j++;
      const hex = line.slice(i + 2, j);
      if (hexNeedles.some((h) => hex.includes(h))) {
        const v = Buffer.from(hex, 'hex').toString('latin1');
        const nv = rw.rewrite(table, v);
        if (nv !== v) {
          out += `${line.slice(last, i)}0x${Buffer.from(nv, 'latin1').toString('hex').toUpperCase()}`;
          last = j;
        }
      }
      i = j;
    } else i++;
  }
  return last === 0 ? line : out + line.slice(last);
}

/**
 * Copies the dump `from` to `to` with the site's own paths renamed (see the module comment).
 * Returns what changed. The input is read once, line by line, as bytes.
 * @throws SpokeError INVALID_DOMAIN; file errors as they come
 */
export async function rewriteDump(from: string, to: string, kind: PlatformKind, oldDomain: string, newDomain: string): Promise<DumpRewriteCount> {
  const rw = new SiteValueRewriter(kind, oldDomain, newDomain);
  const lr = new DumpLineRewriter(rw);
  async function* lines(): AsyncGenerator<Buffer> {
    let rest = '';
    for await (const chunk of createReadStream(from, { encoding: 'latin1', highWaterMark: 1 << 20 })) {
      const text = rest + (chunk as string);
      const parts = text.split('\n');
      rest = parts.pop() as string;
      yield Buffer.from(parts.map((l) => lr.line(l)).join('\n') + (parts.length ? '\n' : ''), 'latin1');
    }
    if (rest) yield Buffer.from(lr.line(rest), 'latin1');
  }
  await pipeline(Readable.from(lines()), createWriteStream(to, { mode: 0o600 }));
  return rw.count;
}
