/**
 * V8's on-disk compile cache for the CLI, where the Node version has it (`module.enableCompileCache`,
 * Node >= 22.1): later runs skip parsing and compiling the CLI's code. Node 20 has no such API;
 * there this does nothing and the lean bundle alone keeps start-up short.
 */
import * as nodeModule from 'node:module';

/** Turns the compile cache on when Node offers it; returns whether it did. Never throws. */
export function enableCompileCache(): boolean {
  const m = nodeModule as { enableCompileCache?: () => unknown };
  if (typeof m.enableCompileCache !== 'function') return false;
  try {
    m.enableCompileCache();
    return true;
  } catch {
    return false;
  }
}
