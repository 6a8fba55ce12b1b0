/**
 * Lets a long server-streaming call drop the bytes of its request once the handler has it.
 *
 * grpc-js's server call keeps the pieces of the last message it received (its StreamDecoder's
 * `readPartialMessage`, views into the HTTP/2 read buffers, ~16 KiB each) until the next message
 * begins: for a server stream, until the call ends. A FetchBlobs request of 16,384 hashes is
 * ~1.1 MB, so the 50 members of a cluster converging one platform (most of them waiting for
 * their turn at the gate) held ~54 MB of requests already decoded (heap snapshot of the master in
 * `pnpm bench:scale`, issue 20).
 */

/** The parts of grpc-js's StreamDecoder this touches (build/src/stream-decoder.js). */
interface DecoderShape {
  readState: unknown;
  readPartialMessage: unknown;
  readCompressFlag: unknown;
}

/** grpc-js's ReadState.NO_DATA: the last message is complete and no other has begun. */
const NO_DATA = 0;

function decoderOf(call: object): DecoderShape | undefined {
  const inner = (call as { call?: { decoder?: unknown } }).call;
  const d = typeof inner === 'object' && inner !== null ? inner.decoder : undefined;
  if (typeof d !== 'object' || d === null) return undefined;
  const shape = d as Partial<DecoderShape>;
  if (!Array.isArray(shape.readPartialMessage) || !Buffer.isBuffer(shape.readCompressFlag) || typeof shape.readState !== 'number') return undefined;
  return d as DecoderShape;
}

/**
 * Bytes of received messages a server call still holds (its decoder's pieces of the last one),
 * or undefined when the call is not shaped as expected (another grpc-js).
 */
export function heldRequestBytes(call: object): number | undefined {
  const d = decoderOf(call);
  if (!d) return undefined;
  return (d.readPartialMessage as Buffer[]).reduce((n, b) => n + b.length, 0);
}

/**
 * Drops what a server call's decoder keeps of the request it already delivered (call it in the
 * handler, after reading `call.request`). Only between messages: a message half read is left
 * alone. Returns false, changing nothing, when the call is not shaped as expected (another
 * grpc-js) or a message is being read; the bytes then go with the call, as before.
 * callbytes.test.ts fails if the grpc-js in use stops taking it.
 */
export function releaseRequestBytes(call: object): boolean {
  const d = decoderOf(call);
  if (!d || d.readState !== NO_DATA) return false;
  d.readPartialMessage = [];
  // a 1-byte view into the first read buffer of the message: it kept that whole buffer
  d.readCompressFlag = Buffer.alloc(1);
  return true;
}
