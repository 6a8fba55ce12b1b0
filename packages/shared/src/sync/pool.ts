/**
 * Bounded concurrency for async work over a list.
 */

/**
 * Runs `worker` on every item with at most `limit` calls in flight. Rejects with the first
 * error; calls already running are left to finish on their own and no new ones start.
 */
export async function forEachLimit<T>(items: readonly T[], limit: number, worker: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const lane = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await worker(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
}
