/**
 * The generated wire code (ts-proto, from proto/). Only gRPC handlers and clients use it; they
 * convert to domain types at the edge.
 */
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import {
  type AgentClient as GeneratedAgentClientCtor,
  AgentService as GeneratedAgentService,
  BlobChunk,
  type AgentClient as GeneratedAgentClient,
} from './gen/spoke/v1/agent.js';
import { CHUNK_HEADROOM, hasHeadroom } from './sync/frames.js';

export * from './gen/spoke/v1/types.js';
export * from './gen/spoke/v1/operator.js';
export * from './gen/spoke/v1/agent.js';
// The generated files each define these helpers; name one set explicitly to settle the clash.
export { protobufFileName, protobufPackage } from './gen/spoke/v1/types.js';
export type { DeepPartial, Exact, MessageFns } from './gen/spoke/v1/types.js';
// Agent commands between their domain form and the wire (the hub and the agent's connection).
export { commandToWire, commandFromWire, resultToWire, resultFromWire } from './commandwire.js';
// What a server call keeps of its request after the handler has it (callbytes.ts).
export { heldRequestBytes, releaseRequestBytes } from './callbytes.js';

/**
 * BlobChunk (one field: `bytes data = 1`) without the generated codec's copies. That codec copies
 * each 1 MiB chunk three times to send it (into the writer, out of it, into a Buffer) and once to
 * receive it; for a 85 MB initial sync that was ~250 MB of allocation on the master, most of its
 * garbage-collection time. This writes the field header and copies the data once (not at all
 * for a chunk from frameBlobs, which leaves room for the header in front of it), and reads the
 * data as a view of the received message. Same bytes on the wire (checked against the generated
 * codec in wire.test.ts); a message with any other field is left to the generated decoder.
 */
export function encodeBlobChunk(msg: BlobChunk): Buffer {
  const data = msg.data;
  const n = data.length;
  if (n === 0) return Buffer.alloc(0);
  let head = 2; // tag byte + at least one length byte
  for (let v = n; v >= 0x80; v >>>= 7) head++;
  // A chunk from frameBlobs has room for the header in front of it: no copy at all.
  const inPlace = head <= CHUNK_HEADROOM && hasHeadroom(data);
  const out = inPlace ? Buffer.from(data.buffer, data.byteOffset - head, head + n) : Buffer.allocUnsafe(head + n);
  out[0] = 0x0a; // field 1, length-delimited
  let i = 1;
  let v = n;
  while (v >= 0x80) {
    out[i++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[i++] = v;
  if (!inPlace) out.set(data, i);
  return out;
}

/** gRPC's length prefix in front of every message: a compressed flag and a 4-byte length. */
const GRPC_PREFIX = 5;

/**
 * The whole gRPC message for a BlobChunk whose data has its own headroom (hasHeadroom: a chunk of
 * frameBlobs or frameChunk), written in front of the data: gRPC's 5-byte prefix, then the field
 * header. The bytes written depend only on the data's length, so many streams may send one chunk
 * (each writing the same header bytes again). Undefined for any other message.
 */
export function grpcFrameInPlace(msg: BlobChunk): Buffer | undefined {
  const data = msg.data;
  const n = data.length;
  if (n === 0 || !hasHeadroom(data)) return undefined;
  let varint = 1;
  for (let v = n; v >= 0x80; v >>>= 7) varint++;
  const head = GRPC_PREFIX + 1 + varint;
  if (head > CHUNK_HEADROOM) return undefined;
  const out = Buffer.from(data.buffer, data.byteOffset - head, head + n);
  out[0] = 0; // not compressed
  out.writeUInt32BE(1 + varint + n, 1);
  let i = GRPC_PREFIX;
  out[i++] = 0x0a; // field 1, length-delimited
  let v = n;
  while (v >= 0x80) {
    out[i++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[i] = v;
  return out;
}

/** Messages encoded once (preframe) for many streams: message → its whole gRPC message. */
const preframed = new WeakMap<object, Buffer>();

/**
 * Encodes `msg` once as a whole gRPC message (prefix and all) and returns it: a server call that
 * sendInPlace was applied to sends it without encoding or copying it again. For messages many
 * streams send alike (the manifest of a platform fifty cluster members ask for). Never change a
 * message after this.
 */
export function preframe<T extends object>(msg: T, codec: { encode(m: T): { finish(): Uint8Array } }): T {
  const body = codec.encode(msg).finish();
  const frame = Buffer.allocUnsafe(GRPC_PREFIX + body.length);
  frame[0] = 0; // not compressed
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, GRPC_PREFIX);
  preframed.set(msg, frame);
  return msg;
}

/** Bytes of a message's preframed form (0: not preframed). */
export function preframedBytes(msg: object): number {
  return preframed.get(msg)?.length ?? 0;
}

/**
 * Makes one server call send preframed messages, and BlobChunks with headroom
 * (grpcFrameInPlace), as they are: grpc-js serializes every message and copies it into a new
 * buffer to put its 5-byte prefix in front (`serializeMessage`) — 1 MiB per blob chunk per stream,
 * so fifty cluster members sharing one chunk cost fifty copies, and each stream's queue held its
 * own. This replaces that method on this call's own object (grpc-js's BaseServerInterceptingCall;
 * the master has no interceptors); any other message goes the usual way. Returns false, changing
 * nothing, when the call is not shaped as expected (another grpc-js): messages are then encoded
 * and copied as usual, the same bytes on the wire. wire.test.ts checks that it takes effect with
 * the grpc-js in use.
 */
export function sendInPlace(call: object): boolean {
  const inner = (call as { call?: { serializeMessage?: unknown } }).call;
  if (typeof inner !== 'object' || inner === null || typeof inner.serializeMessage !== 'function') return false;
  if ((inner.serializeMessage as { inPlace?: true }).inPlace) return true;
  const usual = (inner.serializeMessage as (v: unknown) => Buffer).bind(inner);
  const inPlace = (value: unknown): Buffer => {
    if (typeof value !== 'object' || value === null) return usual(value);
    const frame = preframed.get(value);
    if (frame) return frame;
    const d = (value as { data?: unknown }).data;
    return (d instanceof Uint8Array && grpcFrameInPlace(value as BlobChunk)) || usual(value);
  };
  inner.serializeMessage = Object.assign(inPlace, { inPlace: true as const });
  return true;
}

/** See encodeBlobChunk. */
export function decodeBlobChunk(buf: Buffer): BlobChunk {
  if (buf.length === 0) return { data: Buffer.alloc(0) };
  if (buf[0] === 0x0a) {
    let len = 0;
    let shift = 0;
    let i = 1;
    for (; i < buf.length && i < 6; i++) {
      const b = buf[i] as number;
      len += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (b < 0x80) {
        i++;
        if (i + len === buf.length) return { data: buf.subarray(i, i + len) };
        break;
      }
    }
  }
  return BlobChunk.decode(buf);
}

/** The Agent service with the BlobChunk codec above on FetchBlobs and StreamTree. */
export const AgentService: typeof GeneratedAgentService = {
  ...GeneratedAgentService,
  fetchBlobs: { ...GeneratedAgentService.fetchBlobs, responseSerialize: encodeBlobChunk, responseDeserialize: decodeBlobChunk },
  streamTree: { ...GeneratedAgentService.streamTree, responseSerialize: encodeBlobChunk, responseDeserialize: decodeBlobChunk },
};

/** A client of the Agent service (the codec above on FetchBlobs). */
export type AgentClient = GeneratedAgentClient;
export const AgentClient = makeGenericClientConstructor(AgentService, 'spoke.v1.Agent') as unknown as {
  new (...args: ConstructorParameters<typeof GeneratedAgentClientCtor>): GeneratedAgentClient;
  service: typeof AgentService;
  serviceName: string;
};
