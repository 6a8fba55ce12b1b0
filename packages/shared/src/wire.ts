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
