/**
 * Room `platforms/`: codebases and their trees.
 *
 * - registry/         what a tree is: detection (Drupal 6/7/8+, WordPress, MediaWiki, generic),
 *                     .info/.info.yml parsing, versions, registry diff, drush makefiles (pure)
 * - build.ts          building a platform from a makefile or git (`PlatformBuilder`); buildfs.ts
 *                     keeps every build inside its staging dir, with source policy and limits;
 *                     buildfuzz.ts generates hostile builds for `pnpm fuzz:build`
 * - trees.ts          the canonical trees on the master: manifests kept current by a watcher
 * - blobcache.ts      `BlobFanout`: FetchBlobs streams asking for the same blobs share one
 *                     framing of them (a cluster's members: one read of each blob)
 * - converge.ts       `PlatformSync`: the platform tasks (verify, converge), self-healing, live sync
 * - streamtree.ts     the streamed first sync: one walk fed to the StreamTree calls of its servers
 * - platformremove.ts the `platform.remove` task
 *
 * Platforms as records (name, path, server, status) are namespace/platforms.ts.
 */
export { PlatformBuilder } from './build.js';
export { TreeStore } from './trees.js';
export { PlatformSync } from './converge.js';
export { PlatformRemover } from './platformremove.js';
