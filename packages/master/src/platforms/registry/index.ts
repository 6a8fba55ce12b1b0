/**
 * Platform verify, library part: info-file parsers, version ordering, platform detection and
 * registry scanning, registry comparison, and drush makefile parsing.
 */
export { parseInfoIni, parseInfoYaml, parseInfoFile, phpTruthy, type InfoScalar, type InfoValue, type InfoObject, type InfoParseResult } from './info.js';
export { parseVersion, compareVersions, compareParsed, STABILITIES, type Stability, type ParsedVersion, type VersionOrder } from './version.js';
export { detectPlatform, type PlatformKind, type Problem, type Detection, type DetectIO } from './detect.js';
export {
  scanPlatform,
  scanPlatformCached,
  type Registry,
  type Extension,
  type ExtensionType,
  type ProfileInfo,
  type Distribution,
  type ComposerInfo,
  type ScanOptions,
  type ScanResult,
  type ScanCache,
  type ScanCacheEntry,
  type CachedParse,
} from './registry.js';
export { diffRegistries, versionStatus, effectiveExtensions, type DiffStatus, type SchemaStatus, type DiffEntry, type RegistryDiff } from './diff.js';
export {
  parseMakefile,
  loadMakefile,
  loadMakefileText,
  needsDrupalOrg,
  nestedMakefileNames,
  makefileFormat,
  type Makefile,
  type MakeProject,
  type MakeLibrary,
  type MakeProjectType,
  type MakeDownload,
  type GitDownload,
  type FileDownload,
  type CopyDownload,
  type UnsupportedDownload,
  type MakePatch,
  type ParseMakefileOptions,
} from './makefile.js';
