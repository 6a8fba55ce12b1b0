/**
 * Host checks for `server verify`: each root exists (created when missing), is writable (a real
 * write + remove), and how much space its filesystem has.
 */
import { mkdir, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { RootCheck, RootMap } from '@spoke/shared';

/** Checks every root. */
export async function checkRoots(roots: string[], map: RootMap): Promise<RootCheck[]> {
  return Promise.all(
    roots.map(async (path): Promise<RootCheck> => {
      const hostPath = map.toHost(path);
      const out: RootCheck = { path, hostPath, writable: false, freeBytes: 0, totalBytes: 0, error: '' };
      try {
        await mkdir(hostPath, { recursive: true });
        const probe = join(hostPath, `.spoke-verify-${randomBytes(6).toString('hex')}`);
        await writeFile(probe, 'ok');
        await rm(probe, { force: true });
        out.writable = true;
      } catch (e) {
        out.error = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      }
      try {
        const s = await statfs(hostPath);
        out.freeBytes = Number(s.bavail) * Number(s.bsize);
        out.totalBytes = Number(s.blocks) * Number(s.bsize);
      } catch (e) {
        out.error ||= (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      }
      return out;
    }),
  );
}
