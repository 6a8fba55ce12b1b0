import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import { BlobChunk } from './gen/spoke/v1/agent.js';
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
