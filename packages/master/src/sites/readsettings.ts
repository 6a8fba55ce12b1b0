/**
 * Reading a site's database facts from its own settings file, for `site import`. Pure: the
 * content in, the facts out. Nothing of the site's code runs: a small PHP reader takes the
 * literal forms settings files use (assignments of strings, numbers, `array(...)`/`[...]`, string
 * concatenation, `define('X', literal)`) at the top level of the file, and ignores the rest.
 * What it cannot read as a literal (a value from `$_SERVER` or `getenv()`, as Aegir's settings
 * have, a function call, an include) is refused with a message saying which value and why, so the
 * operator can write the facts into the file as literals (or pass --rewrite-settings after
 * fixing it).
 *
 * Per kind:
 * - Drupal 6: `$db_url` (a string or `$db_url['default']`), `mysql://`/`mysqli://` only.
 * - Drupal 7/8+: `$databases['default']['default']` (driver mysql), the salt from
 *   `$drupal_hash_salt` (7) or `$settings['hash_salt']` (8+).
 * - WordPress: `DB_NAME`, `DB_USER`, `DB_PASSWORD`, `DB_HOST` (host, host:port, host:/socket),
 *   `$table_prefix`, `UPLOADS`.
 */
import { checkDbName, checkDbPassword, checkDbUser, fail, isSpokeError } from '@spoke/shared';
import type { PlatformKind } from '../platforms/registry/detect.js';
import { siteDir } from './settings.js';

/** What `site import` takes from a settings file. */
export interface ImportedSettings {
  /** The settings file, relative to the platform root. */
  file: string;
  db: { name: string; user: string; password: string; host: string; port: number };
  /** A Unix socket the site connects through (host is then `localhost`). */
  socket: string | null;
  /** Drupal's hash salt when it is a literal; null otherwise (WordPress: its keys stay in its file). */
  salt: string | null;
  /** Drupal table prefix / WordPress `$table_prefix` ('' when none). */
  prefix: string;
  /** WordPress `UPLOADS`, when defined as a literal. */
  uploads: string | null;
  /** Things the operator should know (logged by the import). */
  notes: string[];
}

/** The settings file of a site of this kind, relative to the platform root. */
export function settingsFileOf(kind: PlatformKind, domain: string): string {
  return `${siteDir(domain)}/${kind === 'wordpress' ? 'wp-config.php' : 'settings.php'}`;
}

// ---------------------------------------------------------------- a reader for literal PHP

const UNKNOWN = Symbol('not a literal');
type PhpValue = string | number | boolean | null | PhpArray | Unknown;
interface Unknown {
  [UNKNOWN]: true;
  /** The source text of the expression (for messages). */
  text: string;
}
class PhpArray {
  readonly entries = new Map<string, PhpValue>();
  private next = 0;
  set(key: string | number | null, v: PhpValue): void {
    if (key === null) key = this.next;
    if (typeof key === 'number' && key >= this.next) this.next = key + 1;
    this.entries.set(String(key), v);
  }
  get(key: string): PhpValue | undefined {
    return this.entries.get(key);
  }
}

const isUnknown = (v: PhpValue | undefined): v is Unknown => typeof v === 'object' && v !== null && !(v instanceof PhpArray) && UNKNOWN in v;

type Tok = { t: 'var' | 'id' | 'str' | 'num' | 'op'; v: string; literal?: boolean; pos: number };

/** Tokens of the PHP parts of a file (comments and inline HTML dropped). */
function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  let php = false;
  const n = src.length;
  while (i < n) {
    if (!php) {
      const at = src.indexOf('<?php', i);
      const short = src.indexOf('<?=', i);
      if (at < 0 && short < 0) break;
      const start = at < 0 ? short : short < 0 ? at : Math.min(at, short);
      i = start + (start === at ? 5 : 3);
      php = true;
      continue;
    }
    const c = src[i] as string;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (src.startsWith('?>', i)) {
      out.push({ t: 'op', v: ';', pos: i });
      php = false;
      i += 2;
      continue;
    }
    if (c === '#' && src[i + 1] !== '[') {
      while (i < n && src[i] !== '\n' && !src.startsWith('?>', i)) i++;
      continue;
    }
    if (src.startsWith('//', i)) {
      while (i < n && src[i] !== '\n' && !src.startsWith('?>', i)) i++;
      continue;
    }
    if (src.startsWith('/*', i)) {
      const end = src.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
      continue;
    }
    if (c === "'") {
      let s = '';
      let j = i + 1;
      for (; j < n && src[j] !== "'"; j++) {
        if (src[j] === '\\' && (src[j + 1] === "'" || src[j + 1] === '\\')) j++;
        s += src[j];
      }
      out.push({ t: 'str', v: s, literal: true, pos: i });
      i = j + 1;
      continue;
    }
    if (c === '"') {
      let s = '';
      let literal = true;
      let j = i + 1;
      const esc: Record<string, string> = { n: '\n', t: '\t', r: '\r', v: '\v', e: '\x1b', f: '\f', '\\': '\\', $: '$', '"': '"', '0': '\0' };
      for (; j < n && src[j] !== '"'; j++) {
        const ch = src[j] as string;
        if (ch === '\\' && j + 1 < n) {
          const e = src[j + 1] as string;
          if (e in esc) {
            s += esc[e];
            j++;
            continue;
          }
          s += ch;
          continue;
        }
        if (ch === '$' && /[A-Za-z_{]/.test(src[j + 1] ?? '')) literal = false;
        if (ch === '{' && src[j + 1] === '$') literal = false;
        s += ch;
      }
      out.push({ t: 'str', v: s, literal, pos: i });
      i = j + 1;
      continue;
    }
    if (src.startsWith('<<<', i)) {
      // heredoc/nowdoc: not read; skipped whole (its body could hold anything)
      const m = /^<<<[ \t]*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\1\r?\n/.exec(src.slice(i));
      if (m) {
        const endRe = new RegExp(`\\n[ \\t]*${m[2]}\\b`, 'g');
        endRe.lastIndex = i + m[0].length - 1;
        const e = endRe.exec(src);
        out.push({ t: 'str', v: '', literal: false, pos: i });
        i = e ? e.index + e[0].length : n;
        continue;
      }
    }
    if (c === '$' && /[A-Za-z_]/.test(src[i + 1] ?? '')) {
      const m = /^\$[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i, i + 256)) as RegExpExecArray;
      out.push({ t: 'var', v: m[0].slice(1), pos: i });
      i += m[0].length;
      continue;
    }
    if (/[A-Za-z_\\]/.test(c)) {
      const m = /^[A-Za-z_\\][A-Za-z0-9_\\]*/.exec(src.slice(i, i + 512)) as RegExpExecArray;
      out.push({ t: 'id', v: m[0], pos: i });
      i += m[0].length;
      continue;
    }
    if (/[0-9]/.test(c)) {
      const m = /^(0x[0-9a-fA-F]+|[0-9][0-9_]*(\.[0-9]+)?)/.exec(src.slice(i, i + 64)) as RegExpExecArray;
      out.push({ t: 'num', v: m[0].replace(/_/g, ''), pos: i });
      i += m[0].length;
      continue;
    }
    const ops = ['=>', '===', '!==', '==', '!=', '<=', '>=', '::', '->', '??=', '??', '.=', '+=', '-=', '&&', '||'];
    const op = ops.find((o) => src.startsWith(o, i)) ?? c;
    out.push({ t: 'op', v: op, pos: i });
    i += op.length;
  }
  return out;
}

/** One assignment the reader understood, at the top level of the file or inside a block. */
interface Assignment {
  path: (string | null)[];
  value: PhpValue;
  nested: boolean;
}

interface Parsed {
  vars: Map<string, PhpValue>;
  consts: Map<string, PhpValue>;
  /** Assignments and defines inside blocks (if/function/...), not applied. */
  nested: Set<string>;
  includes: string[];
}

class Reader {
  private i = 0;
  constructor(
    private readonly toks: Tok[],
    private readonly src: string,
  ) {}

  private peek(k = 0): Tok | undefined {
    return this.toks[this.i + k];
  }
  private isOp(v: string, k = 0): boolean {
    const t = this.peek(k);
    return !!t && t.t === 'op' && t.v === v;
  }

  parse(): Parsed {
    const out: Parsed = { vars: new Map(), consts: new Map(), nested: new Set(), includes: [] };
    let depth = 0;
    const assignments: Assignment[] = [];
    while (this.i < this.toks.length) {
      const t = this.peek() as Tok;
      if (t.t === 'op' && t.v === '{') {
        depth++;
        this.i++;
        continue;
      }
      if (t.t === 'op' && t.v === '}') {
        depth = Math.max(0, depth - 1);
        this.i++;
        continue;
      }
      if (t.t === 'op' && t.v === ';') {
        this.i++;
        continue;
      }
      const start = this.i;
      const a = this.statement(out);
      if (a) assignments.push({ ...a, nested: depth > 0 });
      if (this.i === start) this.skipStatement(out);
    }
    for (const a of assignments) {
      const [head, ...rest] = a.path;
      if (head === null || head === undefined) continue;
      const key = head.startsWith('const:') ? head : `var:${head}`;
      if (a.nested) {
        out.nested.add(key.replace(/^(var|const):/, ''));
        continue;
      }
      if (head.startsWith('const:')) {
        if (!out.consts.has(head.slice(6))) out.consts.set(head.slice(6), a.value); // define() keeps the first
        continue;
      }
      if (rest.length === 0) {
        out.vars.set(head, a.value);
        continue;
      }
      let cur = out.vars.get(head);
      if (!(cur instanceof PhpArray)) {
        cur = new PhpArray();
        out.vars.set(head, cur);
      }
      let arr: PhpArray = cur;
      for (let k = 0; k < rest.length - 1; k++) {
        const key2 = rest[k] as string | null;
        let nxt = key2 === null ? undefined : arr.get(key2);
        if (!(nxt instanceof PhpArray)) {
          nxt = new PhpArray();
          arr.set(key2, nxt);
        }
        arr = nxt;
      }
      arr.set(rest[rest.length - 1] as string | null, a.value);
    }
    return out;
  }

  /** Skips to the end of a statement (`;` at this level) or to a block's `{`/`}`, noting includes. */
  private skipStatement(out: Parsed): void {
    let paren = 0;
    while (this.i < this.toks.length) {
      const t = this.peek() as Tok;
      if (t.t === 'id' && /^(include|require)(_once)?$/i.test(t.v)) {
        const nx = this.peek(1);
        out.includes.push(nx && nx.t === 'str' && nx.literal ? nx.v : this.src.slice(t.pos, this.lineEnd(t.pos)).trim());
      }
      if (t.t === 'op' && (t.v === '(' || t.v === '[')) paren++;
      if (t.t === 'op' && (t.v === ')' || t.v === ']')) paren = Math.max(0, paren - 1);
      if (paren === 0 && t.t === 'op' && (t.v === '{' || t.v === '}')) return;
      this.i++;
      if (paren === 0 && t.t === 'op' && t.v === ';') return;
    }
  }

  private lineEnd(pos: number): number {
    const e = this.src.indexOf('\n', pos);
    return e < 0 ? this.src.length : e;
  }

  /** `$a['x'][...] = expr;` or `define('X', expr);` or `const X = expr;`; null for anything else. */
  private statement(out: Parsed): { path: (string | null)[]; value: PhpValue } | null {
    const t = this.peek() as Tok;
    if (t.t === 'var') {
      const save = this.i;
      this.i++;
      const path: (string | null)[] = [t.v];
      while (this.isOp('[')) {
        this.i++;
        if (this.isOp(']')) {
          this.i++;
          path.push(null);
          continue;
        }
        const k = this.expr();
        if (!this.isOp(']') || isUnknown(k) || k instanceof PhpArray) {
          this.i = save;
          return null;
        }
        this.i++;
        path.push(k === null ? '' : typeof k === 'boolean' ? (k ? '1' : '0') : String(k));
      }
      if (!this.isOp('=')) {
        this.i = save;
        return null;
      }
      this.i++;
      const value = this.expr();
      if (!this.isOp(';')) {
        this.i = save;
        this.skipStatement(out);
        return { path, value: { [UNKNOWN]: true, text: '(an expression Spoke does not read)' } };
      }
      this.i++;
      return { path, value };
    }
    if (t.t === 'id' && t.v.toLowerCase() === 'define' && this.isOp('(', 1)) {
      const save = this.i;
      this.i += 2;
      const name = this.expr();
      if (typeof name !== 'string' || !this.isOp(',')) {
        this.i = save;
        return null;
      }
      this.i++;
      const value = this.expr();
      while (this.isOp(',')) {
        this.i++;
        this.expr();
      }
      if (!this.isOp(')')) {
        this.i = save;
        return null;
      }
      this.i++;
      return { path: [`const:${name}`], value };
    }
    if (t.t === 'id' && t.v.toLowerCase() === 'const') {
      const nameTok = this.peek(1);
      if (nameTok?.t === 'id' && this.isOp('=', 2)) {
        this.i += 3;
        const value = this.expr();
        return { path: [`const:${nameTok.v}`], value };
      }
    }
    return null;
  }

  /** An expression: literals, arrays, concatenation of literals; anything else is Unknown. */
  private expr(): PhpValue {
    const from = this.i;
    let v = this.term();
    while (this.isOp('.')) {
      this.i++;
      const r = this.term();
      v = typeof v === 'string' && typeof r === 'string' ? v + r : this.unknownFrom(from);
    }
    if (this.atExprEnd()) return v;
    // something else follows (an operator, a call): skip to the end of the expression
    this.skipExpr();
    return this.unknownFrom(from);
  }

  private atExprEnd(): boolean {
    const t = this.peek();
    return !t || (t.t === 'op' && [';', ',', ')', ']', '=>'].includes(t.v));
  }

  private skipExpr(): void {
    let depth = 0;
    while (this.i < this.toks.length) {
      const t = this.peek() as Tok;
      if (t.t === 'op' && ['(', '[', '{'].includes(t.v)) depth++;
      else if (t.t === 'op' && [')', ']', '}'].includes(t.v)) {
        if (depth === 0) return;
        depth--;
      } else if (depth === 0 && t.t === 'op' && [';', ',', '=>'].includes(t.v)) return;
      this.i++;
    }
  }

  private unknownFrom(from: number): Unknown {
    const a = this.toks[from];
    const end = this.toks[this.i]?.pos ?? this.src.length;
    const text = a ? this.src.slice(a.pos, Math.max(a.pos, end)).replace(/\s+/g, ' ').trim() : '';
    return { [UNKNOWN]: true, text: text.length > 100 ? `${text.slice(0, 100)}…` : text || '?' };
  }

  private term(): PhpValue {
    const from = this.i;
    const t = this.peek();
    if (!t) return this.unknownFrom(from);
    if (t.t === 'str') {
      this.i++;
      return t.literal ? t.v : this.unknownFrom(from);
    }
    if (t.t === 'num') {
      this.i++;
      return Number(t.v);
    }
    if (t.t === 'op' && t.v === '-' && this.peek(1)?.t === 'num') {
      this.i += 2;
      return -Number(this.toks[this.i - 1]?.v);
    }
    if (t.t === 'op' && t.v === '(') {
      this.i++;
      const v = this.expr();
      if (this.isOp(')')) {
        this.i++;
        return v;
      }
      this.skipExpr();
      return this.unknownFrom(from);
    }
    if (t.t === 'op' && t.v === '[') {
      this.i++;
      return this.arrayBody(']', from);
    }
    if (t.t === 'id') {
      const low = t.v.toLowerCase();
      if (low === 'array' && this.isOp('(', 1)) {
        this.i += 2;
        return this.arrayBody(')', from);
      }
      if (low === 'true' || low === 'false') {
        this.i++;
        return low === 'true';
      }
      if (low === 'null') {
        this.i++;
        return null;
      }
    }
    // a variable, a call, a constant: not read; the rest of the expression goes with it
    this.i++;
    this.skipExpr();
    return this.unknownFrom(from);
  }

  private arrayBody(close: string, from: number): PhpValue {
    const arr = new PhpArray();
    let bad = false;
    while (this.i < this.toks.length && !this.isOp(close)) {
      const k = this.expr();
      if (this.isOp('=>')) {
        this.i++;
        const v = this.expr();
        if (isUnknown(k) || k instanceof PhpArray) bad = true;
        else arr.set(typeof k === 'number' ? k : k === null ? '' : String(k), v);
      } else {
        arr.set(null, k);
      }
      if (this.isOp(',')) this.i++;
      else if (!this.isOp(close)) {
        this.skipExpr();
        if (this.isOp(',')) this.i++;
        else if (!this.isOp(close)) break;
      }
    }
    if (this.isOp(close)) this.i++;
    return bad ? this.unknownFrom(from) : arr;
  }
}

/** The top-level literal assignments and defines of a PHP file (for tests and import). */
export function readPhpLiterals(src: string): Parsed {
  return new Reader(tokenize(src), src).parse();
}

// ---------------------------------------------------------------- per kind

function describe(v: PhpValue | undefined): string {
  if (v === undefined) return 'missing';
  if (isUnknown(v)) return `not a literal (${v.text})`;
  if (v instanceof PhpArray) return 'an array';
  return JSON.stringify(v);
}

function unreadable(file: string, what: string, v: PhpValue | undefined, hint = ''): never {
  const fromServer = isUnknown(v) && /\$_SERVER|getenv|\$_ENV/.test(v.text);
  throw fail(
    'SETTINGS_UNREADABLE',
    `${file}: ${what} is ${describe(v)}${fromServer ? '; the value comes from the environment (Aegir keeps database credentials in the vhost): write it into the settings file as a literal before the import' : ''}${hint}`,
  );
}

function noDatabase(file: string, p: Parsed, what: string, name: string): never {
  const nested = p.nested.has(name) ? `; ${what} is only set inside a block (if/function), which Spoke does not evaluate` : '';
  const inc = p.includes.length ? `; the file includes ${p.includes.slice(0, 3).join(', ')}, which Spoke does not follow` : '';
  throw fail('SETTINGS_UNREADABLE', `${file} sets no database (${what} not found at the top level of the file${nested}${inc}); nothing to import`);
}

function str(file: string, what: string, v: PhpValue | undefined, opts: { optional?: string; number?: boolean } = {}): string {
  if (v === undefined && opts.optional !== undefined) return opts.optional;
  if (typeof v === 'string') return v;
  if (opts.number && typeof v === 'number' && Number.isInteger(v)) return String(v);
  return unreadable(file, what, v);
}

/** Host and port (and socket) from a WordPress DB_HOST or Drupal host/port. */
function hostPort(file: string, host: string, port: string): { host: string; port: number; socket: string | null } {
  let h = host.trim() || 'localhost';
  let p = port.trim();
  let socket: string | null = null;
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(h);
  if (v6) {
    h = v6[1] as string;
    p = v6[2] ?? p;
  } else if (h.startsWith('/')) {
    socket = h;
    h = 'localhost';
  } else if (h.includes(':') && h.split(':').length === 2) {
    const [a, b] = h.split(':') as [string, string];
    h = a || 'localhost';
    if (b.startsWith('/')) socket = b;
    else p = b;
  }
  const n = p === '' ? 3306 : Number(p);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw fail('SETTINGS_UNREADABLE', `${file}: database port ${JSON.stringify(p)} is not a port`);
  if (!/^[A-Za-z0-9._-]{1,253}$|^[0-9A-Fa-f:.]{2,45}$/.test(h))
    throw fail('SETTINGS_UNREADABLE', `${file}: database host ${JSON.stringify(h)} is not a host name or address`);
  return { host: h, port: n, socket };
}

/** Checks the database facts against the rules of the databases Spoke manages. */
function checkFacts(file: string, db: ImportedSettings['db']): void {
  try {
    checkDbName(db.name);
    checkDbUser(db.user);
    checkDbPassword(db.password);
  } catch (e) {
    if (!isSpokeError(e)) throw e;
    throw fail(
      'SETTINGS_UNREADABLE',
      `${file}: ${e.message.replace(/^the site /, 'the ')}; Spoke manages only databases that follow its rules: rename the database or user, or change the password (in the database and in the settings file), then import again`,
    );
  }
}

/**
 * Reads the database facts (and salt) of a site from the content of its settings file.
 * @throws SpokeError SETTINGS_UNREADABLE (no database, a value that is not a literal, a driver
 *   other than MySQL/MariaDB, names Spoke cannot manage), PLATFORM_KIND_UNSUPPORTED
 */
export function readSiteSettings(kind: PlatformKind, domain: string, content: string): ImportedSettings {
  const file = settingsFileOf(kind, domain);
  if (content.includes('\0')) throw fail('SETTINGS_UNREADABLE', `${file} is not a text file`);
  const p = readPhpLiterals(content);
  const notes: string[] = [];
  let out: ImportedSettings;
  switch (kind) {
    case 'drupal6': {
      let url = p.vars.get('db_url');
      if (url instanceof PhpArray) url = url.get('default');
      if (url === undefined) noDatabase(file, p, '$db_url', 'db_url');
      const s = str(file, '$db_url', url);
      const m = /^(mysqli?):\/\/([^:@/]*)(?::([^@/]*))?@([^/]+)\/([^?#]+)$/.exec(s);
      if (!m) {
        if (/^pgsql:/.test(s)) throw fail('SETTINGS_UNREADABLE', `${file}: the database is PostgreSQL; Spoke manages MySQL/MariaDB databases only`);
        throw fail('SETTINGS_UNREADABLE', `${file}: $db_url is not a mysql:// or mysqli:// URL with a user, host and database`);
      }
      const dec = (x: string | undefined) => {
        try {
          return decodeURIComponent(x ?? '');
        } catch {
          throw fail('SETTINGS_UNREADABLE', `${file}: $db_url has a bad %-escape`);
        }
      };
      const hp = hostPort(file, dec(m[4]), '');
      out = {
        file,
        db: { name: dec(m[5]), user: dec(m[2]), password: dec(m[3]), host: hp.host, port: hp.port },
        socket: hp.socket,
        salt: null,
        prefix: '',
        uploads: null,
        notes,
      };
      const prefix = p.vars.get('db_prefix');
      if (typeof prefix === 'string') out.prefix = prefix;
      break;
    }
    case 'drupal7':
    case 'drupal8': {
      const dbs = p.vars.get('databases');
      const def = dbs instanceof PhpArray ? dbs.get('default') : undefined;
      const conn = def instanceof PhpArray ? def.get('default') : undefined;
      if (dbs === undefined) noDatabase(file, p, "$databases['default']['default']", 'databases');
      if (!(conn instanceof PhpArray)) unreadable(file, "$databases['default']['default']", conn);
      const driver = str(file, "the database 'driver'", conn.get('driver'), { optional: 'mysql' });
      if (driver !== 'mysql') throw fail('SETTINGS_UNREADABLE', `${file}: the database driver is ${driver}; Spoke manages MySQL/MariaDB databases only`);
      const socket = conn.get('unix_socket');
      const hp = hostPort(
        file,
        str(file, "the database 'host'", conn.get('host'), { optional: 'localhost' }),
        str(file, "the database 'port'", conn.get('port'), { optional: '', number: true }),
      );
      out = {
        file,
        db: {
          name: str(file, "the database 'database'", conn.get('database')),
          user: str(file, "the database 'username'", conn.get('username')),
          password: str(file, "the database 'password'", conn.get('password'), { optional: '' }),
          host: hp.host,
          port: hp.port,
        },
        socket: typeof socket === 'string' && socket ? socket : hp.socket,
        salt: null,
        prefix: typeof conn.get('prefix') === 'string' ? (conn.get('prefix') as string) : '',
        uploads: null,
        notes,
      };
      if (conn.get('prefix') instanceof PhpArray) notes.push('the database prefix is per table; kept as it is in the settings file');
      const salt =
        kind === 'drupal7'
          ? p.vars.get('drupal_hash_salt')
          : (() => {
              const st = p.vars.get('settings');
              return st instanceof PhpArray ? st.get('hash_salt') : undefined;
            })();
      if (typeof salt === 'string' && salt) out.salt = salt;
      else
        notes.push(
          `the hash salt (${kind === 'drupal7' ? '$drupal_hash_salt' : "$settings['hash_salt']"}) is ${describe(salt)}; Spoke keeps a new salt of its own`,
        );
      break;
    }
    case 'wordpress': {
      const name = p.consts.get('DB_NAME');
      if (name === undefined) {
        const nested = p.nested.has('DB_NAME') ? '; DB_NAME is only defined inside a block (if/function), which Spoke does not evaluate' : '';
        const inc = p.includes.length ? `; the file includes ${p.includes.slice(0, 3).join(', ')}, which Spoke does not follow` : '';
        throw fail('SETTINGS_UNREADABLE', `${file} defines no database (DB_NAME not found at the top level of the file${nested}${inc}); nothing to import`);
      }
      const hp = hostPort(file, str(file, 'DB_HOST', p.consts.get('DB_HOST'), { optional: 'localhost' }), '');
      const prefix = p.vars.get('table_prefix');
      const uploads = p.consts.get('UPLOADS');
      out = {
        file,
        db: {
          name: str(file, 'DB_NAME', name),
          user: str(file, 'DB_USER', p.consts.get('DB_USER')),
          password: str(file, 'DB_PASSWORD', p.consts.get('DB_PASSWORD'), { optional: '' }),
          host: hp.host,
          port: hp.port,
        },
        socket: hp.socket,
        salt: null,
        prefix: typeof prefix === 'string' ? prefix : 'wp_',
        uploads: typeof uploads === 'string' ? uploads : null,
        notes,
      };
      if (prefix !== undefined && typeof prefix !== 'string') notes.push(`$table_prefix is ${describe(prefix)}; assumed wp_`);
      if (out.uploads !== `${siteDir(domain)}/files`) {
        notes.push(
          `UPLOADS is ${out.uploads === null ? 'not defined' : JSON.stringify(out.uploads)}: uploads then land outside ${siteDir(domain)}/files, which is the only place Spoke keeps user files (converge replaces the rest of the tree); define UPLOADS as '${siteDir(domain)}/files'`,
        );
      }
      break;
    }
    default:
      throw fail('PLATFORM_KIND_UNSUPPORTED', `Spoke imports Drupal 6/7/8+ and WordPress sites only, not ${kind}`);
  }
  checkFacts(file, out.db);
  return out;
}
