import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlobChunk } from './gen/spoke/v1/agent.js';
import { sha256Hex } from './sync/manifest.js';
import { frameBlobs } from './sync/frames.js';
import { AgentService, decodeBlobChunk, encodeBlobChunk } from './wire.js';

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
