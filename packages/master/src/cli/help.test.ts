import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { COMMANDS, runCli } from './cli.js';
import { argNames, EXAMPLES, flagHelp } from './help.js';

/** Runs the CLI with these arguments (no master: help and usage errors never reach one). */
async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s) });
  return { code, out: out.join(''), err: err.join('') };
}

describe('spoke COMMAND --help (issue 23 item 10)', () => {
  it('every flag of every command is explained and every command has an example', () => {
    const unexplained = Object.entries(COMMANDS).flatMap(([k, c]) =>
      Object.keys(c.options ?? {})
        .filter((f) => !flagHelp(k, f))
        .map((f) => `${k} --${f}`),
    );
    expect(unexplained).toEqual([]);
    expect(Object.keys(COMMANDS).filter((k) => !EXAMPLES[k]?.length)).toEqual([]);
  });

  for (const key of Object.keys(COMMANDS)) {
    it(`spoke ${key} --help prints its own usage, flags and example`, async () => {
      const r = await cli(...key.split(' '), '--help');
      expect(r.code).toBe(0);
      expect(r.out).toContain(`usage: spoke ${COMMANDS[key]?.usage}`);
      for (const f of Object.keys(COMMANDS[key]?.options ?? {})) expect(r.out).toMatch(new RegExp(`--${f}\\b.*  \\S`));
      expect(r.out).toContain(`  ${EXAMPLES[key]?.[0]}`);
      // Its own help, not the whole list.
      const others = Object.entries(COMMANDS).filter(
        ([k]) => k !== key && !(key === 'site list' && k === 'site ls') && !(key === 'site ls' && k === 'site list'),
      );
      for (const [, c] of others) expect(r.out).not.toContain(`usage: spoke ${c.usage}`);
    });
  }

  it('help COMMAND and -h say the same as --help', async () => {
    const a = await cli('platform', 'add', '--help');
    expect((await cli('help', 'platform', 'add')).out).toBe(a.out);
    expect((await cli('platform', 'add', '-h')).out).toBe(a.out);
    expect(a.out).toContain('--live');
    expect(a.out).toContain('--exclude VALUE ...');
  });

  it("spoke NOUN --help lists that noun's commands", async () => {
    const r = await cli('cluster', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('spoke cluster create');
    expect(r.out).not.toContain('spoke site');
  });
});

describe('usage errors that say what to do (issue 23 item 10)', () => {
  it('an unknown flag gets "did you mean"', async () => {
    const r = await cli('platform', 'add', 'wp', '--pth', '/var/www/wp', '--server', 'web-1');
    expect(r.code).toBe(2);
    expect(r.err).toContain('error: USAGE: unknown flag --pth (did you mean --path?)');
    expect((await cli('task', 'ls', '--entiy', 'wp')).err).toContain('did you mean --entity?');
    expect((await cli('server', 'ls', '--frobnicate')).err).toContain('unknown flag --frobnicate\n');
  });

  it('an unknown command gets "did you mean"', async () => {
    expect((await cli('platfrom', 'ls')).err).toContain('unknown command "platfrom" (did you mean "platform"?)');
    expect((await cli('site', 'instal', 'a.test')).err).toContain('(did you mean "site install"?)');
  });

  it('a missing argument is named', async () => {
    const r = await cli('server', 'show');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^error: USAGE: missing NAME\n/);
    expect((await cli('platform', 'diff', 'a')).err).toMatch(/^error: USAGE: missing B\n/);
    expect((await cli('site', 'clone', 'a.test')).err).toMatch(/^error: USAGE: missing NEW_DOMAIN\n/);
    expect((await cli('server', 'show', 'a', 'b')).err).toMatch(/^error: USAGE: unexpected argument "b"\n/);
  });

  it('argNames reads the usage line', () => {
    expect(argNames('site alias', COMMANDS['site alias']!)).toEqual(['add|rm', 'DOMAIN', 'ALIAS']);
    expect(argNames('server ls', COMMANDS['server ls']!)).toEqual([]);
  });
});

describe('spoke completion (issue 23 item 10)', () => {
  /** Sources the script in bash, calls _spoke with these words, returns COMPREPLY. */
  async function complete(script: string, words: string[]): Promise<string[]> {
    const prog = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _spoke; printf '%s\\n' "\${COMPREPLY[@]}"`;
    return execFileSync('bash', ['--norc', '--noprofile', '-c', prog], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();
  }

  it('bash: completes nouns, verbs, flags and skips global flag values', async () => {
    const r = await cli('completion', 'bash');
    expect(r.code).toBe(0);
    expect(await complete(r.out, ['spoke', 'pl'])).toEqual(['platform']);
    expect(await complete(r.out, ['spoke', 'platform', ''])).toEqual(['add', 'diff', 'drift', 'ls', 'rm', 'show', 'status', 'verify']);
    expect(await complete(r.out, ['spoke', '--state-dir', '/tmp/s', 'task', 'l'])).toEqual(['log', 'ls']);
    expect(await complete(r.out, ['spoke', 'platform', 'add', 'wp', '--ex'])).toEqual(['--exclude']);
    expect(await complete(r.out, ['spoke', 'task', 'log', '1', '-'])).toContain('-f');
    expect(await complete(r.out, ['spoke', 'completion', ''])).toEqual(['bash', 'zsh']);
  });

  it('zsh: the same function through bashcompinit', async () => {
    const r = await cli('completion', 'zsh');
    expect(r.out).toContain('bashcompinit');
    expect(r.out).toContain('complete -F _spoke spoke');
    expect((await cli('completion', 'fish')).err).toContain('completion takes bash or zsh');
  });
});
