/**
 * Transfers in flight between the master and an agent, keyed by the id of the command that asked
 * for them. Two channels share the mechanism:
 * - `dump`: a DbDumpCommand's upload (agent → master, PutDump) goes into the caller's sink,
 *   checked for completeness on the way; a DbRestoreCommand's download (master → agent,
 *   GetDump) reads the caller's source;
 * - `files`: a SiteFilesPackCommand's tar (PutFiles) and a SiteFilesUnpackCommand's tar
 *   (GetFiles), moved as they are (the agent and the tar codec check the content).
 * Only the agent the command went to may take its transfer, on its channel, and only once.
 */
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { DumpTail, fail } from '@spoke/shared';

/** An upload being received (used by the PutDump handler). */
export interface DumpUpload {
  /** Writes a chunk to the sink (waits when it is full). */
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Checks the dump is complete, ends the sink and waits for it to finish.
   * @throws SpokeError DB_DUMP_INCOMPLETE (the sink is destroyed)
   */
  end(): Promise<number>;
  /** The upload broke: the sink is destroyed unfinished. */
  abort(err: Error): void;
}

/** The hub's handle on a transfer it registered for a command. */
export interface DumpTransferHandle {
  /** The command failed: stop the transfer and destroy the sink or source. */
  abort(err: Error): void;
  /**
   * The agent answered ok: for an upload, the dump must have arrived in full.
   * @throws SpokeError INTERNAL
   */
  finish(): void;
}

/** Which RPC pair a transfer belongs to. */
export type TransferChannel = 'dump' | 'files';

interface Upload {
  kind: 'put';
  channel: TransferChannel;
  server: string;
  database: string;
  sink: Writable;
  taken: boolean;
  state: 'waiting' | 'receiving' | 'done' | 'failed';
  error: Error | null;
}

interface Download {
  kind: 'get';
  channel: TransferChannel;
  server: string;
  source: () => Readable;
  taken: boolean;
  open: Readable | null;
}

/** Transfers by command id. */
export class DumpTransfers {
  private readonly byId = new Map<string, Upload | Download>();

  /**
   * Registers the upload a command `id` sent to `server` will make into `sink`: a DbDumpCommand's
   * dump of `database` (channel `dump`, checked for its completion marker), or a
   * SiteFilesPackCommand's tar (channel `files`; `database` is then what the log calls it).
   */
  expectUpload(id: string, server: string, database: string, sink: Writable, channel: TransferChannel = 'dump'): DumpTransferHandle {
    const u: Upload = { kind: 'put', channel, server, database, sink, taken: false, state: 'waiting', error: null };
    this.byId.set(id, u);
    sink.on('error', (e: Error) => {
      if (u.state === 'done' || u.state === 'failed') return;
      u.state = 'failed';
      u.error = fail(
        channel === 'dump' ? 'DB_FAILED' : 'INTERNAL',
        `cannot store ${channel === 'dump' ? 'the dump of ' : ''}${database} from ${server}: ${e.message}`,
      );
    });
    return {
      abort: (err) => {
        this.byId.delete(id);
        if (u.state !== 'done') {
          u.state = 'failed';
          u.error = err;
          u.sink.destroy();
        }
      },
      finish: () => {
        this.byId.delete(id);
        if (u.state !== 'done') {
          u.sink.destroy();
          throw fail('INTERNAL', `agent ${server} reported ${channel === 'dump' ? 'a dump of ' : ''}${database} the master did not receive in full`);
        }
      },
    };
  }

  /** Registers what a DbRestoreCommand (channel `dump`) or SiteFilesUnpackCommand (`files`) `id` sent to `server` will download from `source`. */
  offerDownload(id: string, server: string, source: () => Readable, channel: TransferChannel = 'dump'): DumpTransferHandle {
    const d: Download = { kind: 'get', channel, server, source, taken: false, open: null };
    this.byId.set(id, d);
    const close = () => {
      this.byId.delete(id);
      d.open?.destroy();
    };
    return { abort: close, finish: close };
  }

  private take<K extends 'put' | 'get'>(server: string, id: string, kind: K, channel: TransferChannel): Extract<Upload | Download, { kind: K }> {
    const t = this.byId.get(id);
    if (!t || t.kind !== kind || t.channel !== channel || t.server !== server || t.taken) {
      const what = `${channel === 'dump' ? 'dump' : 'site files'} ${kind === 'put' ? 'upload' : 'download'}`;
      throw fail(channel === 'dump' ? 'DB_TRANSFER_UNKNOWN' : 'TRANSFER_UNKNOWN', `no ${what} is expected from ${server} for command ${JSON.stringify(id)}`);
    }
    t.taken = true;
    return t as Extract<Upload | Download, { kind: K }>;
  }

  /**
   * Takes the upload of command `id` for the agent `server` (the PutDump / PutFiles handler).
   * @throws SpokeError DB_TRANSFER_UNKNOWN (dump), TRANSFER_UNKNOWN (files)
   */
  acceptUpload(server: string, id: string, channel: TransferChannel = 'dump'): DumpUpload {
    const u = this.take(server, id, 'put', channel);
    u.state = 'receiving';
    const tail = new DumpTail();
    const label = u.channel === 'dump' ? `the dump of ${u.database}` : u.database;
    const broken = () => u.error ?? fail('AGENT_DISCONNECTED', `${label} from ${server} was abandoned`);
    const abort = (err: Error) => {
      if (u.state === 'done' || u.state === 'failed') return;
      u.state = 'failed';
      u.error = err;
      u.sink.destroy();
    };
    return {
      write: async (chunk) => {
        if (u.state !== 'receiving') throw broken();
        tail.update(chunk);
        if (!u.sink.write(chunk)) {
          await drainOrClose(u.sink);
          if (u.state !== 'receiving' || u.sink.destroyed) throw broken();
        }
      },
      end: async () => {
        if (u.state !== 'receiving') throw broken();
        try {
          if (u.channel === 'dump') tail.check(`the dump of ${u.database} from ${server}`);
        } catch (e) {
          abort(e as Error);
          throw e;
        }
        const finished = Promise.race([once(u.sink, 'finish'), once(u.sink, 'close')]).catch(() => undefined); // once per upload
        u.sink.end();
        await finished;
        if (u.state !== 'receiving') throw broken();
        u.state = 'done';
        return tail.bytes;
      },
      abort,
    };
  }

  /**
   * Opens the download of command `id` for the agent `server` (the GetDump / GetFiles handler).
   * @throws SpokeError DB_TRANSFER_UNKNOWN (dump), TRANSFER_UNKNOWN (files)
   */
  openDownload(server: string, id: string, channel: TransferChannel = 'dump'): Readable {
    const d = this.take(server, id, 'get', channel);
    d.open = d.source();
    return d.open;
  }
}

/** Waits until a writable drains or closes, leaving no listener behind. */
function drainOrClose(w: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      w.off('drain', done);
      w.off('close', done);
      resolve();
    };
    w.on('drain', done);
    w.on('close', done);
  });
}
