/**
 * Test helper (not exported from index): builds synthetic codebase trees in temp directories.
 */
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** A file tree: relative path → contents, or `{ symlink: target }` for a symbolic link. */
export type TreeSpec = Record<string, string | Buffer | { symlink: string }>;

/** Writes `spec` under `root` (creating directories as needed). */
export function writeTree(root: string, spec: TreeSpec): void {
  for (const [rel, content] of Object.entries(spec)) {
    const abs = join(root, rel);
    mkdirSync(dirname(abs), { recursive: true });
    if (typeof content === 'object' && !Buffer.isBuffer(content)) symlinkSync(content.symlink, abs);
    else writeFileSync(abs, content);
  }
}

/** A RAM-backed temp base when there is one (/dev/shm), else the OS temp dir: big trees build fast. */
function tempBase(): string {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

/** Creates a fresh temp dir holding `spec`; call the returned cleanup when done. */
export function makeTree(spec: TreeSpec = {}): { root: string; cleanup: () => void } {
  const root = mkdtempSync(join(tempBase(), 'spoke-platform-'));
  writeTree(root, spec);
  return { root, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}
