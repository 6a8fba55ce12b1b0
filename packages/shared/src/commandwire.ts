/**
 * Agent commands between their domain form (commands.ts) and the wire (proto MasterCommand /
 * CommandResult). Exported only through `wire`, so only the edges use it: the master's hub
 * encodes commands and decodes results, the agent's connection decodes commands and encodes
 * results. One codec per command, in a map total over the command union.
 */
import { fail } from './errors.js';
import { SiteToolOp as WireSiteToolOp, type CommandResult, type MasterCommand } from './gen/spoke/v1/agent.js';
import type { AgentCommand, AgentCommandResults, AgentCommands, AgentCommandType, DriftInfo, QuarantineInfo, SiteToolOp } from './commands.js';
import type { ConvergeConflict, Drift, Quarantined } from './gen/spoke/v1/agent.js';

type WireCommand = NonNullable<MasterCommand['command']>;
type WireCommandValue<K extends AgentCommandType> = Extract<WireCommand, { $case: K }>['value'];
/** The CommandResult case of each command: its own name, except ping's pong. */
type ResultCase<K extends AgentCommandType> = K extends 'ping' ? 'pong' : K;
type WireResult = NonNullable<CommandResult['result']>;
type WireResultValue<K extends AgentCommandType> = Extract<WireResult, { $case: ResultCase<K> }>['value'];

/** Every MasterCommand case but the welcome is a command of the union: `true` only then. */
const PROTO_CASES_ARE_COMMANDS: [Exclude<WireCommand['$case'], 'welcome' | AgentCommandType>] extends [never] ? true : false = true;
void PROTO_CASES_ARE_COMMANDS;

/** How one command and its result cross the wire, both ways. */
interface Codec<K extends AgentCommandType> {
  command(c: AgentCommands[K]): WireCommandValue<K>;
  commandFrom(v: WireCommandValue<K>): AgentCommands[K];
  result(r: AgentCommandResults[K]): WireResultValue<K>;
  resultFrom(v: WireResultValue<K>): AgentCommandResults[K];
}

/** Where the domain and wire shapes are the same (checked both ways by the compiler). */
const same = <T>(x: T): T => x;
const sameCodec = { command: same, commandFrom: same, result: same, resultFrom: same };

const SITE_TOOL_OPS: Record<SiteToolOp, WireSiteToolOp> = {
  loginUrl: WireSiteToolOp.SITE_TOOL_OP_LOGIN_URL,
  updates: WireSiteToolOp.SITE_TOOL_OP_UPDATES,
  update: WireSiteToolOp.SITE_TOOL_OP_UPDATE,
};

/** @throws SpokeError INVALID_ARGUMENT for an op this build does not know */
function siteToolOpFrom(op: WireSiteToolOp): SiteToolOp {
  const found = (Object.keys(SITE_TOOL_OPS) as SiteToolOp[]).find((k) => SITE_TOOL_OPS[k] === op);
  if (!found) throw fail('INVALID_ARGUMENT', `unknown site tool op ${op}`);
  return found;
}

function driftFrom(d: Drift | undefined): DriftInfo {
  return { changed: d?.changed ?? [], added: d?.added ?? [], removed: d?.removed ?? [], total: d?.total ?? 0 };
}

function conflictsFrom(cs: ConvergeConflict[]): { path: string; wanted: string; userData: string }[] {
  return cs.map((c) => ({ path: c.path, wanted: c.wanted, userData: c.userData }));
}

function quarantineFrom(q: Quarantined): QuarantineInfo {
  return { id: q.id, atMs: q.atMs, dir: q.dir, files: q.files, bytes: q.bytes, paths: [...q.paths], skipped: q.skipped };
}

/** Every command's codec. */
const COMMAND_CODECS: { [K in AgentCommandType]: Codec<K> } = {
  verifyServer: {
    ...sameCodec,
    result: (r) => ({ services: r.services, roots: r.roots, facts: r.facts ?? undefined }),
    resultFrom: (v) => ({
      services: v.services.map((s) => ({ ...s })),
      roots: v.roots.map((x) => ({ ...x })),
      facts: v.facts ? { ...v.facts, roots: [...v.facts.roots] } : null,
    }),
  },
  ping: { ...sameCodec, result: () => ({}), resultFrom: () => null },
  converge: {
    command: (c) => ({
      ...c,
      webGroupFiles: c.webGroupFiles ?? [],
      recheck: c.recheck ?? false,
      reportDrift: c.reportDrift ?? false,
      stream: c.stream ?? false,
    }),
    commandFrom: same,
    result: (r) => ({ ...r, quarantined: r.quarantined, streamed: r.streamed ?? false }),
    resultFrom: ({ quarantined, streamed, ...v }) => ({
      ...v,
      ...(streamed ? { streamed } : {}),
      drift: driftFrom(v.drift),
      conflicts: conflictsFrom(v.conflicts),
      ...(quarantined === undefined ? {} : { quarantined: quarantineFrom(quarantined) }),
    }),
  },
  treeStatus: {
    ...sameCodec,
    resultFrom: (v) => ({
      committedRootHash: v.committedRootHash,
      actualRootHash: v.actualRootHash,
      exists: v.exists,
      drift: driftFrom(v.drift),
      conflicts: conflictsFrom(v.conflicts),
      quarantine: v.quarantine.map(quarantineFrom),
    }),
  },
  // an older agent says nothing of a reload wait
  configurePlatform: { ...sameCodec, result: (r) => ({ ...r, reloadWait: r.reloadWait ?? '' }) },
  // an agent reports the hosts of a new account; they were all added
  dbCreate: {
    ...sameCodec,
    result: (r) => ({ hosts: r.hosts, siteHost: r.siteHost, sitePort: r.sitePort }),
    resultFrom: (v) => ({ hosts: [...v.hosts], added: [...v.hosts], removed: [], siteHost: v.siteHost, sitePort: v.sitePort }),
  },
  dbDrop: sameCodec,
  dbGrants: sameCodec,
  dbDump: sameCodec,
  dbRestore: sameCodec,
  // the certificate is optional on both sides (an older master sends none)
  configureSite: {
    ...sameCodec,
    result: (r) => ({ ...r, reloadWait: r.reloadWait ?? '' }),
    command: (c) => ({
      ...c,
      redirectNames: c.redirectNames ?? [],
      tls: c.tls ? { certPem: c.tls.certPem, keyPem: c.tls.keyPem, redirect: c.tls.redirect, hsts: c.tls.hsts } : undefined,
    }),
    commandFrom: (v) => ({ ...v, tls: v.tls ? { certPem: v.tls.certPem, keyPem: v.tls.keyPem, redirect: v.tls.redirect, hsts: v.tls.hsts } : null }),
  },
  removeSite: { ...sameCodec, result: (r) => ({ ...r, reloadWait: r.reloadWait ?? '' }) },
  installSite: sameCodec,
  siteTool: {
    ...sameCodec,
    command: (c) => ({ tree: c.tree, domain: c.domain, kind: c.kind, op: SITE_TOOL_OPS[c.op], tokenHash: c.tokenHash ?? '', ttlSeconds: c.ttlSeconds ?? 0 }),
    commandFrom: (v) => ({ tree: v.tree, domain: v.domain, kind: v.kind, op: siteToolOpFrom(v.op), tokenHash: v.tokenHash, ttlSeconds: v.ttlSeconds }),
  },
  siteCron: sameCodec,
  siteFilesPack: sameCodec,
  siteFilesUnpack: sameCodec,
  forgetPlatform: sameCodec,
  acmeChallenge: sameCodec,
};

function codec<K extends AgentCommandType>(type: K): Codec<K> {
  return COMMAND_CODECS[type] as Codec<K>;
}

function resultCase(type: AgentCommandType): WireResult['$case'] {
  return type === 'ping' ? 'pong' : type;
}

/** A command as the master sends it, with its id. */
export function commandToWire(id: string, cmd: AgentCommand): MasterCommand {
  const { type, ...fields } = cmd;
  const value = codec(type).command(fields as never);
  return { id, command: { $case: type, value } as WireCommand };
}

/**
 * A command as the agent runs it; undefined for a command this build does not know (or the
 * Welcome, which is not a command).
 * @throws SpokeError INVALID_ARGUMENT when a field has a value this build does not know
 */
export function commandFromWire(msg: MasterCommand): AgentCommand | undefined {
  const c = msg.command;
  if (!c || c.$case === 'welcome' || !Object.prototype.hasOwnProperty.call(COMMAND_CODECS, c.$case)) return undefined;
  const type = c.$case;
  return { type, ...codec(type).commandFrom(c.value as never) } as AgentCommand;
}

/** A command's result as the agent sends it (`id`, `ok` and the error fields are the caller's). */
export function resultToWire<K extends AgentCommandType>(type: K, r: AgentCommandResults[K]): WireResult {
  return { $case: resultCase(type), value: codec(type).result(r) } as WireResult;
}

/**
 * A successful command's result as the master uses it.
 * @throws SpokeError INTERNAL when the agent answered with another command's result
 */
export function resultFromWire<K extends AgentCommandType>(type: K, r: CommandResult): AgentCommandResults[K] {
  if (r.result?.$case !== resultCase(type)) throw fail('INTERNAL', `agent answered ${type} with ${r.result?.$case ?? 'nothing'}`);
  return codec(type).resultFrom(r.result.value as never);
}
