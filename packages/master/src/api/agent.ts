/**
 * Agent service handlers: Enroll (the one call without a client certificate) and Connect (the
 * agent's long-lived stream, handed to the hub once its certificate checks out).
 */
import type { sendUnaryData, ServerDuplexStream, ServerReadableStream, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { fail, toServiceError, wire, type Logger, type ManifestEntry } from '@spoke/shared';
import { BlobFanout, type BlobTransfer } from '../platforms/blobcache.js';
import type { Core } from '../core.js';
import type { DumpUpload, TransferChannel } from '../servers/dumps.js';
import { haveSet, serveTree } from '../platforms/streamtree.js';
import { callerOf } from './auth.js';
import { Gate } from './gate.js';
import { ManifestMessages } from './manifests.js';

/**
 * FetchBlobs streams the master serves at once (the rest wait their turn; see gate.ts). Members
 * of a cluster share framed chunks (blobcache.ts) wave after wave. At 64 (a 50-member cluster in
 * one wave) the bench lost simulated members, fifty in one process on two cores, with
 * AGENT_DISCONNECTED (likely keepalive pings behind full 16 MiB windows; docs/architecture.md).
 */
const BLOB_STREAMS = 8;

/** Builds the Agent service implementation (TLS listener only). */
export function agentService(core: Core, log: Logger): wire.AgentServer {
  const blobStreams = new Gate(BLOB_STREAMS);
  const manifests = new ManifestMessages();
  const blobs = new BlobFanout({ resolve: (tree, hashes) => core.trees.blobSources(tree, hashes) });
  return {
    enroll: (call: ServerUnaryCall<wire.EnrollRequest, wire.EnrollResponse>, cb: sendUnaryData<wire.EnrollResponse>) => {
      core.enroller.enroll(call.request.token, call.request.csrPem).then(
        (e) => {
          log.info({ server: e.server, cluster: e.cluster }, 'agent enrolled');
          cb(null, { certPem: e.certPem, caPem: e.caPem, server: e.server, cluster: e.cluster ?? '' });
        },
        (e: unknown) => {
          log.warn({ code: (e as { code?: string }).code, err: (e as Error).message }, 'enrollment refused');
          cb(toServiceError(e), null);
        },
      );
    },

    connect: (call: ServerDuplexStream<wire.AgentEvent, wire.MasterCommand>) => {
      try {
        const c = callerOf(call, 'tls');
        if (c.via !== 'tls') throw fail('CERT_REQUIRED', 'agents must present the certificate they got at enrollment');
        if (c.role !== 'agent') throw fail('CERT_UNKNOWN', `certificate ${c.commonName} is not an agent certificate`);
        const server = core.ns.authenticateAgent(c.commonName, c.fingerprint);
        core.hub.attach(server.name, server.cluster, call);
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'agent connection refused');
        call.emit('error', Object.assign(new Error((e as Error).message), toServiceError(e)));
      }
    },

    getManifest: (call: ServerWritableStream<wire.GetManifestRequest, wire.ManifestChunk>) => {
      streamed(call, log, async () => {
        const p = authorizeTree(core, call, call.request.tree);
        // an agent that declined a streamed first sync: the walk under way is the manifest
        if (!call.request.rootHash) core.feeds.decline(p.path, agentOf(core, call));
        await core.feeds.walked(p.path);
        const base = call.request.baseRootHash;
        const d = base ? await core.trees.delta(p.path, p.excludes, base) : undefined;
        const m = d?.desired ?? (await core.trees.manifest(p.path, p.excludes));
        if (call.request.rootHash && m.rootHash !== call.request.rootHash) {
          throw fail('TREE_CHANGED', `platform ${p.name} changed since this converge started; the next converge picks it up`);
        }
        // one encoding for every member asking for this manifest at about the same time (manifests.ts)
        const key = `${p.path}\0${m.rootHash}\0${d ? base : ''}`;
        const msgs = manifests.get(key, () => {
          const entries = d ? d.upserts : m.entries;
          const removed = d ? d.removed : [];
          const CHUNK = 4000;
          const out: wire.ManifestChunk[] = [];
          for (let i = 0; i === 0 || i < Math.max(entries.length, removed.length); i += CHUNK) {
            out.push({
              entries: entries.slice(i, i + CHUNK).map(entryToWire),
              rootHash: m.rootHash,
              total: m.entries.length,
              delta: !!d,
              removed: removed.slice(i, i + CHUNK),
              baseRootHash: d ? base : '',
            });
          }
          return out;
        });
        wire.sendInPlace(call);
        for (const msg of msgs) await writeBounded(call, msg);
      });
    },

    fetchBlobs: (call: ServerWritableStream<wire.FetchBlobsRequest, wire.BlobChunk>) => {
      const sendBlobs = async (transfer: BlobTransfer) => {
        if (call.cancelled) return; // gave up while waiting for a turn
        let corrupt = core.faults.corruptBlobs > 0;
        if (corrupt) core.faults.corruptBlobs--;
        // chunks are shared with other members' streams (blobcache.ts): sent as they are, never changed
        wire.sendInPlace(call);
        for await (const shared of transfer.chunks()) {
          if (call.cancelled) return;
          let chunk = shared;
          if (corrupt && chunk.length > 40) {
            // Fault injection: flip the first data byte of the first blob (after its 40-byte header), in this stream's own copy.
            chunk = Buffer.from(chunk);
            chunk[40] = (chunk[40] ?? 0) ^ 0xff;
            corrupt = false;
            log.warn('fault injection: corrupted a blob stream');
          }
          await writeBounded(call, { data: chunk });
        }
      };
      streamed(call, log, async () => {
        const p = authorizeTree(core, call, call.request.tree);
        const transfer = blobs.open(p.path, call.request.hashes);
        call.request.hashes = []; // the transfer has what it needs
        wire.releaseRequestBytes(call); // and grpc-js's copy of the request (~1.1 MB) goes too
        try {
          await blobStreams.run(() => sendBlobs(transfer));
        } finally {
          transfer.close();
        }
      });
    },

    streamTree: (call: ServerWritableStream<wire.StreamTreeRequest, wire.BlobChunk>) => {
      streamed(call, log, async () => {
        const p = authorizeTree(core, call, call.request.tree);
        const server = agentOf(core, call);
        // a call given up on no longer holds the walk back
        call.on('cancelled', () => core.feeds.decline(p.path, server));
        await serveTree(
          {
            feeds: core.feeds,
            manifest: async () => {
              await core.feeds.walked(p.path); // one walk at a time: a late caller waits for the one under way
              return { manifest: await core.trees.manifest(p.path, p.excludes), root: core.trees.canonical(p.path) };
            },
          },
          { tree: p.path, server, have: haveSet(call.request.have), send: (chunk) => writeBounded(call, { data: chunk }), cancelled: () => call.cancelled },
        );
      });
    },

    putDump: (call: ServerReadableStream<wire.DumpChunk, wire.PutDumpResult>, cb: sendUnaryData<wire.PutDumpResult>) => putUpload(core, log, call, cb, 'dump'),
    getDump: (call: ServerWritableStream<wire.GetDumpRequest, wire.DumpChunk>) => getDownload(core, log, call, 'dump'),
    putFiles: (call: ServerReadableStream<wire.DumpChunk, wire.PutDumpResult>, cb: sendUnaryData<wire.PutDumpResult>) =>
      putUpload(core, log, call, cb, 'files'),
    getFiles: (call: ServerWritableStream<wire.GetDumpRequest, wire.DumpChunk>) => getDownload(core, log, call, 'files'),
  };
}

/** PutDump / PutFiles: a client-streaming upload for a command; the first chunk names it. */
function putUpload(
  core: Core,
  log: Logger,
  call: ServerReadableStream<wire.DumpChunk, wire.PutDumpResult>,
  cb: sendUnaryData<wire.PutDumpResult>,
  channel: TransferChannel,
): void {
  let upload: DumpUpload | undefined;
  const what = channel === 'dump' ? 'dump' : 'site files';
  call.on('cancelled', () => {
    upload?.abort(fail('AGENT_DISCONNECTED', `the agent cancelled the ${what} upload`));
    call.destroy();
  });
  (async () => {
    const server = agentOf(core, call);
    for await (const chunk of call as AsyncIterable<wire.DumpChunk>) {
      upload ??= core.hub.dumps.acceptUpload(server, chunk.commandId, channel);
      if (chunk.data.length) await upload.write(chunk.data);
    }
    if (!upload) throw fail('INVALID_ARGUMENT', `an empty ${what} upload names no command`);
    return upload.end();
  })().then(
    (bytes) => cb(null, { bytes }),
    (e: unknown) => {
      upload?.abort(e as Error);
      log.warn({ err: (e as Error).message, code: (e as { code?: string }).code }, `${what} upload refused`);
      cb(toServiceError(e), null);
    },
  );
}

/** GetDump / GetFiles: streams what the command's caller offered. */
function getDownload(core: Core, log: Logger, call: ServerWritableStream<wire.GetDumpRequest, wire.DumpChunk>, channel: TransferChannel): void {
  streamed(call, log, async () => {
    const source = core.hub.dumps.openDownload(agentOf(core, call), call.request.commandId, channel);
    try {
      for await (const piece of source as AsyncIterable<Buffer | string>) {
        if (call.cancelled) return;
        const raw = typeof piece === 'string' ? Buffer.from(piece) : piece;
        for (let i = 0; i < raw.length; i += DUMP_CHUNK) {
          await writeBounded(call, { commandId: '', data: raw.subarray(i, i + DUMP_CHUNK) });
          if (call.cancelled) return;
        }
      }
    } finally {
      source.destroy();
    }
  });
}

/** Largest data field of a DumpChunk sent to an agent. */
const DUMP_CHUNK = 1024 * 1024;

/**
 * The enrolled agent behind a call.
 * @throws SpokeError CERT_REQUIRED, CERT_UNKNOWN, CERT_REVOKED
 */
function agentOf(core: Core, call: ServerWritableStream<unknown, unknown> | ServerReadableStream<unknown, unknown>): string {
  const c = callerOf(call, 'tls');
  if (c.via !== 'tls' || c.role !== 'agent') throw fail('CERT_REQUIRED', 'only enrolled agents may move database dumps and site files');
  return core.ns.authenticateAgent(c.commonName, c.fingerprint).name;
}

function entryToWire(e: ManifestEntry): wire.ManifestEntryMsg {
  return { path: e.path, type: e.type, mode: e.mode, size: e.size, hash: e.hash, target: e.target ?? '' };
}

/**
 * Messages a server stream may have queued before writeBounded waits. A grpc-js stream is an
 * object-mode Writable: write() returns false only after 16 queued messages, i.e. 16 MiB of blob
 * chunks (a whole 200,000-file transfer to a slow agent sat in the master's memory).
 */
const MAX_QUEUED = 4;
const queued = new WeakMap<object, { n: number; wake: (() => void) | undefined }>();

/**
 * Writes a message (`written` is called once grpc-js has serialized it, or dropped it with the
 * call: the message's buffers are free again), then waits while more than MAX_QUEUED written messages have not reached the
 * HTTP/2 stream yet, or until the call is cancelled or closed (its callbacks may never come).
 */
export async function writeBounded<T>(call: ServerWritableStream<unknown, T>, msg: T, written?: () => void): Promise<void> {
  let q = queued.get(call);
  if (q === undefined) queued.set(call, (q = { n: 0, wake: undefined }));
  const state = q;
  state.n++;
  call.write(msg, () => {
    written?.();
    state.n--;
    state.wake?.();
  });
  while (state.n > MAX_QUEUED && !call.cancelled && !call.destroyed) {
    await new Promise<void>((resolve) => {
      const done = () => {
        state.wake = undefined;
        call.off('cancelled', done);
        call.off('close', done);
        resolve();
      };
      state.wake = done;
      call.on('cancelled', done);
      call.on('close', done);
    });
  }
}

/** Runs a server-streaming handler body; ends the stream or sends the mapped error status. */
function streamed(call: ServerWritableStream<unknown, unknown>, log: Logger, body: () => Promise<void>): void {
  body().then(
    () => call.end(),
    (e: unknown) => {
      log.warn({ err: (e as Error).message, code: (e as { code?: string }).code }, 'agent stream refused');
      call.emit('error', Object.assign(new Error((e as Error).message), toServiceError(e)));
    },
  );
}

/**
 * An agent may read only trees it hosts: its own platforms, or its cluster's.
 * @throws SpokeError CERT_REQUIRED, CERT_UNKNOWN, CERT_REVOKED, PATH_OUTSIDE_ROOTS
 */
function authorizeTree(core: Core, call: ServerWritableStream<unknown, unknown>, tree: string) {
  const c = callerOf(call, 'tls');
  if (c.via !== 'tls' || c.role !== 'agent') throw fail('CERT_REQUIRED', 'only enrolled agents may fetch trees');
  const server = core.ns.authenticateAgent(c.commonName, c.fingerprint);
  const p = core.ns.platformsFor(server.name).find((x) => x.path === tree);
  if (!p) throw fail('PATH_OUTSIDE_ROOTS', `${server.name} does not host a platform at ${tree}`);
  return p;
}
