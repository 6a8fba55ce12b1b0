/**
 * The agent-side converge engine: makes a tree on this host exactly equal to a desired manifest,
 * transactionally (staging + journal + replay), reusing content already on the host.
 */
export { converge } from './converge.js';
export type { BlobFetcher, ConvergeOptions, ConvergeProgress, ConvergeResult } from './types.js';
export { buildReuseIndex, observe, readCommitted, reuseMap, treeKeyOf } from './observe.js';
export type { Drift } from './observe.js';
export { listQuarantine, prune as pruneQuarantine, QUARANTINE_MAX_AGE_MS, QUARANTINE_MAX_BYTES } from './quarantine.js';
export type { QuarantineEntry, QuarantineOptions } from './quarantine.js';
export { replayJournals } from './replay.js';
export { forgetMemos, mergeDelta, treeStateDir } from './state.js';
export type { ManifestDelta } from './state.js';
export { convergeStreamed } from './streamed.js';
export type { StreamedOptions } from './streamed.js';
