import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, fail, isErrorCode } from './errors.js';

const DOC = join(import.meta.dirname, '..', '..', '..', 'docs', 'errors.md');

/** The rows of docs/errors.md: `| \`CODE\` | STATUS | meaning | what to do |`. */
function documented(): { code: string; status: string; meaning: string; action: string }[] {
  return readFileSync(DOC, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => {
      const cells = l.split(' | ').map((c) => c.replace(/^\| /, '').replace(/ \|$/, '').trim());
      return { code: (cells[0] ?? '').replace(/`/g, ''), status: cells[1] ?? '', meaning: cells[2] ?? '', action: cells[3] ?? '' };
    });
}

describe('error codes', () => {
  it('docs/errors.md lists every code once, with the status it travels with, and nothing else', () => {
    const rows = documented();
    const codes = rows.map((r) => r.code);
    expect(new Set(codes).size, 'a code documented twice').toBe(codes.length);
    expect([...codes].sort()).toEqual(Object.keys(ERROR_CODES).sort());
    for (const r of rows) expect(r.status, r.code).toBe(ERROR_CODES[r.code as keyof typeof ERROR_CODES]);
  });

  it('every documented code says what it means and what the operator does', () => {
    for (const r of documented()) {
      expect(r.meaning.length, `${r.code}: meaning`).toBeGreaterThan(10);
      expect(r.action.length, `${r.code}: what to do`).toBeGreaterThan(3);
    }
  });

  it('a SpokeError prints as CODE: message', () => {
    expect(String(fail('SITE_NOT_FOUND', 'no site named a.example.com'))).toBe('SITE_NOT_FOUND: no site named a.example.com');
    expect(isErrorCode('SITE_NOT_FOUND')).toBe(true);
    expect(isErrorCode('toString')).toBe(false);
  });
});
