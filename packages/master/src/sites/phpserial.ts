/**
 * PHP's serialize() format, read and written back byte for byte, so a string inside a serialized
 * value can be changed and every length written again (what WP-CLI's search-replace does with
 * unserialize → replace → serialize, without running PHP). Values are handled as "binary"
 * strings: one JS char per byte (latin1), so `s:N:` lengths are string lengths.
 *
 * Understood: `N;`, `b:`, `i:`, `d:`, `s:N:"…";`, `a:N:{…}`, `O:N:"class":N:{…}`, references
 * `r:`/`R:` and enums `E:` (kept as they are), and `C:N:"class":N:{…}` (a class's own format:
 * kept as it is, nothing inside is changed). Anything else (`S:`, a length that does not fit,
 * trailing bytes) is not a serialized value: parsePhp throws and the caller leaves it alone.
 */

/** A parsed serialized value. Scalars keep their exact text; strings and containers are rebuilt. */
export type PhpValue =
  { t: 'raw'; text: string } | { t: 's'; v: string } | { t: 'a'; items: [PhpValue, PhpValue][] } | { t: 'O'; cls: string; items: [PhpValue, PhpValue][] };

/** Deeper nesting than this is refused (a hostile value must not exhaust the stack). */
const MAX_DEPTH = 512;

class NotSerialized extends Error {}

/** True when `s` starts like a serialized value (WordPress' is_serialized, loosely). */
export function looksSerialized(s: string): boolean {
  return /^(a:\d+:\{|O:\d+:"|C:\d+:"|s:\d+:"|i:-?\d+;|b:[01];|d:[-0-9.eE+INFAN]+;|N;$|E:\d+:")/.test(s);
}

/** Parses a whole serialized value. @throws Error when `s` is not exactly one serialized value */
export function parsePhp(s: string): PhpValue {
  const p = new Reader(s);
  const v = p.value(0);
  if (p.pos !== s.length) throw new NotSerialized(`trailing bytes at ${p.pos}`);
  return v;
}

/** Writes a parsed value back (lengths of rebuilt strings recounted). */
export function serializePhp(v: PhpValue): string {
  switch (v.t) {
    case 'raw':
      return v.text;
    case 's':
      return `s:${v.v.length}:"${v.v}";`;
    case 'a':
      return `a:${v.items.length}:{${v.items.map(([k, x]) => serializePhp(k) + serializePhp(x)).join('')}}`;
    case 'O':
      return `O:${v.cls.length}:"${v.cls}":${v.items.length}:{${v.items.map(([k, x]) => serializePhp(k) + serializePhp(x)).join('')}}`;
  }
}

/**
 * Applies `edit` to every string value (not to array keys or property names) of a parsed value,
 * in place. Returns true when some string changed.
 */
export function mapPhpStrings(v: PhpValue, edit: (s: string) => string): boolean {
  if (v.t === 's') {
    const n = edit(v.v);
    if (n === v.v) return false;
    v.v = n;
    return true;
  }
  if (v.t === 'raw') return false;
  let changed = false;
  for (const pair of v.items) if (mapPhpStrings(pair[1], edit)) changed = true;
  return changed;
}

class Reader {
  pos = 0;
  constructor(private readonly s: string) {}

  private expect(lit: string): void {
    if (!this.s.startsWith(lit, this.pos)) throw new NotSerialized(`expected ${JSON.stringify(lit)} at ${this.pos}`);
    this.pos += lit.length;
  }

  /** Digits (optionally signed) up to `end`, which is consumed. */
  private int(end: string, signed = false): number {
    const re = signed ? /-?\d+/y : /\d+/y;
    re.lastIndex = this.pos;
    const m = re.exec(this.s);
    if (!m) throw new NotSerialized(`expected a number at ${this.pos}`);
    this.pos += m[0].length;
    this.expect(end);
    const n = Number(m[0]);
    if (!Number.isSafeInteger(n)) throw new NotSerialized(`number out of range at ${this.pos}`);
    return n;
  }

  /** `N:"<N bytes>"` (the length prefix and quotes), returning the bytes. */
  private counted(): string {
    const n = this.int(':');
    this.expect('"');
    if (this.pos + n > this.s.length) throw new NotSerialized(`length ${n} runs past the end`);
    const v = this.s.slice(this.pos, this.pos + n);
    this.pos += n;
    this.expect('"');
    return v;
  }

  private rawUntil(end: string): PhpValue {
    const start = this.pos - 2;
    const at = this.s.indexOf(end, this.pos);
    if (at < 0) throw new NotSerialized(`unterminated value at ${start}`);
    this.pos = at + end.length;
    return { t: 'raw', text: this.s.slice(start, this.pos) };
  }

  private items(n: number, depth: number): [PhpValue, PhpValue][] {
    this.expect('{');
    const out: [PhpValue, PhpValue][] = [];
    for (let i = 0; i < n; i++) {
      const k = this.value(depth + 1);
      if (k.t !== 's' && !(k.t === 'raw' && k.text.startsWith('i:'))) throw new NotSerialized(`a key must be a string or an integer (at ${this.pos})`);
      out.push([k, this.value(depth + 1)]);
    }
    this.expect('}');
    return out;
  }

  value(depth: number): PhpValue {
    if (depth > MAX_DEPTH) throw new NotSerialized('nested too deeply');
    const tag = this.s.slice(this.pos, this.pos + 2);
    this.pos += 2;
    switch (tag) {
      case 'N;':
        return { t: 'raw', text: 'N;' };
      case 'b:':
      case 'i:':
      case 'r:':
      case 'R:': {
        const start = this.pos - 2;
        this.int(';', tag === 'i:');
        return { t: 'raw', text: this.s.slice(start, this.pos) };
      }
      case 'd:':
        return this.rawUntil(';');
      case 's:': {
        const v = this.counted();
        this.expect(';');
        return { t: 's', v };
      }
      case 'E:': {
        const start = this.pos - 2;
        this.counted();
        this.expect(';');
        return { t: 'raw', text: this.s.slice(start, this.pos) };
      }
      case 'a:':
        return { t: 'a', items: this.items(this.int(':'), depth) };
      case 'O:': {
        const cls = this.counted();
        this.expect(':');
        return { t: 'O', cls, items: this.items(this.int(':'), depth) };
      }
      case 'C:': {
        const start = this.pos - 2;
        this.counted();
        this.expect(':');
        const n = this.int(':');
        this.expect('{');
        if (this.pos + n > this.s.length) throw new NotSerialized(`length ${n} runs past the end`);
        this.pos += n;
        this.expect('}');
        return { t: 'raw', text: this.s.slice(start, this.pos) };
      }
      default:
        throw new NotSerialized(`unknown tag ${JSON.stringify(tag)} at ${this.pos - 2}`);
    }
  }
}
