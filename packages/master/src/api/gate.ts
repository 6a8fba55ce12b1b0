/**
 * A gate: at most `limit` bodies run at once, the rest wait in arrival order. The agent service
 * passes every FetchBlobs stream through one (issue 20): each stream holds up to the HTTP/2 window
 * (16 MiB, shared/grpc.ts) plus a bounded write queue, so fifty cluster members fetching a
 * 20,000-file platform at once held over 1 GB in the master; the master's CPU, not the number of
 * open streams, bounds how fast they are served.
 */
export class Gate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number) {}

  /** Bodies running now. */
  get running(): number {
    return this.active;
  }

  /** Bodies waiting for a turn. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Runs `body` when a turn is free; the turn passes on when it settles, however it settles. */
  async run<T>(body: () => Promise<T>): Promise<T> {
    if (this.active < this.limit) this.active++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await body();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
