/**
 * Parsers for Drupal extension info files: the INI-like `.info` format of Drupal 6/7 (a port of
 * drupal_parse_info_format() from Drupal 7 includes/common.inc) and the `.info.yml` format of
 * Drupal 8 and later. Neither parser throws on a broken file: it returns `{ ok: false, error }`
 * so the caller can report the path and carry on.
 */
import { readFile } from 'node:fs/promises';
import { isAlias, isMap, isScalar, isSeq, parseDocument, type Document } from 'yaml';

/** A leaf value: INI values are strings (TRUE/FALSE/NULL become booleans/null); YAML keeps its booleans and nulls. */
export type InfoScalar = string | boolean | null;
/** Any value found in an info file. */
export type InfoValue = InfoScalar | InfoValue[] | InfoObject;
/** A mapping from an info file (the top level is always one). */
export interface InfoObject {
  [key: string]: InfoValue;
}

/** The outcome of parsing one info file; never thrown. */
export type InfoParseResult = { ok: true; data: InfoObject } | { ok: false; error: string };

/**
 * PHP-array-like ordered tree used internally (and by the makefile loader) so that order and PHP's
 * `count()`-based `[]` numbering are kept exactly. Keys are strings ("0", "1", … for list items).
 */
export type PhpValue = InfoScalar | PhpArray;
/** See PhpValue. */
export type PhpArray = Map<string, PhpValue>;

// drupal_parse_info_format()'s pattern, with the /x whitespace removed. PCRE's \s (space, \t, \n,
// \v, \f, \r) is spelled out because JS's \s also matches Unicode spaces. (?<=\\)" is PHP's
// (?<=\\\\)" inside a single-quoted PHP string: a quote preceded by a backslash.
const WS = '[ \\t\\n\\x0B\\f\\r]';
const INFO_LINE = new RegExp(
  `^${WS}*((?:[^=;\\[\\]]|\\[[^\\[\\]]*\\])+?)${WS}*=${WS}*` + `(?:("(?:[^"]|(?<=\\\\)")*")|('(?:[^']|(?<=\\\\)')*')|([^\\r\\n]*?))${WS}*$`,
  'gm',
);

/** PHP stripslashes(): drops each backslash, keeping the character after it (`\0` becomes NUL). */
function stripslashes(s: string): string {
  return s.replace(/\\([\s\S]?)/g, (_m, c: string) => (c === '0' ? '\0' : c));
}

/**
 * Parses text in Drupal's `.info` format into an ordered PHP-like tree, exactly as Drupal 7's
 * drupal_parse_info_format() does, except that the only constants substituted are TRUE, FALSE
 * and NULL (case-insensitive, as in PHP). Lines that do not match are ignored, as in Drupal.
 */
export function parseInfoTree(text: string): PhpArray {
  const info: PhpArray = new Map();
  for (const m of text.matchAll(INFO_LINE)) {
    const key = m[1] ?? '';
    const v1 = m[2] ?? '';
    const v2 = m[3] ?? '';
    const v3 = m[4] ?? '';
    const raw = stripslashes(v1.slice(1, -1)) + stripslashes(v2.slice(1, -1)) + v3;
    // Parse array syntax: foo[bar][] → ['foo', 'bar', ''].
    const keys = key.replace(/\]+$/, '').split(/\]?\[/);
    let last = keys.pop() ?? '';
    let parent = info;
    for (let k of keys) {
      if (k === '') k = String(parent.size);
      const existing = parent.get(k);
      if (existing instanceof Map) {
        parent = existing;
      } else {
        const created: PhpArray = new Map();
        parent.set(k, created);
        parent = created;
      }
    }
    let value: InfoScalar = raw;
    if (/^true$/i.test(raw)) value = true;
    else if (/^false$/i.test(raw)) value = false;
    else if (/^null$/i.test(raw)) value = null;
    if (last === '') last = String(parent.size);
    parent.set(last, value);
  }
  return info;
}

/** Sets `obj[key] = value` as an own property, even for keys such as `__proto__`. */
export function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Converts a PHP-like tree to plain JSON-able values: a map keyed exactly 0..n-1 becomes an array. */
export function phpToPlain(value: PhpValue): InfoValue {
  if (!(value instanceof Map)) return value;
  let i = 0;
  let isList = true;
  for (const k of value.keys()) {
    if (k !== String(i++)) {
      isList = false;
      break;
    }
  }
  if (isList) return [...value.values()].map(phpToPlain);
  const out: InfoObject = {};
  for (const [k, v] of value) setOwn(out, k, phpToPlain(v));
  return out;
}

/**
 * Parses Drupal 6/7 `.info` text. Fails only for text that cannot be an info file: a NUL byte
 * (binary), or no `key = value` pair at all.
 */
export function parseInfoIni(text: string): InfoParseResult {
  if (text.includes('\0')) return { ok: false, error: 'not a text file (contains NUL bytes)' };
  const tree = parseInfoTree(text);
  if (tree.size === 0) {
    const empty = text.split(/\r?\n/).every((l) => l.trim() === '' || l.trimStart().startsWith(';'));
    return { ok: false, error: empty ? 'empty info file' : 'no "key = value" lines found' };
  }
  const data = phpToPlain(tree);
  return { ok: true, data: Array.isArray(data) ? listToObject(data) : (data as InfoObject) };
}

function listToObject(list: InfoValue[]): InfoObject {
  const out: InfoObject = {};
  list.forEach((v, i) => setOwn(out, String(i), v));
  return out;
}

/**
 * Converts a parsed YAML document into a PHP-like ordered tree. Numbers keep their source text
 * (so `version: 1.10` stays "1.10", never 1.1); sequences become maps keyed "0", "1", ….
 */
export function yamlToTree(doc: Document): PhpValue {
  const seen = new Set<unknown>();
  const conv = (node: unknown): PhpValue => {
    if (isAlias(node)) {
      if (seen.has(node)) throw new Error('recursive YAML alias');
      seen.add(node);
      const target = node.resolve(doc);
      const out = conv(target);
      seen.delete(node);
      return out;
    }
    if (isScalar(node)) {
      const v = node.value;
      if (v === null || v === undefined) return null;
      if (typeof v === 'boolean' || typeof v === 'string') return v;
      if (typeof v === 'number' || typeof v === 'bigint') return node.source ?? String(v);
      return String(v);
    }
    if (isMap(node)) {
      const out: PhpArray = new Map();
      for (const pair of node.items) {
        const k = conv(pair.key);
        const key = k === null ? '' : k instanceof Map ? '' : String(k);
        out.set(key, conv(pair.value));
      }
      return out;
    }
    if (isSeq(node)) {
      const out: PhpArray = new Map();
      node.items.forEach((item, i) => out.set(String(i), conv(item)));
      return out;
    }
    return null;
  };
  return conv(doc.contents);
}

/**
 * Parses YAML text into a PHP-like tree, or returns the first YAML error. `mapping` tells whether
 * the document's top level is a mapping (sequences also become maps in the tree).
 */
export function parseYamlTree(text: string): { ok: true; tree: PhpValue; mapping: boolean } | { ok: false; error: string } {
  try {
    const doc = parseDocument(text, { prettyErrors: false });
    const err = doc.errors[0];
    if (err) return { ok: false, error: `invalid YAML: ${firstLine(err.message)}` };
    return { ok: true, tree: yamlToTree(doc), mapping: isMap(doc.contents) };
  } catch (e) {
    return { ok: false, error: `invalid YAML: ${firstLine(e instanceof Error ? e.message : String(e))}` };
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

/** Parses Drupal 8+ `.info.yml` text. Fails on YAML errors and when the top level is not a mapping. */
export function parseInfoYaml(text: string): InfoParseResult {
  const r = parseYamlTree(text);
  if (!r.ok) return r;
  if (!r.mapping || !(r.tree instanceof Map)) {
    return { ok: false, error: r.tree === null ? 'empty info file' : 'top level is not a mapping' };
  }
  const data = phpToPlain(r.tree);
  return { ok: true, data: Array.isArray(data) ? listToObject(data) : (data as InfoObject) };
}

/**
 * Reads and parses an info file, choosing the format by name (`.info.yml`/`.yml` → YAML,
 * anything else → INI). Read errors are returned, not thrown.
 */
export async function parseInfoFile(path: string): Promise<InfoParseResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, error: `cannot read: ${code ?? (e instanceof Error ? e.message : String(e))}` };
  }
  return /\.ya?ml$/i.test(path) ? parseInfoYaml(text) : parseInfoIni(text);
}

/** PHP's empty()-negation for info values: false, null, '', '0' and empty arrays are false. */
export function phpTruthy(v: InfoValue | undefined): boolean {
  if (v === undefined || v === null || v === false) return false;
  if (typeof v === 'string') return v !== '' && v !== '0';
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

/** The value at `key` if it is a non-empty string (or a YAML number kept as text), else null. */
export function infoString(data: InfoObject, key: string): string | null {
  const v = Object.prototype.hasOwnProperty.call(data, key) ? data[key] : undefined;
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}
