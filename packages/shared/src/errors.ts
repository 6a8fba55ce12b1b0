/**
 * Errors with stable codes. Every refusal the product makes carries one of these codes; tests,
 * docs and scripts rely on them, so a code never changes meaning once released.
 */

/** Every stable error code, with the gRPC status it maps to on the wire. */
export const ERROR_CODES = {
  // input and namespace rules
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  INVALID_NAME: 'INVALID_ARGUMENT',
  INVALID_PATH: 'INVALID_ARGUMENT',
  INVALID_DOMAIN: 'INVALID_ARGUMENT',
  INVALID_TTL: 'INVALID_ARGUMENT',
  INVALID_SERVICE: 'INVALID_ARGUMENT',
  SERVER_NOT_FOUND: 'NOT_FOUND',
  SERVER_EXISTS: 'ALREADY_EXISTS',
  SERVER_HAS_PLATFORMS: 'FAILED_PRECONDITION',
  SERVER_IS_CLUSTER: 'FAILED_PRECONDITION',
  SERVER_NOT_CLUSTER: 'FAILED_PRECONDITION',
  SERVER_IN_CLUSTER: 'FAILED_PRECONDITION',
  SERVER_IS_CLUSTER_MEMBER: 'FAILED_PRECONDITION',
  SERVER_HAS_SITE_DATABASES: 'FAILED_PRECONDITION',
  CLUSTER_NOT_FOUND: 'NOT_FOUND',
  CLUSTER_NEEDS_MEMBER: 'FAILED_PRECONDITION',
  CLUSTER_MEMBER_NOT_FOUND: 'NOT_FOUND',
  CLUSTER_WOULD_STRAND_PLATFORMS: 'FAILED_PRECONDITION',
  PLATFORM_NOT_FOUND: 'NOT_FOUND',
  PLATFORM_NAME_TAKEN: 'ALREADY_EXISTS',
  PLATFORM_PATH_TAKEN: 'ALREADY_EXISTS',
  PLATFORM_PATH_NESTED: 'FAILED_PRECONDITION',
  PLATFORM_HAS_SITES: 'FAILED_PRECONDITION',
  PLATFORM_NOT_VERIFIED: 'FAILED_PRECONDITION',
  SITE_NOT_FOUND: 'NOT_FOUND',
  DOMAIN_TAKEN: 'ALREADY_EXISTS',
  // site tasks (master)
  ALIAS_NOT_FOUND: 'NOT_FOUND',
  SITE_NOT_INSTALLED: 'FAILED_PRECONDITION',
  SITE_DIR_EXISTS: 'ALREADY_EXISTS',
  DB_SERVER_REQUIRED: 'FAILED_PRECONDITION',
  PLATFORM_KIND_UNSUPPORTED: 'FAILED_PRECONDITION',
  // backups, restore, import (master) and site files transfer (agent)
  BACKUP_NOT_FOUND: 'NOT_FOUND',
  BACKUP_INVALID: 'DATA_LOSS',
  SITE_FILES_EXIST: 'ALREADY_EXISTS',
  TRANSFER_UNKNOWN: 'NOT_FOUND',
  SETTINGS_NOT_FOUND: 'NOT_FOUND',
  SETTINGS_UNREADABLE: 'FAILED_PRECONDITION',
  // enrollment and identity
  TOKEN_INVALID: 'UNAUTHENTICATED',
  TOKEN_USED: 'UNAUTHENTICATED',
  TOKEN_EXPIRED: 'UNAUTHENTICATED',
  CSR_INVALID: 'INVALID_ARGUMENT',
  CERT_REQUIRED: 'UNAUTHENTICATED',
  CERT_UNKNOWN: 'PERMISSION_DENIED',
  CERT_REVOKED: 'PERMISSION_DENIED',
  CA_MISMATCH: 'UNAUTHENTICATED',
  NOT_ENROLLED: 'FAILED_PRECONDITION',
  IDENTITY_EXISTS: 'ALREADY_EXISTS', // spoke-agent enroll into a state dir that holds one (--force replaces it)
  OPERATOR_NOT_FOUND: 'NOT_FOUND',
  // tasks and agents
  TASK_NOT_FOUND: 'NOT_FOUND',
  ENTITY_AMBIGUOUS: 'INVALID_ARGUMENT',
  TASK_FINISHED: 'FAILED_PRECONDITION',
  TASK_CANCELLED: 'CANCELLED',
  TASK_INTERRUPTED: 'ABORTED',
  TASK_PARAMS_INVALID: 'FAILED_PRECONDITION',
  AGENT_OFFLINE: 'UNAVAILABLE',
  AGENT_TIMEOUT: 'DEADLINE_EXCEEDED',
  AGENT_DISCONNECTED: 'UNAVAILABLE',
  AGENT_COMMAND_FAILED: 'FAILED_PRECONDITION',
  VERIFY_FAILED: 'FAILED_PRECONDITION',
  CONVERGE_FAILED: 'FAILED_PRECONDITION',
  TREE_CHANGED: 'ABORTED',
  DRIFT_FOUND: 'FAILED_PRECONDITION', // a platform with `--drift report`: hand edits found, nothing changed
  PLATFORM_BUILD_FAILED: 'FAILED_PRECONDITION',
  MAKEFILE_NEEDS_DRUPAL_ORG: 'FAILED_PRECONDITION',
  CHECKSUM_MISMATCH: 'FAILED_PRECONDITION',
  BUILD_PATH_ESCAPE: 'PERMISSION_DENIED',
  BUILD_SOURCE_NOT_ALLOWED: 'PERMISSION_DENIED',
  BUILD_LIMIT_EXCEEDED: 'RESOURCE_EXHAUSTED',
  DISK_LOW: 'RESOURCE_EXHAUSTED',
  PATH_OUTSIDE_ROOTS: 'PERMISSION_DENIED',
  AGENT_TOO_OLD: 'FAILED_PRECONDITION',
  // web server config (agent)
  NO_HTTP_SERVICE: 'FAILED_PRECONDITION',
  WEBSERVER_CONFIG_INVALID: 'FAILED_PRECONDITION',
  WEBSERVER_RELOAD_FAILED: 'FAILED_PRECONDITION',
  TEMPLATE_INVALID: 'FAILED_PRECONDITION',
  UNSAFE_CONFIG_VALUE: 'INVALID_ARGUMENT',
  SITE_INSTALL_FAILED: 'FAILED_PRECONDITION',
  SITE_ALREADY_INSTALLED: 'ALREADY_EXISTS',
  PROFILE_NOT_FOUND: 'INVALID_ARGUMENT',
  PHP_CLI_MISSING: 'FAILED_PRECONDITION',
  SITE_TOOL_FAILED: 'FAILED_PRECONDITION',
  SITE_TOOL_UNSUPPORTED: 'FAILED_PRECONDITION',
  SITE_UPDATE_FAILED: 'FAILED_PRECONDITION',
  // cron (master scheduler, agent runs)
  SITE_DISABLED: 'FAILED_PRECONDITION',
  SITE_CRON_FAILED: 'FAILED_PRECONDITION',
  // HTTPS (certificates, ACME)
  CERT_INVALID: 'INVALID_ARGUMENT',
  CERT_KEY_MISMATCH: 'INVALID_ARGUMENT',
  CERT_NAMES_MISMATCH: 'INVALID_ARGUMENT',
  CERT_EXPIRED: 'INVALID_ARGUMENT',
  CERT_CHAIN_INCOMPLETE: 'INVALID_ARGUMENT',
  ACME_NOT_CONFIGURED: 'FAILED_PRECONDITION',
  ACME_FAILED: 'UNAVAILABLE',
  // site databases (agent)
  DB_NOT_CONFIGURED: 'FAILED_PRECONDITION',
  DB_UNREACHABLE: 'UNAVAILABLE',
  DB_CLIENT_MISSING: 'FAILED_PRECONDITION',
  DB_EXISTS: 'ALREADY_EXISTS',
  DB_NOT_FOUND: 'NOT_FOUND',
  DB_FAILED: 'FAILED_PRECONDITION',
  DB_DUMP_INCOMPLETE: 'DATA_LOSS',
  DB_TRANSFER_UNKNOWN: 'NOT_FOUND',
  // sync engine (manifests, blobs, archives)
  ARCHIVE_UNSAFE: 'INVALID_ARGUMENT',
  ARCHIVE_PATH_EXISTS: 'ALREADY_EXISTS',
  BLOB_HASH_MISMATCH: 'DATA_LOSS',
  TREE_UNREADABLE: 'FAILED_PRECONDITION',
  // transport and process
  MASTER_UNREACHABLE: 'UNAVAILABLE',
  STATE_DIR_LOCKED: 'FAILED_PRECONDITION',
  ADDRESS_IN_USE: 'FAILED_PRECONDITION', // a daemon's listen address is taken by another process
  CONFIRMATION_REQUIRED: 'FAILED_PRECONDITION', // a destructive command without --yes and no terminal to ask on
  CONFIG_INVALID: 'INVALID_ARGUMENT',
  USAGE: 'INVALID_ARGUMENT',
  OUTPUT_NOT_WRITABLE: 'FAILED_PRECONDITION', // CLI: a file it writes (--out DIR) cannot go there
  INTERNAL: 'INTERNAL',
} as const;

/** A stable error code (see ERROR_CODES). */
export type ErrorCode = keyof typeof ERROR_CODES;

/** The gRPC status names an error code can map to. */
export type GrpcStatusName = (typeof ERROR_CODES)[ErrorCode];

/**
 * The one error class the product throws on purpose. `message` is a single line written for an
 * operator; `code` is stable.
 */
export class SpokeError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'SpokeError';
    this.code = code;
    this.details = details;
  }

  /** `CODE: message`, the form the CLI prints after `error: `. */
  override toString(): string {
    return `${this.code}: ${this.message}`;
  }
}

/** True when `e` is a SpokeError (optionally with the given code). */
export function isSpokeError(e: unknown, code?: ErrorCode): e is SpokeError {
  return e instanceof SpokeError && (code === undefined || e.code === code);
}

/** True when `code` is one of the stable codes. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}

/** Shorthand used across packages: `throw fail('SERVER_NOT_FOUND', 'no server named web')`. */
export function fail(code: ErrorCode, message: string, details?: Record<string, unknown>): SpokeError {
  return new SpokeError(code, message, details);
}
