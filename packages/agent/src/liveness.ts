/**
 * Whether the agent's connection to the master is alive, judged as grpc-go's keepalive judges
 * it: by anything heard from the master (a message, headers or a status on any call), not by
 * the answer to one ping.
 *
 * grpc-js's own keepalive (a PING every 20 s, the connection dropped when its ACK takes more than
 * 10 s) killed every large transfer over a slow link: the master's ACK waits behind what is
 * already in flight on the connection — up to a 16 MiB HTTP/2 window, 17 s at 8 Mbit/s — so a
 * 38 MB delta to an agent behind an 8 Mbit/s link (network namespaces, tc tbf) failed with
 * AGENT_DISCONNECTED after 26 s (test/e2e/slowlink.test.ts). Data arriving is the best sign of a
 * live peer; only silence is not.
 *
 * So the agent's channel runs without grpc-js keepalive, every call on it goes through
 * `interceptor` (which notes what is heard), and `check()` — called on a timer — asks the master
 * for an answer (a gRPC health check, `probe`) once nothing was heard for `probeAfterMs`, and
 * declares the connection dead once nothing at all was heard for `deadAfterMs`: then every call
 * still open on it is cancelled (a FetchBlobs on a dead TCP connection would otherwise wait for
 * ever, holding its tree's lock) and `onDead` replaces the channel.
 */
import { InterceptingCall, status as GrpcStatus, type Interceptor } from '@grpc/grpc-js';

export interface LivenessOptions {
  /** Silence after which the master is asked for an answer. @default 20000 */
  probeAfterMs?: number;
  /** Silence after which the connection is dead (the probe's answer did not come either). @default 45000 */
  deadAfterMs?: number;
}

export const PROBE_AFTER_MS = 20_000;
export const DEAD_AFTER_MS = 45_000;

export class LinkLiveness {
  readonly probeAfterMs: number;
  readonly deadAfterMs: number;
  private lastHeard: number;
  private probing = false;
  /** Calls started through the interceptor and not yet ended. */
  private readonly open = new Set<InterceptingCall>();
  /** Records what the calls hear; give it to the channel's client (`interceptors`). */
  readonly interceptor: Interceptor;

  constructor(
    private readonly deps: {
      /** Sends a request whose answer, whatever it is, counts as heard (its call goes through the interceptor). */
      probe: () => Promise<unknown>;
      /** The connection is dead: open calls were cancelled; replace the channel. */
      onDead: (silentMs: number) => void;
      clock?: () => number;
    } & LivenessOptions,
  ) {
    this.probeAfterMs = deps.probeAfterMs ?? PROBE_AFTER_MS;
    this.deadAfterMs = Math.max(deps.deadAfterMs ?? DEAD_AFTER_MS, this.probeAfterMs);
    this.lastHeard = this.now();
    this.interceptor = (options, nextCall) => {
      const call: InterceptingCall = new InterceptingCall(nextCall(options), {
        start: (metadata, listener, next) => {
          this.open.add(call);
          next(metadata, {
            onReceiveMetadata: (m, n) => {
              this.heard();
              n(m);
            },
            onReceiveMessage: (m, n) => {
              this.heard();
              n(m);
            },
            onReceiveStatus: (s, n) => {
              this.open.delete(call);
              // a status the client made up (cancelled here, a deadline) is not the master's voice
              if (s.code !== GrpcStatus.CANCELLED && s.code !== GrpcStatus.DEADLINE_EXCEEDED && s.code !== GrpcStatus.UNAVAILABLE) this.heard();
              n(s);
            },
          });
        },
      });
      return call;
    };
  }

  private now(): number {
    return (this.deps.clock ?? Date.now)();
  }

  /** Something came from the master. */
  heard(): void {
    this.lastHeard = this.now();
  }

  /** Milliseconds since the master was last heard. */
  silentMs(): number {
    return this.now() - this.lastHeard;
  }

  /** Calls open on the channel (tests). */
  openCalls(): number {
    return this.open.size;
  }

  /**
   * One look (call it every few seconds while connected): probes after `probeAfterMs` of
   * silence; after `deadAfterMs` cancels every open call and calls `onDead`. Returns what it did.
   */
  check(): 'alive' | 'probing' | 'dead' {
    const silent = this.silentMs();
    if (silent >= this.deadAfterMs) {
      this.cancelOpen(`nothing heard from the master for ${Math.round(silent / 1000)} s`);
      this.deps.onDead(silent);
      return 'dead';
    }
    if (silent >= this.probeAfterMs && !this.probing) {
      this.probing = true;
      this.deps.probe().then(
        () => (this.probing = false),
        () => (this.probing = false),
      );
      return 'probing';
    }
    return silent >= this.probeAfterMs ? 'probing' : 'alive';
  }

  /** Cancels every call open on the connection (it is dead); what it hears next starts a clean slate. */
  cancelOpen(details: string): void {
    for (const c of [...this.open]) c.cancelWithStatus(GrpcStatus.UNAVAILABLE, details);
    this.open.clear();
    this.probing = false;
    this.lastHeard = this.now();
  }

  /** A new connection was made (the dial after onDead): what it hears starts now. */
  reset(): void {
    this.lastHeard = this.now();
    this.probing = false;
  }
}
