import { Server, ServerCredentials, credentials, type ServerWritableStream } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { AgentClient, AgentService, heldRequestBytes, releaseRequestBytes, type BlobChunk, type FetchBlobsRequest } from './wire.js';

describe('releaseRequestBytes (a real grpc-js server and client)', () => {
  it('drops the bytes of a delivered FetchBlobs request while the call goes on', async () => {
    const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
    const seen: { before?: number; released?: boolean; after?: number; hashes?: number } = {};
    server.addService(AgentService, {
      fetchBlobs: (call: ServerWritableStream<FetchBlobsRequest, BlobChunk>) => {
        seen.hashes = call.request.hashes.length;
        seen.before = heldRequestBytes(call);
        seen.released = releaseRequestBytes(call);
        seen.after = heldRequestBytes(call);
        expect(releaseRequestBytes(call)).toBe(true); // twice is harmless
        // the call goes on as usual after it
        setTimeout(() => {
          call.write({ data: Buffer.from('still here') });
          call.end();
        }, 10);
      },
    } as never);
    const port = await new Promise<number>((ok, ko) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? ko(e) : ok(p))));
    const client = new AgentClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      const hashes = Array.from({ length: 16_384 }, (_, i) => i.toString(16).padStart(64, '0'));
      const got: string[] = [];
      for await (const m of client.fetchBlobs({ tree: '/t', hashes }) as AsyncIterable<BlobChunk>) got.push(Buffer.from(m.data).toString());
      expect(got).toEqual(['still here']);
      expect(seen.hashes).toBe(16_384);
      // grpc-js held the whole request (16,384 × 66 bytes and the tree) until this
      expect(seen.before).toBeGreaterThan(16_384 * 66);
      expect(seen.released).toBe(true);
      expect(seen.after).toBe(0);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  it('changes nothing on a call it does not recognise, or in the middle of a message', () => {
    expect(releaseRequestBytes({})).toBe(false);
    expect(releaseRequestBytes({ call: {} })).toBe(false);
    expect(heldRequestBytes({ call: { decoder: {} } })).toBeUndefined();
    const piece = Buffer.alloc(10);
    const reading = { call: { decoder: { readState: 2, readPartialMessage: [piece], readCompressFlag: Buffer.alloc(1) } } };
    expect(releaseRequestBytes(reading)).toBe(false);
    expect(reading.call.decoder.readPartialMessage).toEqual([piece]);
    expect(heldRequestBytes(reading)).toBe(10);
  });
});
