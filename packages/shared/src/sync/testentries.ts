/** Manifest entries for unit tests of this directory (not exported from the package). */
import { type ManifestEntry, sha256Hex } from './manifest.js';

export const dir = (path: string, mode = 0o755): ManifestEntry => ({ path, type: 'dir', mode, size: 0, hash: '' });

export const file = (path: string, content = path, mode = 0o644): ManifestEntry => ({
  path,
  type: 'file',
  mode,
  size: Buffer.byteLength(content),
  hash: sha256Hex(content),
});

export const link = (path: string, target: string): ManifestEntry => ({
  path,
  type: 'symlink',
  mode: 0o777,
  size: Buffer.byteLength(target),
  hash: sha256Hex(target),
  target,
});
