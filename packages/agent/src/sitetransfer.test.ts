/**
 * A site's user files packed and unpacked on the agent: links kept as links, nothing outside
 * files/ and private/ read; a hostile tar refused with the site's files unchanged; an unpack
 * swaps parts in whole; replace=false refuses to mix into non-empty dirs.
 */
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RootMap, openTarWriter, readTar, silentLogger } from '@spoke/shared';
import { SiteFileTransfer } from './sitetransfer.js';

let base: string;
let xfer: SiteFileTransfer;
const TREE = '/var/www/wp';
const site = () => join(base, 'var/www/wp/sites/a.test');
const group =
  (
    readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((l) => l.split(':')[2] === String(process.getgid?.() ?? 0)) ?? ''
  ).split(':')[0] || 'root';

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'spoke-xfer-'));
  mkdirSync(join(site(), 'files/2024'), { recursive: true });
  mkdirSync(join(site(), 'private'), { recursive: true });
  writeFileSync(join(site(), 'settings.php'), '<?php secret');
  writeFileSync(join(site(), 'files/2024/a.jpg'), 'A');
  symlinkSync('2024/a.jpg', join(site(), 'files/latest.jpg'));
  symlinkSync('/etc/passwd', join(site(), 'files/passwd'));
  writeFileSync(join(site(), 'private/p.txt'), 'P');
  xfer = new SiteFileTransfer({ roots: ['/var/www'], rootMap: new RootMap(base), webGroup: group, log: silentLogger() });
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

async function tarEntries(r: Readable): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for await (const e of readTar(r)) {
    const chunks: Buffer[] = [];
    for await (const c of e.body) chunks.push(c);
    m.set(e.header.name.replace(/\/$/, ''), e.header.type === 'symlink' ? `-> ${String(e.header.linkname)}` : Buffer.concat(chunks).toString());
  }
  return m;
}

async function tarOf(entries: { name: string; type?: 'file' | 'directory' | 'symlink'; data?: string; linkname?: string }[]): Promise<Buffer> {
  const t = openTarWriter();
  const out: Buffer[] = [];
  const done = (async () => {
    for await (const c of t.readable) out.push(c as Buffer);
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    await t.add(
      {
        name: e.name,
        type,
        mode: type === 'directory' ? 0o755 : 0o644,
        ...(type === 'file' ? { size: Buffer.byteLength(e.data ?? '') } : {}),
        ...(e.linkname ? { linkname: e.linkname } : {}),
      },
      type === 'file' ? Readable.from([Buffer.from(e.data ?? '')]) : undefined,
    );
  }
  t.end();
  await done;
  return Buffer.concat(out);
}

describe('SiteFileTransfer', () => {
  it('packs files/ and private/ only, links as links, a link leaving the site dir left out', async () => {
    const p = await xfer.pack(TREE, 'a.test');
    const m = await tarEntries(p.stream);
    expect([...m.keys()].sort()).toEqual(['files', 'files/2024', 'files/2024/a.jpg', 'files/latest.jpg', 'private', 'private/p.txt']);
    expect(m.get('files/latest.jpg')).toBe('-> 2024/a.jpg');
    expect(p.skipped).toEqual(["files/passwd: symlink to /etc/passwd (absolute or outside the site's files; not kept)"]);
    expect(p.entries).toBe(6);
  });

  it('packs a site without a site dir as an empty tar; refuses a tree outside the roots', async () => {
    const p = await xfer.pack(TREE, 'none.test');
    expect((await tarEntries(p.stream)).size).toBe(0);
    await expect(xfer.pack('/etc', 'a.test')).rejects.toMatchObject({ code: 'PATH_OUTSIDE_ROOTS' });
  });

  it('unpacks with replace: the parts are swapped in whole, the rest of the site dir untouched', async () => {
    const tar = await tarOf([
      { name: 'files', type: 'directory' },
      { name: 'files/new.txt', data: 'N' },
      { name: 'files/link', type: 'symlink', linkname: '../private/q.txt' },
      { name: 'private', type: 'directory' },
      { name: 'private/q.txt', data: 'Q' },
    ]);
    const r = await xfer.unpack(TREE, 'a.test', true, Readable.from([tar]));
    expect(r).toMatchObject({ entries: 5, replaced: ['files', 'private'], bytes: tar.length });
    expect(readFileSync(join(site(), 'files/new.txt'), 'utf8')).toBe('N');
    expect(existsSync(join(site(), 'files/2024'))).toBe(false);
    expect(readlinkSync(join(site(), 'files/link'))).toBe('../private/q.txt');
    expect(readFileSync(join(site(), 'private/q.txt'), 'utf8')).toBe('Q');
    expect(readFileSync(join(site(), 'settings.php'), 'utf8')).toBe('<?php secret');
    // no staging left behind
    expect(lstatSync(site()).isDirectory()).toBe(true);
    expect(readdirSync(site()).filter((n: string) => n.startsWith('.spoke'))).toEqual([]);
  });

  it("gives what it unpacked to the web server (php.user when root, the web group, g+rw, dirs setgid), not to the tar's owners", async () => {
    const root = process.getuid?.() === 0;
    const uid = root ? 4243 : (process.getuid?.() ?? 0);
    const passwdFile = join(base, 'passwd');
    writeFileSync(passwdFile, `web:x:${uid}:${uid}::/:/bin/sh\n`);
    const owned = new SiteFileTransfer({
      roots: ['/var/www'],
      rootMap: new RootMap(base),
      webGroup: group,
      userFiles: { user: 'web', passwdFile, isRoot: () => root },
      log: silentLogger(),
    });
    const tar = await tarOf([
      { name: 'files', type: 'directory' },
      { name: 'files/2026', type: 'directory' },
      { name: 'files/2026/up.jpg', data: 'U' },
      { name: 'files/link', type: 'symlink', linkname: '2026/up.jpg' },
    ]);
    const r = await owned.unpack(TREE, 'a.test', true, Readable.from([tar]));
    expect(r.problems).toEqual([]);
    const gid = lstatSync(join(site(), 'files')).gid;
    for (const rel of ['files', 'files/2026', 'files/2026/up.jpg']) {
      const st = lstatSync(join(site(), rel));
      expect([rel, st.uid, st.gid]).toEqual([rel, uid, gid]);
    }
    expect(lstatSync(join(site(), 'files/2026')).mode & 0o7777).toBe(0o2775);
    expect(lstatSync(join(site(), 'files/2026/up.jpg')).mode & 0o7777).toBe(0o664);
  });

  it('refuses a hostile tar (escape, absolute link, another top-level name) and changes nothing', async () => {
    for (const bad of [
      [
        { name: 'files', type: 'directory' as const },
        { name: 'files/../../settings.php', data: 'pwned' },
      ],
      [
        { name: 'files', type: 'directory' as const },
        { name: 'files/x', type: 'symlink' as const, linkname: '/etc/passwd' },
      ],
      [{ name: 'settings.php', data: 'pwned' }],
      [
        { name: 'files', type: 'directory' as const },
        { name: 'files/ok.txt', data: 'x' },
        { name: 'files/../x', data: 'y' },
      ],
    ]) {
      await expect(xfer.unpack(TREE, 'a.test', true, Readable.from([await tarOf(bad)]))).rejects.toMatchObject({ code: 'ARCHIVE_UNSAFE' });
      expect(readFileSync(join(site(), 'files/2024/a.jpg'), 'utf8')).toBe('A');
      expect(readFileSync(join(site(), 'settings.php'), 'utf8')).toBe('<?php secret');
      expect(existsSync(join(site(), 'files/ok.txt'))).toBe(false);
      expect(readdirSync(site()).sort()).toEqual(['files', 'private', 'settings.php']);
    }
  });

  it('replace=false: refused (SITE_FILES_EXIST) into non-empty dirs, accepted into empty ones', async () => {
    const tar = await tarOf([
      { name: 'files', type: 'directory' },
      { name: 'files/new.txt', data: 'N' },
    ]);
    await expect(xfer.unpack(TREE, 'a.test', false, Readable.from([tar]))).rejects.toMatchObject({ code: 'SITE_FILES_EXIST' });
    expect(readFileSync(join(site(), 'files/2024/a.jpg'), 'utf8')).toBe('A');
    const r = await xfer.unpack(TREE, 'fresh.test', false, Readable.from([tar]));
    expect(r.replaced).toEqual(['files']);
    expect(readFileSync(join(base, 'var/www/wp/sites/fresh.test/files/new.txt'), 'utf8')).toBe('N');
  });
});
