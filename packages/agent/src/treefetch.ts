/**
 * The agent's client side of the tree transfers (GetManifest, FetchBlobs): the desired manifest,
 * as a delta from what this agent last committed or whole, and blobs by hash in batches, a blob
 * corrupted in transit fetched again. Holds the connection's client for AgentTrees and the
 * streamed first sync (streamsync.ts).
 */
import { existsSync, readdirSync } from 'node:fs';
import type { ClientReadableStream } from '@grpc/grpc-js';
import {
  buildManifest,
  fail,
  fromServiceError,
  isSpokeError,
  unframeBlobs,
  type wire,
  type Logger,
  type Manifest,
  type ManifestEntry,
  type ReceivedBlob,
} from '@spoke/shared';
import { readCommitted, type BlobFetcher, type ManifestDelta } from './converge/index.js';

/** Hashes per FetchBlobs request, by default. */
export const FETCH_BATCH = 16_384;

/** The bytes of a blob stream (FetchBlobs, StreamTree), its gRPC errors as SpokeErrors. */
export async function* bytesOf(stream: ClientReadableStream<wire.BlobChunk>): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of stream as AsyncIterable<wire.BlobChunk>) yield chunk.data;
  } catch (e) {
    throw fromServiceError(e);
  }
}

/** GetManifest and FetchBlobs on the agent (see AgentTrees). */
export class TreeFetch {
  private readonly stateDir: string;
  private readonly log: Logger;
  private client: wire.AgentClient | null = null;
  /** Hashes per FetchBlobs request. */
  private readonly fetchBatch: number;

  constructor(deps: { stateDir: string; log: Logger; fetchBatch: number }) {
    this.stateDir = deps.stateDir;
    this.log = deps.log;
    this.fetchBatch = deps.fetchBatch;
  }

  /** Sets the client used for GetManifest / FetchBlobs (owned by the connection). */
  setClient(c: wire.AgentClient): void {
    this.client = c;
  }

  /** The client, or AGENT_DISCONNECTED while there is none. */
  requireClient(): wire.AgentClient {
    if (!this.client) throw fail('AGENT_DISCONNECTED', 'not connected to the master');
    return this.client;
  }

  /**
   * The desired manifest: only the difference from what this agent last committed when the
   * master still remembers that version (the converge engine merges and checks it), else the
   * whole manifest, checked against its root hash.
   */
  async fetchManifest(tree: string, rootHash: string, allowDelta = true): Promise<Manifest | ManifestDelta> {
    const base = allowDelta ? readCommitted(this.stateDir, tree) : null;
    const entries: ManifestEntry[] = [];
    const removed: string[] = [];
    let delta = false;
    let sentRoot = '';
    const stream = this.requireClient().getManifest({ tree, rootHash, baseRootHash: base?.rootHash ?? '' });
    try {
      for await (const chunk of stream as AsyncIterable<wire.ManifestChunk>) {
        delta = chunk.delta;
        sentRoot = chunk.rootHash;
        removed.push(...chunk.removed);
        for (const e of chunk.entries) {
          const entry: ManifestEntry = { path: e.path, type: e.type as ManifestEntry['type'], mode: e.mode, size: e.size, hash: e.hash };
          if (e.type === 'symlink') entry.target = e.target;
          entries.push(entry);
        }
      }
    } catch (e) {
      throw fromServiceError(e);
    }
    if (delta && base) return { base: base.rootHash, rootHash, upserts: entries, removed };
    const m = buildManifest(entries);
    // rootHash "" (a stream declined): whatever the master's walk found, checked by the root it sent
    const want = rootHash || sentRoot;
    if (m.rootHash !== want) {
      throw fail('TREE_CHANGED', `the manifest the master sent hashes to ${m.rootHash.slice(0, 12)}, not ${want.slice(0, 12)}`);
    }
    return m;
  }

  /** Fetches blobs by hash; a blob corrupted in transit is refused and fetched once more. */
  fetcher(tree: string): BlobFetcher {
    return {
      verifies: true,
      fetch: async (hashes, stagingDir, onBytes, _signal, destOf, modeOf) => {
        // In batches: one request naming 200,000 hashes held ~30 MB of decoded strings (and the
        // master's index of them) for the whole transfer, on both ends.
        const all = [...hashes];
        const got: ReceivedBlob[] = [];
        for (let i = 0; i < all.length; i += this.fetchBatch)
          got.push(...(await this.fetchSome(tree, all.slice(i, i + this.fetchBatch), stagingDir, onBytes, destOf, modeOf)));
        return got;
      },
    };
  }

  private async fetchSome(
    tree: string,
    batch: string[],
    stagingDir: string,
    onBytes: ((n: number, files: number) => void) | undefined,
    destOf: ((hash: string) => string | undefined) | undefined,
    modeOf: ((hash: string) => number) | undefined,
  ): Promise<ReceivedBlob[]> {
    let missing = batch;
    // what verified on arrival, where it was written (a failed attempt's blobs are not listed)
    const received: ReceivedBlob[] = [];
    for (let attempt = 1; missing.length > 0; attempt++) {
      const stream = this.requireClient().fetchBlobs({ tree, hashes: missing });
      try {
        const got = await unframeBlobs(bytesOf(stream), stagingDir, { want: missing, destOf, modeOf, onProgress: onBytes });
        received.push(...got);
        const have = new Set(got.map((g) => g.hash));
        missing = missing.filter((h) => !have.has(h));
        if (missing.length) throw fail('BLOB_HASH_MISMATCH', `${missing.length} blob(s) did not arrive`);
      } catch (e) {
        stream.cancel();
        // A bad blob or a broken stream: keep what verified, fetch the rest again.
        if (attempt >= 3 || (isSpokeError(e) && ['TREE_CHANGED', 'PATH_OUTSIDE_ROOTS', 'CERT_REVOKED'].includes(e.code))) throw e;
        this.log.warn({ tree, attempt, err: (e as Error).message }, 'blob transfer failed; fetching the rest again');
        const present = new Set(readdirSync(stagingDir));
        missing = missing.filter((h) => {
          const at = destOf?.(h);
          return !(present.has(h) || (at !== undefined && existsSync(at)));
        });
      }
    }
    return received;
  }
}
