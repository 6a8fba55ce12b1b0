/**
 * @spoke/shared — what master, agent and CLI have in common: errors with codes, namespace name
 * rules, PKI, logging, transport helpers and the generated wire code (as `wire`).
 */
export { SpokeError, fail, isSpokeError, isErrorCode, ERROR_CODES } from './errors.js';
export type { ErrorCode, GrpcStatusName } from './errors.js';
export { checkName, checkPublishPath, checkDomain, pathContains, trimPathSlashes } from './names.js';
export {
  siteDbName,
  checkDbName,
  checkDbUser,
  checkDbHost,
  checkDbPassword,
  generateDbPassword,
  checkDumpComplete,
  DumpTail,
  DUMP_COMPLETE_MARKER,
  DUMP_TAIL_BYTES,
  DB_NAME_MAX,
  DB_USER_MAX,
  DB_HOST_MAX,
} from './dbnames.js';
export type { SiteDbNames } from './dbnames.js';
export { createCA, createCsr, signCsr, issueKeyPair, certFingerprint, certIdentity, MASTER_TLS_NAME } from './pki.js';
export type { KeyPair, CertRole, IssueOptions, CertIdentity } from './pki.js';
export { createLogger, silentLogger } from './logger.js';
export { AGENT_HEAP_HEADROOM_MB, boundHeapGrowth, MASTER_HEAP_HEADROOM_MB, MASTER_NODE_FLAGS } from './heap.js';
export type { Logger, LoggerOptions } from './logger.js';
export { CAPABILITY_VERSION, HTTPS_CAPABILITY, REDIRECT_NAMES_CAPABILITY, SPOKE_VERSION, STREAM_TREE_CAPABILITY } from './capability.js';
export { COMMAND_CAPABILITY, inSyncReport } from './commands.js';
export type {
  AgentCommand,
  AgentCommands,
  AgentCommandResults,
  AcmeChallengeReport,
  AcmeChallengeRequest,
  AgentCommandType,
  BytesReport,
  ConfigurePlatformRequest,
  ConfigureSiteRequest,
  ConflictInfo,
  ConvergeReport,
  ConvergeRequest,
  DbAccountRequest,
  DbDropReport,
  DbGrantsReport,
  DetectedServiceReport,
  DriftInfo,
  QuarantineInfo,
  ForgetPlatformRequest,
  HostFactsInfo,
  InstallSiteRequest,
  PlatformConfigReport,
  PlatformForgetReport,
  RemoveSiteRequest,
  RootCheck,
  SiteConfigReport,
  SiteCronReport,
  SiteCronRequest,
  SiteFilesPackReport,
  SiteFilesRequest,
  SiteFilesUnpackReport,
  SiteInstallReport,
  SiteRemoveReport,
  SiteTlsConfig,
  SiteToolOp,
  SiteToolReport,
  SiteToolRequest,
  SiteUpdateInfo,
  TreeStatusReport,
  VerifyReport,
} from './commands.js';
export { RootMap } from './rootmap.js';
export { toServiceError, fromServiceError } from './rpc.js';
export { channelOptions, clientTls, serverTls, parseHostPort, grpcTarget } from './grpc.js';
export * as wire from './wire.js';
export * from './sync/index.js';
export { formatBytes } from './format.js';
export { envInt, LOG_LEVEL, parseEnv, parseWith } from './schema.js';
export { didYouMean, formatHelp, unknownOptionMessage } from './usage.js';
export type { HelpSpec } from './usage.js';
export { startMetricsListener } from './metricsserver.js';
export type { MetricsListener, MetricsSource } from './metricsserver.js';
export { removeTreeKeepingUserData } from './treeremove.js';
export type { TreeRemoval } from './treeremove.js';
export { lockStateDir, stateDirHolder } from './statelock.js';
