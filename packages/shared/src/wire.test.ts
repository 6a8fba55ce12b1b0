import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlobChunk } from './gen/spoke/v1/agent.js';
import { sha256Hex } from './sync/manifest.js';
import { frameBlobs } from './sync/frames.js';
import { Server, ServerCredentials, credentials, type ServerWritableStream } from '@grpc/grpc-js';
import { ManifestChunk } from './gen/spoke/v1/agent.js';
import { frameChunk, newFrameChunk, sealFrameChunk } from './sync/frames.js';
import { AgentClient, AgentService, decodeBlobChunk, encodeBlobChunk, preframe, sendInPlace } from './wire.js';

const generated = (data: Buffer) => Buffer.from(BlobChunk.encode({ data }).finish());

describe('BlobChunk codec', () => {
  it('writes the same bytes as the generated codec and reads them back as a view', () => {
    for (const n of [0, 1, 127, 128, 300, 16_383, 16_384, 65_536, 1024 * 1024 - 64, 2_097_152, 3_000_000]) {
      const data = Buffer.alloc(n, n % 251);
      if (n > 0) data[n - 1] = 7;
      const ours = encodeBlobChunk({ data });
      expect(ours.equals(generated(data))).toBe(true);
      const back = decodeBlobChunk(ours);
      expect(Buffer.compare(back.data, data)).toBe(0);
      if (n > 0) expect(back.data.buffer).toBe(ours.buffer); // no copy
    }
  });

  it('writes the header in front of a frameBlobs chunk instead of copying it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-wire-'));
    try {
      const files = [Buffer.alloc(700_000, 1), Buffer.alloc(900_000, 2), Buffer.alloc(10, 3)];
      const sources = files.map((f, i) => {
        writeFileSync(join(dir, `f${i}`), f);
        return { hash: sha256Hex(f), path: join(dir, `f${i}`) };
      });
      const chunks: Buffer[] = [];
      for await (const c of frameBlobs(sources)) chunks.push(c);
      expect(chunks.length).toBe(2);
      for (const c of chunks) {
        const want = generated(Buffer.from(c));
        const ours = encodeBlobChunk({ data: c });
        expect(ours.equals(want)).toBe(true);
        expect(ours.buffer).toBe(c.buffer); // the same memory: no copy
        expect(decodeBlobChunk(ours).data.equals(c)).toBe(true);
      }
      // a copy of a chunk (fault injection makes one) has no room in front: copied, same bytes
      const copy = Buffer.from(chunks[0] as Buffer);
      const encoded = encodeBlobChunk({ data: copy });
      expect(encoded.buffer).not.toBe(copy.buffer);
      expect(encoded.equals(generated(copy))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('leaves anything but a lone data field to the generated decoder', () => {
    // data plus an unknown field 2: decoded like the generated decoder would
    const w = new BinaryWriter();
    w.uint32(10).bytes(Buffer.from('abc'));
    w.uint32(16).uint32(5);
    const odd = Buffer.from(w.finish());
    expect(Buffer.from(decodeBlobChunk(odd).data).toString()).toBe('abc');
    // a length that overruns the message is refused, as the generated decoder refuses it
    const bad = Buffer.from([0x0a, 0x05, 1, 2]);
    expect(() => decodeBlobChunk(bad)).toThrow();
  });

  it('is the codec the Agent service uses for FetchBlobs, and only there', () => {
    expect(AgentService.fetchBlobs.responseSerialize).toBe(encodeBlobChunk);
    expect(AgentService.fetchBlobs.responseDeserialize).toBe(decodeBlobChunk);
    expect(AgentService.getManifest.path).toBe('/spoke.v1.Agent/GetManifest');
  });
});

describe('sendInPlace (a real grpc-js server and client)', () => {
  it('sends a shared blob chunk and a preframed message without copying them, and the client gets the same bytes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-wire-'));
    const server = new Server();
    try {
      const data = Buffer.alloc(300_000, 9);
      writeFileSync(join(dir, 'f'), data);
      const out = newFrameChunk();
      const framed = frameChunk([{ hash: sha256Hex(data), path: join(dir, 'f'), size: data.length }], { blob: 0, done: 0 }, out);
      const chunk = sealFrameChunk(out, framed.length);
      const manifest = preframe<ManifestChunk>(
        {
          entries: [{ path: 'index.php', type: 'file', mode: 0o644, size: 5, hash: 'a'.repeat(64), target: '' }],
          rootHash: 'b'.repeat(64),
          total: 1,
          delta: false,
          removed: [],
          baseRootHash: '',
        },
        ManifestChunk,
      );
      const sent: Buffer[] = [];
      /** What grpc-js made of each message (its serializeMessage, replaced or not). */
      const spy = (call: object) => {
        const inner = (call as { call: { serializeMessage: (v: unknown) => Buffer } }).call;
        const own = inner.serializeMessage;
        inner.serializeMessage = (v: unknown) => {
          const b = own.call(inner, v);
          sent.push(b);
          return b;
        };
      };
      server.addService(AgentService, {
        fetchBlobs: (call: ServerWritableStream<unknown, unknown>) => {
          expect(sendInPlace(call)).toBe(true);
          expect(sendInPlace(call)).toBe(true); // twice is harmless
          spy(call);
          call.write({ data: chunk });
          call.write({ data: Buffer.from(chunk) }); // a copy (fault injection makes one): the usual way
          call.end();
        },
        getManifest: (call: ServerWritableStream<unknown, unknown>) => {
          sendInPlace(call);
          spy(call);
          call.write(manifest);
          call.write(manifest);
          call.end();
        },
      } as never);
      const port = await new Promise<number>((ok, ko) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? ko(e) : ok(p))));
      const client = new AgentClient(`127.0.0.1:${port}`, credentials.createInsecure());
      try {
        const blobs: Buffer[] = [];
        for await (const m of client.fetchBlobs({ tree: '/t', hashes: [] }) as AsyncIterable<BlobChunk>) blobs.push(Buffer.from(m.data));
        expect(blobs.length).toBe(2);
        for (const b of blobs) expect(b.equals(chunk)).toBe(true);
        // the shared chunk went out as the memory it was framed in, its headers in front
        expect(sent[0]?.buffer).toBe(chunk.buffer);
        expect(sent[0]?.byteOffset).toBe(chunk.byteOffset - 9);
        expect(sent[1]?.buffer).not.toBe(chunk.buffer);
        expect(sent[0]?.equals(sent[1] as Buffer)).toBe(true);
        const got: ManifestChunk[] = [];
        for await (const m of client.getManifest({ tree: '/t', rootHash: '', baseRootHash: '' }) as AsyncIterable<ManifestChunk>) got.push(m);
        expect(got).toEqual([manifest, manifest]);
        // the preframed message was not encoded again: the same frame each time
        expect(sent[2]?.subarray(5).equals(Buffer.from(ManifestChunk.encode(manifest).finish()))).toBe(true);
        expect(sent[3]).toBe(sent[2]);
      } finally {
        client.close();
      }
    } finally {
      server.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('changes nothing on a call it does not recognise', () => {
    expect(sendInPlace({})).toBe(false);
    expect(sendInPlace({ call: {} })).toBe(false);
  });
});
