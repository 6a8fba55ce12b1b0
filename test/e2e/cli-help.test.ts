/**
 * The built command lines answer --help with their own usage (issue 23 item 10), and the CLI
 * bundle loads only what a command needs (item 17): `spoke server ls` never reads the master's
 * start-up code or the PKI.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, runNode } from '../harness.js';

describe('daemon --help (issue 23 item 10)', () => {
  it('spoke-agent enroll --help and run --help print their own usage, flags and an example', async () => {
    const e = await runNode(BIN.agent, ['enroll', '--help']);
    expect(e.code).toBe(0);
    expect(e.stdout).toContain('usage: spoke-agent enroll --master HOST:PORT --token TOKEN --state-dir DIR');
    expect(e.stdout).toMatch(/--roots DIRS\s+comma-separated/);
    expect(e.stdout).toContain('example:\n  spoke-agent enroll');
    expect(e.stdout).not.toContain('spoke-agent run');
    const r = await runNode(BIN.agent, ['run', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('usage: spoke-agent run --state-dir DIR');
    expect(r.stdout).toMatch(/--root DIR\s+a directory standing in for \//);
  });

  it('spoke-master run --help prints its usage with every flag explained', async () => {
    const r = await runNode(BIN.master, ['run', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('usage: spoke-master run');
    for (const f of ['--state-dir', '--listen', '--root', '--socket', '--build-source-dir', '--build-max-bytes', '--build-max-entries', '--build-max-ratio']) {
      expect(r.stdout).toMatch(new RegExp(`  ${f} \\S+\\s+\\S`));
    }
    expect(r.stdout).toContain('example:\n  spoke-master run');
  });

  it('unknown flags and commands get "did you mean"', async () => {
    const a = await runNode(BIN.agent, ['enroll', '--tokn', 'x', '--state-dir', '/tmp/nowhere']);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain('error: USAGE: unknown flag --tokn (did you mean --token?)');
    expect((await runNode(BIN.agent, ['enrol'])).stderr).toContain('unknown command "enrol" (did you mean "enroll"?)');
    const m = await runNode(BIN.master, ['run', '--listn', '127.0.0.1:0']);
    expect(m.code).toBe(2);
    expect(m.stderr).toContain('error: USAGE: unknown flag --listn (did you mean --listen?)');
  });

  it('spoke COMMAND --help from the built bundle, spoke up --help included', async () => {
    const r = await runNode(BIN.spoke, ['platform', 'add', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--live\s+keep the servers in step/);
    expect(r.stdout.split('\n').length).toBeLessThan(30);
    const up = await runNode(BIN.spoke, ['up', '--help']);
    expect(up.code).toBe(0);
    expect(up.stdout).toMatch(/--root VALUE\s+a directory standing in for \//);
    expect(up.stdout).toMatch(/--acme-directory VALUE\s+an ACME server's directory URL/);
    // A bad ACME flag is refused before anything starts (no state dir made).
    const dir = mkdtempSync(join(tmpdir(), 'spoke-up-'));
    const bad = await runNode(BIN.spoke, ['--state-dir', join(dir, 'state'), 'up', '--acme-directory', 'http://acme.test/dir']);
    expect([bad.code, bad.stderr]).toEqual([1, 'error: CONFIG_INVALID: --acme-directory must be an https:// URL (RFC 8555), not http:\n']);
    expect(existsSync(join(dir, 'state'))).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('a lean CLI (issue 23 item 17)', () => {
  it('the code spoke server ls loads holds no PKI, logger, Agent service or master start-up', () => {
    // What spoke.js imports statically and the CLI chunk it loads, and what those import, transitively.
    const dir = dirname(BIN.spoke);
    const seen = new Set<string>();
    const visit = (file: string, dynamicToo: boolean) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(join(dir, file), 'utf8');
      for (const m of text.matchAll(/(?:^|\n)import\s*(?:[^'"]*?from\s*)?["']\.\/([^"']+)["']/g)) visit(m[1] as string, false);
      if (dynamicToo) for (const m of text.matchAll(/import\(["']\.\/(spoke-cli-[^"']+)["']\)/g)) visit(m[1] as string, false);
    };
    visit('spoke.js', true);
    expect([...seen].some((f) => f.startsWith('spoke-cli-'))).toBe(true);
    const code = [...seen].map((f) => readFileSync(join(dir, f), 'utf8')).join('\n');
    expect(code).toContain('listServers');
    expect(code).not.toMatch(/node_modules\/\.pnpm\/@peculiar|node_modules\/\.pnpm\/pino@/);
    expect(code).not.toContain('// packages/shared/src/pki.ts');
    expect(code).not.toContain('// packages/shared/src/gen/spoke/v1/agent.ts');
    expect(code).not.toContain('// packages/master/src/master.ts');
    // And the whole of it is a fraction of the one-file bundle it replaced (3.4 MB).
    expect(code.length).toBeLessThan(1_500_000);
    expect(readdirSync(dir).some((f) => f.startsWith('spoke-up-'))).toBe(true);
  });
});
