/**
 * Plumbing between tar-stream (streamx streams) and the rest of the code: reading entries from
 * any byte source with backpressure, writing entries into a pack, and exposing a pack as a Node
 * Readable. Kept apart so archive.ts and blobs.ts read as policy, not stream juggling.
 */
import { Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import { extract as tarExtract, pack as tarPack, type Header, type Pack } from 'tar-stream';
import { fail, isSpokeError } from '../errors.js';

/** One entry read from a tar: its header and its bytes (read them to the end before the next). */
export interface TarEntry {
  header: Header;
  body: AsyncIterable<Buffer>;
}

/** Any byte stream: a Node Readable, a gRPC chunk iterator mapped to bytes, a tar pack. */
export type ByteSource = AsyncIterable<Uint8Array>;

/** The minimal writable surface shared by streamx and Node streams. */
interface WritableLike {
  write(chunk: Uint8Array): boolean;
  once(event: string, fn: (...args: unknown[]) => void): unknown;
  off(event: string, fn: (...args: unknown[]) => void): unknown;
  destroyed?: boolean;
}

/** Resolves when `w` wants more data; rejects if it closes or fails first. */
function drained(w: WritableLike): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: unknown) => {
      w.off('drain', onDrain);
      w.off('close', onClose);
      w.off('error', onError);
      if (err === undefined) resolve();
      else reject(err instanceof Error ? err : new Error(String(err)));
    };
    const onDrain = () => done();
    const onClose = () => done(new Error('stream closed'));
    const onError = (err: unknown) => done(err ?? new Error('stream failed'));
    w.once('drain', onDrain);
    w.once('close', onClose);
    w.once('error', onError);
  });
}

/** Writes one chunk, waiting for drain when the stream asks for it. */
export async function writeChunk(w: WritableLike, chunk: Uint8Array): Promise<void> {
  if (w.destroyed) throw new Error('stream closed');
  if (!w.write(chunk)) await drained(w);
}

/**
 * Yields the entries of a tar stream. Each entry's body must be read to its end before asking for
 * the next one (tar is sequential). Errors of the source itself pass through unchanged, whether
 * they surface between entries or inside a body; anything else the parser fails on (bad
 * checksum, truncation, garbage) becomes ARCHIVE_UNSAFE "malformed archive". Stopping early
 * destroys the parser and, if it has `destroy`, the source.
 */
export async function* readTar(source: ByteSource): AsyncGenerator<TarEntry, void, undefined> {
  const ex = tarExtract();
  let sourceError: unknown;
  let parserError: unknown;
  ex.on('error', (err: unknown) => {
    parserError ??= err;
  });
  const mapError = (err: unknown): unknown => {
    if (sourceError !== undefined) return sourceError;
    if (isSpokeError(err)) return err;
    const why = parserError ?? err;
    const text = why instanceof Error ? why.message : String(why);
    return fail('ARCHIVE_UNSAFE', `malformed or truncated archive: ${text}`);
  };
  // Feed the parser in the background; its errors reach the consumer through the parser.
  void (async () => {
    for await (const chunk of source) {
      if (ex.destroyed) return;
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      await writeChunk(ex, buf);
    }
    ex.end(undefined);
  })().catch((err: unknown) => {
    sourceError = err;
    ex.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  let finished = false;
  try {
    for await (const entry of ex) {
      const bytes = entry as AsyncIterable<unknown> as AsyncIterable<Buffer>; // library edge
      yield { header: entry.header, body: mappedBody(bytes, mapError) };
      entry.resume(); // discard whatever the consumer did not read
    }
    finished = true;
  } catch (err) {
    throw mapError(err);
  } finally {
    if (!finished) {
      ex.destroy();
      const d = (source as { destroy?: unknown }).destroy;
      if (typeof d === 'function') d.call(source);
    }
  }
}

/** An entry's bytes (tar-stream types them as unknown; they are Buffers) with errors mapped. */
async function* mappedBody(entry: AsyncIterable<Buffer>, mapError: (err: unknown) => unknown): AsyncGenerator<Buffer, void, undefined> {
  try {
    yield* entry;
  } catch (err) {
    throw mapError(err);
  }
}

/** Adds one entry to `pack`, streaming `body` (if any), and waits until tar-stream accepted it. */
export function addEntry(pack: Pack, header: Partial<Header> & { name: string }, body?: AsyncIterable<Uint8Array>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    if (body === undefined) {
      if (header.type === 'file') sink.end(undefined);
      return;
    }
    (async () => {
      for await (const chunk of body) await writeChunk(sink, chunk);
      sink.end(undefined);
    })().catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      sink.destroy(e);
      reject(e);
    });
  });
}

/**
 * Reads exactly `size` bytes from an open file as fresh buffers (tar-stream keeps references to
 * what it is given, so a reused buffer would be overwritten under it), feeding each to `onChunk`.
 * @throws SpokeError TREE_UNREADABLE when the file ends early (it shrank after its size was taken)
 */
export async function* fileChunks(fh: FileHandle, size: number, what: string, onChunk?: (chunk: Buffer) => void): AsyncGenerator<Buffer, void, undefined> {
  let pos = 0;
  while (pos < size) {
    const buf = Buffer.allocUnsafe(Math.min(256 * 1024, size - pos));
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) throw fail('TREE_UNREADABLE', `${what} shrank while being packed`);
    const chunk = bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    onChunk?.(chunk);
    pos += bytesRead;
    yield chunk;
  }
}

/**
 * Runs `produce` against a fresh pack and returns the tar as a Node Readable. A failure in
 * `produce` destroys the stream with that error; a consumer that stops reading makes the
 * producer's next write fail, which ends it.
 */
export function packToReadable(produce: (pack: Pack) => Promise<void>): Readable {
  const pack = tarPack();
  produce(pack).then(
    () => pack.finalize(),
    (err: unknown) => pack.destroy(err instanceof Error ? err : new Error(String(err))),
  );
  // Through a generator, not Readable.from(pack): on an early stop Node calls throw() on the
  // iterator, streamx's rejects, and the stream then emits an 'error' nobody listens to any more.
  return Readable.from(chunksOf(pack), { objectMode: false });
}

async function* chunksOf(pack: Pack): AsyncGenerator<Buffer, void, undefined> {
  for await (const chunk of pack) yield chunk as Buffer;
}

/** A tar being written entry by entry, read from `readable`. */
export interface TarWriter {
  readable: Readable;
  /** Adds one entry (streaming `body`), waiting until tar-stream accepted it. */
  add(header: Partial<Header> & { name: string }, body?: AsyncIterable<Uint8Array>): Promise<void>;
  /** Ends the tar (the end-of-archive blocks follow). */
  end(): void;
  /** Fails the stream. */
  destroy(err: Error): void;
}

/** Opens a tar to be filled by the caller (when a producer callback does not fit, e.g. several tars at once). */
export function openTarWriter(): TarWriter {
  const pack = tarPack();
  return {
    readable: Readable.from(chunksOf(pack), { objectMode: false }),
    add: (header, body) => addEntry(pack, header, body),
    end: () => pack.finalize(),
    destroy: (err) => pack.destroy(err),
  };
}
