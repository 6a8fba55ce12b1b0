import { describe, expect, it } from 'vitest';
import { rootNotice } from './up.js';

describe('spoke up start-up message', () => {
  it('says that the real root writes to /var/aegir and /var/www, and how to try it in one directory', () => {
    expect(rootNotice('')).toContain("this machine's real /var/aegir and /var/www");
    expect(rootNotice('')).toContain('./bin/spoke up --root DIR');
    expect(rootNotice('/')).toBe(rootNotice(''));
    expect(rootNotice('/tmp/trial')).toBe('root:    /tmp/trial — platforms and sites live under it (nothing outside it is touched)');
  });
});
