/**
 * `--root DIR` maps every absolute namespace path under DIR, so several "hosts" can share one
 * machine. Namespace paths (what the master stores) are always the real absolute paths.
 */
import { resolve, join } from 'node:path';
import { fail } from './errors.js';
import { checkPublishPath, pathContains } from './names.js';

/** Maps namespace paths to host paths under an optional prefix. */
export class RootMap {
  /** The host directory that stands for `/` ("" means the real root). */
  readonly prefix: string;

  constructor(prefix?: string) {
    this.prefix = prefix && prefix !== '/' ? resolve(prefix) : '';
  }

  /** The host path for a namespace path (`/var/www/x` → `<prefix>/var/www/x`). */
  toHost(nsPath: string): string {
    checkPublishPath(nsPath);
    return this.prefix ? join(this.prefix, nsPath) : nsPath;
  }

  /**
   * Checks that a namespace path lies under one of `roots` and returns its host path.
   * @throws SpokeError PATH_OUTSIDE_ROOTS
   */
  confine(nsPath: string, roots: readonly string[]): string {
    checkPublishPath(nsPath);
    if (!roots.some((r) => pathContains(r, nsPath))) {
      throw fail('PATH_OUTSIDE_ROOTS', `path ${nsPath} is outside this agent's roots (${roots.join(', ') || 'none'})`);
    }
    return this.toHost(nsPath);
  }
}
