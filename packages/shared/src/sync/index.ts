/**
 * The sync engine's pure core: manifests and hashing, diffs, and the tar codec with path safety.
 * Everything here is I/O on local trees and streams only; transports and transactions live in
 * the master and the agent.
 */
export {
  MAX_NAME_BYTES,
  MAX_PATH_BYTES,
  STAGING_PREFIX,
  checkEntryPath,
  checkLinkTarget,
  checkSymlinkTarget,
  comparePaths,
  nameProblem,
  parentOf,
} from './paths.js';
export { DEFAULT_EXCLUDES, STAGING_EXCLUDES, USER_DATA_EXCLUDES, VCS_EXCLUDES, compileExcludes } from './exclude.js';
export type { ExcludeMatcher } from './exclude.js';
export { MODE_MASK, SYMLINK_MODE, buildManifest, byPath, lowerBound, canonicalLine, computeRootHash, isHash, rootHashOfSorted, sha256Hex } from './manifest.js';
export { excludeMatcher, readEntry, walkTree } from './walk.js';
export { hashFile } from './filehash.js';
export { RootIndex } from './roothash.js';
export type { EntryType, Manifest, ManifestEntry } from './manifest.js';
export type { SkipReason, SkippedEntry, StatCache, StatCacheRecord, WalkOptions, WalkResult, WalkTap } from './walktypes.js';
export { LiveManifest, applyChange } from './live.js';
export type { ManifestChange } from './live.js';
export { diffManifests, isDiffEmpty, sameContent, sameEntry } from './diff.js';
export type { ManifestDiff, TypeChange } from './diff.js';
export { checkArchiveEntry, extractArchive } from './archive.js';
export type { ArchiveHeader, ExtractOptions, ExtractResult, SafeEntry, SafeEntryType } from './archive.js';
export { packBlobs, packTree, unpackBlobs } from './pack.js';
export { ChunkPool, FRAME_CHUNK_BYTES, frameBlobs, frameChunk, newFrameChunk, sealFrameChunk, unframeBlobs } from './frames.js';
export type { FramePos, SizedBlobSource } from './frames.js';
export { TreeStreamParser, TreeStreamWriter } from './treestream.js';
export type { StreamedEntry, TreeStreamHandler } from './treestream.js';
export { FileWorker } from './fileworker.js';
export type { CopyDone, CopyItem, FileHelper, HashDone, HashItem } from './fileworker.js';
export type { BlobSource, PackTreeOptions, ReceivedBlob, UnpackBlobsOptions } from './pack.js';
export type { ByteSource, TarEntry, TarWriter } from './tario.js';
export { openTarWriter, readTar } from './tario.js';
