/**
 * GetManifest's messages, encoded once for every member that asks for the same manifest (issue
 * 20). Fifty cluster members converging one 20,000-file platform each asked for its manifest at
 * the same moment: fifty times 20,000 wire entries built and encoded (~1.6 s of the master's CPU)
 * and fifty encoded copies (~3 MB each) queued at once. The messages of one (tree, root hash,
 * base) are built once, preframed (wire.preframe: sent without encoding or copying again), and
 * kept while members ask for them and `lingerMs` after the last asked, within `maxBytes`.
 */
import { wire } from '@spoke/shared';

/** Options of a ManifestMessages cache. */
export interface ManifestMessagesOptions {
  /** How long messages stay after they were last asked for. @default 5000 */
  lingerMs?: number;
  /** Encoded bytes the cache may hold (least recently asked go first). @default 64 MiB */
  maxBytes?: number;
}

interface Entry {
  msgs: wire.ManifestChunk[];
  bytes: number;
  timer: NodeJS.Timeout | undefined;
}

/** The encoded messages of recently asked manifests, by (tree, root hash, base). */
export class ManifestMessages {
  private readonly entries = new Map<string, Entry>();
  private held = 0;
  private readonly lingerMs: number;
  private readonly maxBytes: number;
  /** How many times messages were built (tests). */
  built = 0;

  constructor(opts: ManifestMessagesOptions = {}) {
    this.lingerMs = opts.lingerMs ?? 5000;
    this.maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
  }

  /** Bytes of encoded messages held now. */
  get heldBytes(): number {
    return this.held;
  }

  /**
   * The messages for `key` (tree, root hash and base: equal keys are equal manifests), built by
   * `build` and preframed when not held. Never change them: other streams send the same objects.
   */
  get(key: string, build: () => wire.ManifestChunk[]): wire.ManifestChunk[] {
    let e = this.entries.get(key);
    if (e) {
      this.entries.delete(key); // most recently asked last
      this.entries.set(key, e);
    } else {
      const msgs = build().map((m) => wire.preframe(m, wire.ManifestChunk));
      this.built++;
      const bytes = msgs.reduce((n, m) => n + wire.preframedBytes(m), 0);
      e = { msgs, bytes, timer: undefined };
      this.entries.set(key, e);
      this.held += bytes;
      for (const [k, old] of this.entries) {
        if (this.held <= this.maxBytes || old === e) break;
        this.drop(k, old);
      }
      // larger than the whole bound alone: sent, not kept
      if (this.held > this.maxBytes) {
        this.drop(key, e);
        return msgs;
      }
    }
    const entry = e;
    if (entry.timer !== undefined) clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.drop(key, entry), this.lingerMs);
    entry.timer.unref();
    return entry.msgs;
  }

  private drop(key: string, e: Entry): void {
    if (e.timer !== undefined) clearTimeout(e.timer);
    e.timer = undefined;
    if (this.entries.get(key) !== e) return;
    this.entries.delete(key);
    this.held -= e.bytes;
  }
}
