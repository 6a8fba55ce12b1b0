/**
 * One daemon per state dir: an exclusive pid-file lock (`<state-dir>/<name>.lock`, created with
 * O_EXCL). A lock whose process is gone is stale and taken over. Used by the master
 * (`master.lock`) and the agent (`agent.lock`): two agents on one state dir replaced each other's
 * stream with the master ~1,500 times in 10 minutes and raced on the same tree state.
 */
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fail } from './errors.js';

/** The pid holding `<stateDir>/<name>.lock` when that process is alive (and not this one), else undefined. */
export function stateDirHolder(stateDir: string, name: string): number | undefined {
  let pid = NaN;
  try {
    pid = Number(readFileSync(join(stateDir, `${name}.lock`), 'utf8'));
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    // EPERM: alive, owned by another user
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/**
 * Takes the lock; returns its release.
 * @throws SpokeError STATE_DIR_LOCKED naming the pid that holds it and what to do (`hint`)
 */
export function lockStateDir(stateDir: string, name: string, hint: string): () => void {
  const file = join(stateDir, `${name}.lock`);
  const tryLock = () => closeSync(openSync(file, 'wx', 0o600));
  try {
    tryLock();
  } catch {
    const pid = stateDirHolder(stateDir, name);
    if (pid !== undefined) throw fail('STATE_DIR_LOCKED', `another ${name} (pid ${pid}) is running on ${stateDir}; ${hint}`, { pid });
    // a lock left by a dead process is stale: take it over
    rmSync(file, { force: true });
    tryLock();
  }
  writeFileSync(file, String(process.pid));
  return () => {
    // only our own lock: a stale-lock takeover by another process must not be undone
    try {
      if (Number(readFileSync(file, 'utf8')) === process.pid) rmSync(file, { force: true });
    } catch {
      // already gone
    }
  };
}
