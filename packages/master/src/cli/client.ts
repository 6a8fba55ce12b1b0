/**
 * The CLI's connection to the master: the local unix socket by default, or the TLS port with an
 * operator certificate. Wraps the generated client in promise-returning calls that throw
 * SpokeError with the master's stable code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { credentials, Metadata, type ClientReadableStream, type handleUnaryCall } from '@grpc/grpc-js';
import { channelOptions, clientTls, fail, fromServiceError, grpcTarget, wire } from '@spoke/shared/client';

/** How to reach the master. */
export interface ConnectOptions {
  stateDir?: string;
  socket?: string;
  master?: string;
  certDir?: string;
}

type Cb<T> = (err: unknown, res: T) => void;
type UnaryFn<Req, Res> = (req: Req, md: Metadata, opts: { deadline: number }, cb: Cb<Res>) => unknown;

/** The generated service's own methods (without the index signature it inherits). */
type OperatorMethods = { [K in keyof wire.OperatorServer as string extends K ? never : K]: wire.OperatorServer[K] };
/** The Operator service's unary methods (from the generated service: one source of truth). */
export type OperatorUnary = {
  [K in keyof OperatorMethods]: OperatorMethods[K] extends handleUnaryCall<infer _Req, infer _Res> ? K : never;
}[keyof OperatorMethods];
/** The request type of a unary Operator method. */
export type OperatorRequest<K extends OperatorUnary> = OperatorMethods[K] extends handleUnaryCall<infer Req, infer _Res> ? Req : never;
/** The response type of a unary Operator method. */
export type OperatorResponse<K extends OperatorUnary> = OperatorMethods[K] extends handleUnaryCall<infer _Req, infer Res> ? Res : never;

/** Promise-returning operator calls. */
export class OperatorApi {
  readonly client: wire.OperatorClient;
  readonly target: string;

  constructor(o: ConnectOptions) {
    if (o.master) {
      const dir = o.certDir ? resolve(o.certDir) : '';
      const files = { ca: join(dir, 'ca.crt'), cert: join(dir, 'operator.crt'), key: join(dir, 'operator.key') };
      if (!dir || !existsSync(files.cert)) {
        throw fail('CERT_REQUIRED', '--master needs --cert-dir DIR holding ca.crt, operator.crt and operator.key (see: spoke operator cert)');
      }
      this.target = o.master;
      this.client = new wire.OperatorClient(
        grpcTarget(o.master),
        clientTls(readFileSync(files.ca, 'utf8'), readFileSync(files.cert, 'utf8'), readFileSync(files.key, 'utf8')),
        channelOptions(),
      );
    } else {
      const socket = resolve(o.socket ?? join(o.stateDir ?? process.env.SPOKE_STATE_DIR ?? '.spoke', 'spoke.sock'));
      if (!existsSync(socket)) {
        throw fail('MASTER_UNREACHABLE', `no master socket at ${socket}; is the master running? (start one with: spoke up, or pass --state-dir / --socket)`);
      }
      this.target = socket;
      this.client = new wire.OperatorClient(`unix://${socket}`, credentials.createInsecure(), channelOptions());
    }
  }

  /**
   * Calls one unary method; its request and response types come from the generated service, so
   * a wrong pair does not compile. Errors come back as SpokeError.
   */
  call<K extends OperatorUnary>(method: K, req: OperatorRequest<K>, timeoutMs = 30_000): Promise<OperatorResponse<K>> {
    type Res = OperatorResponse<K>;
    const fn = (this.client[method] as unknown as UnaryFn<OperatorRequest<K>, Res>).bind(this.client);
    return new Promise<Res>((ok, ko) => {
      fn(req, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? ko(fromServiceError(err)) : ok(res)));
    });
  }

  /** The sites in domain order, a page (one message, up to 1,000) at a time; errors as SpokeError. */
  async *sitePages(platform = ''): AsyncGenerator<wire.Site[]> {
    const stream = this.client.listSites({ platform });
    try {
      for await (const page of stream as AsyncIterable<wire.SiteList>) yield page.sites;
    } catch (e) {
      throw fromServiceError(e);
    } finally {
      stream.cancel(); // a reader that stops early ends the call (no-op after its end)
    }
  }

  /** Every site (all pages). */
  async allSites(platform = ''): Promise<wire.Site[]> {
    const out: wire.Site[] = [];
    for await (const page of this.sitePages(platform)) out.push(...page);
    return out;
  }

  /** Opens the WatchTask stream. */
  watch(id: number, fromSeq = 0): ClientReadableStream<wire.TaskEvent> {
    return this.client.watchTask({ id, fromSeq });
  }

  /** Opens the Events stream (`spoke events`). */
  events(req: wire.EventsRequest): ClientReadableStream<wire.SpokeEvent> {
    return this.client.events(req);
  }

  close(): void {
    this.client.close();
  }
}
