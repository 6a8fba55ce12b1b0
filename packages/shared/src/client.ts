/**
 * @spoke/shared/client — the lean door for the operator CLI: errors with codes, the gRPC client
 * helpers and the Operator service's wire code, without the PKI, the logger, the sync engine or
 * the Agent service (what `@spoke/shared` also carries). A CLI command starts in a fraction of
 * the time when it loads only this (issue 23 item 17); everything here is also exported by the
 * main door, so the two never disagree.
 */
export { SpokeError, fail, isSpokeError, isErrorCode, ERROR_CODES } from './errors.js';
export type { ErrorCode } from './errors.js';
export { SPOKE_VERSION } from './capability.js';
export { fromServiceError } from './rpc.js';
export { channelOptions, clientTls, grpcTarget } from './grpc.js';
export { formatBytes } from './format.js';
export { didYouMean, formatHelp, unknownOptionMessage } from './usage.js';
export type { HelpSpec } from './usage.js';
export * as wire from './wireoperator.js';
