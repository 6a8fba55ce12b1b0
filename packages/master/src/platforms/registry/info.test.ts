import { afterAll, describe, expect, it } from 'vitest';
import { parseInfoFile, parseInfoIni, parseInfoYaml, phpTruthy } from './info.js';
import { makeTree } from './testTree.js';

function ini(text: string): Record<string, unknown> {
  const r = parseInfoIni(text);
  if (!r.ok) throw new Error(`expected ok, got ${r.error}`);
  return r.data;
}

describe('parseInfoIni (drupal_parse_info_format)', () => {
  it('reads plain key = value pairs, trimming whitespace', () => {
    expect(ini('name = Views\n  description   =   Create lists.   \ncore = 7.x\n')).toEqual({
      name: 'Views',
      description: 'Create lists.',
      core: '7.x',
    });
  });

  it('handles double and single quotes with backslash escapes', () => {
    const d = ini(`a = "Say \\"hi\\""\nb = 'it\\'s'\nc = "semi; colon = kept"\nd = "back\\\\slash"\n`);
    expect(d).toEqual({ a: 'Say "hi"', b: "it's", c: 'semi; colon = kept', d: 'back\\slash' });
  });

  it('allows multi-line quoted values and the key/=/value spread over lines', () => {
    expect(ini('description = "line one\nline two"\nkey\n=\n\'value\'\n')).toEqual({
      description: 'line one\nline two',
      key: 'value',
    });
  });

  it('ignores ; comment lines but keeps ; inside unquoted values (as Drupal does)', () => {
    expect(ini('; name = Commented\nname = Real ; not a comment\n;; another\n')).toEqual({
      name: 'Real ; not a comment',
    });
  });

  it('builds arrays: foo[] lists, foo[key] maps, foo[key][] nested lists', () => {
    const d = ini(
      [
        'dependencies[] = ctools',
        'dependencies[] = views (>=3.0)',
        'stylesheets[all][] = a.css',
        'stylesheets[all][] = b.css',
        'stylesheets[print][] = p.css',
        'regions[header] = Header',
        'settings[toggle][logo] = 1',
      ].join('\n'),
    );
    expect(d).toEqual({
      dependencies: ['ctools', 'views (>=3.0)'],
      stylesheets: { all: ['a.css', 'b.css'], print: ['p.css'] },
      regions: { header: 'Header' },
      settings: { toggle: { logo: '1' } },
    });
  });

  it("numbers [] by count(), so an explicit index can be overwritten (Drupal's quirk)", () => {
    expect(ini('list[1] = a\nlist[] = b\n')).toEqual({ list: { '1': 'b' } });
    expect(ini('list[0] = a\nlist[] = b\n')).toEqual({ list: ['a', 'b'] });
  });

  it('turns a scalar into an array when array syntax follows, and back when a scalar follows', () => {
    expect(ini('x = 1\nx[] = 2\ny[] = 1\ny = 2\n')).toEqual({ x: ['2'], y: '2' });
  });

  it('substitutes TRUE/FALSE/NULL (any case, quoted or not) but no other constant', () => {
    expect(ini('hidden = TRUE\nrequired = false\nz = "NULL"\nversion = VERSION\n')).toEqual({
      hidden: true,
      required: false,
      z: null,
      version: 'VERSION',
    });
  });

  it('copes with CRLF line endings', () => {
    expect(ini('name = Foo\r\nversion = "7.x-1.0"\r\n')).toEqual({ name: 'Foo', version: '7.x-1.0' });
  });

  it('keeps __proto__ as an ordinary key', () => {
    const d = ini('__proto__[polluted] = yes\nname = x\n');
    expect(Object.getPrototypeOf(d)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(d)).toEqual(['__proto__', 'name']);
  });

  it('reports broken files instead of throwing', () => {
    expect(parseInfoIni('')).toEqual({ ok: false, error: 'empty info file' });
    expect(parseInfoIni('; only a comment\n\n')).toEqual({ ok: false, error: 'empty info file' });
    expect(parseInfoIni('this is not an info file\nat all\n')).toEqual({ ok: false, error: 'no "key = value" lines found' });
    expect(parseInfoIni('name = x\0\0binary')).toMatchObject({ ok: false, error: expect.stringContaining('NUL') });
  });
});

describe('parseInfoYaml', () => {
  it('parses .info.yml, keeping numbers as written', () => {
    const r = parseInfoYaml('name: Token\ntype: module\ncore_version_requirement: ^9 || ^10\nversion: 1.10\nhidden: true\ndependencies:\n  - drupal:system\n');
    expect(r).toEqual({
      ok: true,
      data: {
        name: 'Token',
        type: 'module',
        core_version_requirement: '^9 || ^10',
        version: '1.10',
        hidden: true,
        dependencies: ['drupal:system'],
      },
    });
  });

  it('resolves anchors and aliases', () => {
    expect(parseInfoYaml('a: &x {k: v}\nb: *x\n')).toEqual({ ok: true, data: { a: { k: 'v' }, b: { k: 'v' } } });
  });

  it('reports YAML errors and non-mapping documents', () => {
    const bad = parseInfoYaml('name: [unclosed\ntype: module\n');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error).toMatch(/^invalid YAML: /);
    expect(parseInfoYaml('- a\n- b\n')).toEqual({ ok: false, error: 'top level is not a mapping' });
    expect(parseInfoYaml('')).toEqual({ ok: false, error: 'empty info file' });
    expect(parseInfoYaml('a: 1\na: 2\n').ok).toBe(false);
  });
});

describe('parseInfoFile', () => {
  const t = makeTree({ 'x.info': 'name = X\n', 'y.info.yml': 'name: Y\ntype: theme\n' });
  afterAll(() => t.cleanup());

  it('picks the format by file name and never throws', async () => {
    expect(await parseInfoFile(`${t.root}/x.info`)).toEqual({ ok: true, data: { name: 'X' } });
    expect(await parseInfoFile(`${t.root}/y.info.yml`)).toEqual({ ok: true, data: { name: 'Y', type: 'theme' } });
    expect(await parseInfoFile(`${t.root}/missing.info`)).toEqual({ ok: false, error: 'cannot read: ENOENT' });
  });
});

describe('phpTruthy', () => {
  it('follows PHP empty()', () => {
    expect([true, '1', 'TRUE', 'yes', ['a'], { a: 'b' }].map(phpTruthy)).toEqual([true, true, true, true, true, true]);
    expect([false, null, undefined, '', '0', [], {}].map(phpTruthy)).toEqual([false, false, false, false, false, false, false]);
  });
});
