/**
 * Renaming a site's data when a clone or a migrate gives it a new domain. The database copy goes
 * through a dump on the master; the statements built here are put into that dump just before its
 * `-- Dump completed` line, so the restore runs them in the same client session, inside the new
 * database only (the agent restores with `--one-database`, and no statement names a database).
 *
 * What is rewritten (only in tables and columns the dump creates):
 * - WordPress (`wp_` prefix, as Spoke's wp-config.php sets it): `siteurl` and `home` in
 *   `wp_options`; `://OLD` as a host (followed by `/ " ' ? # : < ) ] ,`, a space or the end of the
 *   value) in posts (guid, content, excerpt), post meta, comments (content, author url) and links.
 *   Values that look like serialized PHP (`a:N:{`, `O:N:"`, `s:N:"`, `i:N;`, `b:0;`, `d:…;`, `N;`)
 *   are left alone: replacing inside them would break their stored lengths, and PHP then drops the
 *   whole value. Other options (widgets, theme mods: serialized) are not touched; Spoke's
 *   wp-config.php sets WP_HOME and WP_SITEURL for the new domain anyway.
 * - Drupal: file paths are set in settings.php (`sites/<domain>/files`) and D7+ stores files as
 *   `public://` URIs, so the stored state is mostly path-free. Rewritten: D6 `files.filepath`
 *   (`sites/OLD/…` → `sites/NEW/…`); the `variable` rows `file_directory_path` /
 *   `file_public_path` whose whole serialized value is exactly `s:N:"sites/OLD/files";` (rebuilt
 *   with the new length); `sites/OLD/files/` in node bodies and custom blocks (plain text columns,
 *   same serialized-value guard); and every `cache`/`cache_*` table is emptied (cached render
 *   output and serialized data may hold old paths; Drupal rebuilds caches).
 * Domains are lowercase letters, digits, dots and hyphens (checked), so no literal here needs
 * escaping beyond doubled quotes, none uses a backslash (immune to NO_BACKSLASH_ESCAPES), and the
 * LIKE patterns hold no `_` or `%` of their own.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { checkDomain, fail } from '@spoke/shared';
import type { PlatformKind } from '../platforms/registry/index.js';

/** Tables of a dump and their columns. */
export type DumpSchema = Map<string, Set<string>>;

/** Characters that end a host name in a URL inside text. */
export const HOST_END = ['/', '"', "'", '?', '#', ':', '<', ')', ']', ',', ' '] as const;

/** A value that looks like serialized PHP (WordPress' is_serialized, as a MySQL/MariaDB regexp). */
export const SERIALIZED_RE = '^(a:[0-9]+:[{]|O:[0-9]+:"|C:[0-9]+:"|s:[0-9]+:"|i:-?[0-9]+;|b:[01];|d:[-0-9.eE+]+;|N;$)';

/** An SQL string literal (single quotes doubled; callers never pass backslashes). */
export function sqlString(s: string): string {
  if (s.includes('\\')) throw fail('INTERNAL', 'a rename literal holds a backslash');
  return `'${s.replace(/'/g, "''")}'`;
}

function ident(s: string): string {
  if (!/^[A-Za-z0-9_$]+$/.test(s)) throw fail('INTERNAL', `unexpected identifier ${JSON.stringify(s)}`);
  return `\`${s}\``;
}

/**
 * The expression that replaces the host `from` by `to` after `://` in column `col`: before each
 * of HOST_END, and at the very end of the value.
 */
export function hostReplaceExpr(col: string, from: string, to: string): string {
  const c = ident(col);
  const tail = `://${from}`;
  let e = `IF(RIGHT(${c}, ${tail.length}) = ${sqlString(tail)}, CONCAT(LEFT(${c}, CHAR_LENGTH(${c}) - ${tail.length}), ${sqlString(`://${to}`)}), ${c})`;
  for (const end of HOST_END) e = `REPLACE(${e}, ${sqlString(`://${from}${end}`)}, ${sqlString(`://${to}${end}`)})`;
  return e;
}

function hostUpdate(schema: DumpSchema, table: string, col: string, from: string, to: string, where = ''): string[] {
  if (!schema.get(table)?.has(col)) return [];
  const c = ident(col);
  return [
    `UPDATE ${ident(table)} SET ${c} = ${hostReplaceExpr(col, from, to)} WHERE ${c} LIKE ${sqlString(`%://${from}%`)} AND ${c} NOT REGEXP ${sqlString(SERIALIZED_RE)}${where};`,
  ];
}

function textUpdate(schema: DumpSchema, table: string, col: string, from: string, to: string): string[] {
  if (!schema.get(table)?.has(col)) return [];
  const c = ident(col);
  return [
    `UPDATE ${ident(table)} SET ${c} = REPLACE(${c}, ${sqlString(from)}, ${sqlString(to)}) WHERE ${c} LIKE ${sqlString(`%${from}%`)} AND ${c} NOT REGEXP ${sqlString(SERIALIZED_RE)};`,
  ];
}

/** A serialized PHP string, as PHP's serialize() writes it (length in bytes). */
export function phpSerializedString(s: string): string {
  return `s:${Buffer.byteLength(s, 'utf8')}:"${s}";`;
}

/**
 * The statements that rename a site's stored data from `from` to `to` (see the module comment).
 * Only tables and columns present in `schema` are touched. Empty when the domains are equal.
 * @throws SpokeError INVALID_DOMAIN
 */
export function renameStatements(kind: PlatformKind, from: string, to: string, schema: DumpSchema): string[] {
  checkDomain(from);
  checkDomain(to);
  if (from === to) return [];
  const out: string[] = [];
  if (kind === 'wordpress') {
    const p = 'wp_';
    if (schema.get(`${p}options`)?.has('option_value') && schema.get(`${p}options`)?.has('option_name')) {
      out.push(
        `UPDATE ${ident(`${p}options`)} SET \`option_value\` = ${hostReplaceExpr('option_value', from, to)} WHERE \`option_name\` IN ('siteurl', 'home');`,
      );
    }
    for (const col of ['guid', 'post_content', 'post_excerpt']) out.push(...hostUpdate(schema, `${p}posts`, col, from, to));
    out.push(...hostUpdate(schema, `${p}postmeta`, 'meta_value', from, to));
    for (const col of ['comment_content', 'comment_author_url']) out.push(...hostUpdate(schema, `${p}comments`, col, from, to));
    out.push(...hostUpdate(schema, `${p}links`, 'link_url', from, to));
    return out;
  }
  if (kind === 'drupal6' || kind === 'drupal7' || kind === 'drupal8') {
    const oldDir = `sites/${from}/`;
    const newDir = `sites/${to}/`;
    if (schema.get('files')?.has('filepath')) {
      out.push(
        `UPDATE \`files\` SET \`filepath\` = CONCAT(${sqlString(newDir)}, SUBSTRING(\`filepath\`, ${oldDir.length + 1})) WHERE LEFT(\`filepath\`, ${oldDir.length}) = ${sqlString(oldDir)};`,
      );
    }
    if (schema.get('variable')?.has('value') && schema.get('variable')?.has('name')) {
      out.push(
        `UPDATE \`variable\` SET \`value\` = ${sqlString(phpSerializedString(`${newDir}files`))} WHERE \`name\` IN ('file_directory_path', 'file_public_path') AND \`value\` = ${sqlString(phpSerializedString(`${oldDir}files`))};`,
      );
    }
    const bodies: [string, string][] = [
      ['node_revisions', 'body'],
      ['node_revisions', 'teaser'],
      ['boxes', 'body'],
      ['field_data_body', 'body_value'],
      ['field_data_body', 'body_summary'],
      ['field_revision_body', 'body_value'],
      ['field_revision_body', 'body_summary'],
      ['block_custom', 'body'],
      ['node__body', 'body_value'],
      ['node__body', 'body_summary'],
      ['node_revision__body', 'body_value'],
      ['node_revision__body', 'body_summary'],
      ['block_content__body', 'body_value'],
      ['block_content_revision__body', 'body_value'],
    ];
    for (const [t, c] of bodies) out.push(...textUpdate(schema, t, c, `${oldDir}files/`, `${newDir}files/`));
    for (const t of [...schema.keys()].sort()) if (t === 'cache' || t.startsWith('cache_')) out.push(`DELETE FROM ${ident(t)};`);
    return out;
  }
  throw fail('PLATFORM_KIND_UNSUPPORTED', `renaming a ${kind} site is not supported`);
}

/** The tables and columns a dump creates (from its CREATE TABLE blocks). */
export async function dumpSchema(file: string): Promise<DumpSchema> {
  const schema: DumpSchema = new Map();
  let current: Set<string> | null = null;
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const line of rl) {
    const t = /^CREATE TABLE `((?:[^`]|``)+)` \($/.exec(line);
    if (t) {
      current = new Set();
      schema.set((t[1] as string).replace(/``/g, '`'), current);
      continue;
    }
    if (!current) continue;
    const c = /^ {2}`((?:[^`]|``)+)` /.exec(line);
    if (c) current.add((c[1] as string).replace(/``/g, '`'));
    else if (line.startsWith(')')) current = null;
  }
  return schema;
}

/** The byte offset of the last line of a dump (`-- Dump completed …`). @throws SpokeError DB_DUMP_INCOMPLETE */
export async function dumpMarkerOffset(file: string): Promise<number> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, 4096);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const at = buf.lastIndexOf('\n-- Dump completed');
    if (at < 0) throw fail('DB_DUMP_INCOMPLETE', `${file}: no "-- Dump completed" line at its end`);
    return size - len + at + 1;
  } finally {
    await fh.close();
  }
}

/** The dump with `sql` put just before its last line (the completion marker stays last). */
export function dumpWithStatements(file: string, markerOffset: number, sql: string): Readable {
  if (!sql) return createReadStream(file);
  return Readable.from(
    (async function* () {
      if (markerOffset > 0) yield* createReadStream(file, { start: 0, end: markerOffset - 1 });
      yield Buffer.from(`-- Spoke: rename the site's stored data\n${sql}\n`, 'utf8');
      yield* createReadStream(file, { start: markerOffset });
    })(),
  );
}
