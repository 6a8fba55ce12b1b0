export { SpokeError, fail, isSpokeError, isErrorCode, ERROR_CODES } from "./errors.js";
export type { ErrorCode, GrpcStatusName } from "./errors.js";
export { checkName, checkPublishPath, checkDomain, pathContains } from "./names.js";
