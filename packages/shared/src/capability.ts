/**
 * Capability version the agent sends in its hello. Bump by one when the agent learns something
 * the master may rely on, and say here what each version added:
 *   1 — hello with host facts and detected services, heartbeats, server verify.
 *   2 — converge (GetManifest with deltas, framed FetchBlobs), tree status, observed-hash reports
 *       from drift checks.
 */
export const CAPABILITY_VERSION = 2;

/** The product version printed by `--version` and reported in host facts. */
export const SPOKE_VERSION = '0.1.0';
