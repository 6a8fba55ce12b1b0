/**
 * CLI rendering for clusters and agents as an operator meets them (issue 23): a tree's state on
 * one server (with the last known state of an offline one), the quarantine of drift repairs, a
 * platform's drift mode, and a cluster's state from its members'.
 */
import { fail, wire } from '@spoke/shared/client';
import type { Ctx } from './command.js';
import { ago, human, table } from './format.js';

/** STATE of `platform status` for one server. */
export function treeState(x: wire.PlatformTreeStatus, now = Date.now()): string {
  if (!x.online) {
    if (!x.lastKnownMs) return 'offline';
    return `offline (last known ${x.inSync ? 'in sync' : 'behind'}, ${ago(Number(x.lastKnownMs), now)})`;
  }
  return x.error ? 'error' : x.conflicts.length ? 'conflict' : x.inSync ? 'in sync' : 'behind';
}

/** A quarantine entry as printed by `-o json`. */
export function quarantineJson(q: wire.PlatformQuarantine) {
  return {
    id: q.id,
    at: new Date(Number(q.atMs)).toISOString(),
    dir: q.dir,
    files: Number(q.files),
    bytes: Number(q.bytes),
    paths: q.paths,
    skipped: Number(q.skipped),
  };
}

/** `platform status` lines for what drift repairs on one server kept. */
export function quarantineLines(x: wire.PlatformTreeStatus, now = Date.now()): string {
  let out = '';
  for (const q of x.quarantine) {
    const lost = Number(q.skipped) > 0 ? `, ${Number(q.skipped)} not kept (over the size bound)` : '';
    out += `quarantine on ${x.server}: ${q.dir} — ${Number(q.files)} file(s), ${human(Number(q.bytes))}, ${ago(Number(q.atMs), now)}${lost}\n`;
    for (const p of q.paths.slice(0, 10)) out += `  ${p}\n`;
    if (Number(q.files) > 10) out += `  … ${Number(q.files) - 10} more\n`;
  }
  return out;
}

/** What `platform drift` prints. */
export function driftModeLine(p: wire.Platform): string {
  return p.drift === 'report'
    ? `platform ${p.name}: drift is reported, not repaired (platform status shows it; spoke platform verify ${p.name} repairs)\n`
    : `platform ${p.name}: drift is repaired (what a repair removes or overwrites is kept in the server's quarantine)\n`;
}

/** What `cluster add` says about the new member's platforms. */
export function joinedLine(member: string, platforms: wire.Platform[]): string {
  if (platforms.length === 0) return '';
  return `converging ${member} to ${platforms.map((p) => `${p.name} (${p.path})`).join(', ')} (see: spoke task ls)\n`;
}

/** What `cluster remove` says stays where. */
export function leftLine(member: string, cluster: string, platforms: wire.Platform[], deleteFiles: boolean): string {
  if (platforms.length === 0) return `${member} held no platform of ${cluster}\n`;
  const list = platforms.map((p) => `${p.name} (${p.path})`).join(', ');
  return deleteFiles
    ? `${member} no longer serves ${list}: Spoke removes their web server config and deletes their trees on ${member} (user data under sites/*/files and private kept), now or when it is next online\n`
    : `${member} no longer serves ${list}: Spoke removes their web server config on ${member}, now or when it is next online; the trees stay on ${member} (files there are yours to delete; --delete-files would have deleted them)\n`;
}

/** What `platform rm --delete-files` deletes where, for the operator to confirm. */
export function deleteFilesWarning(p: wire.Platform, members: string[], masterRoot: string): string {
  const servers = members.length ? `${p.server} (${members.join(', ')})` : p.server;
  const canonical = `${masterRoot && masterRoot !== '/' ? masterRoot : ''}${p.path}`;
  const only =
    p.source?.kind === wire.PlatformSourceKind.PLATFORM_SOURCE_KIND_EXISTING
      ? ' — the only copy Spoke has of this existing-tree platform'
      : ' (it can be built again from its source)';
  return (
    `platform rm ${p.name} --delete-files deletes ${p.path} on ${servers} and the master's canonical tree ${canonical}${only}; ` +
    `user data under sites/*/files and sites/*/private is kept.`
  );
}

/**
 * Asks before a destructive command: on a terminal the operator answers; without one `--yes` is
 * required. @throws SpokeError CONFIRMATION_REQUIRED, TASK_CANCELLED (answered no)
 */
export async function confirmDelete(io: { err(s: string): void; confirm?(q: string): Promise<boolean> }, warning: string, yes: boolean): Promise<void> {
  if (yes) return;
  if (!io.confirm) throw fail('CONFIRMATION_REQUIRED', `${warning} Nothing was done: add --yes to go ahead`);
  io.err(`${warning}\n`);
  if (!(await io.confirm('Delete these files?'))) throw fail('TASK_CANCELLED', 'nothing was deleted (answered no)');
}

/** An operator certificate as printed by `-o json`. */
export function operatorJson(c: wire.OperatorCert) {
  const iso = (ms: number) => (ms ? new Date(Number(ms)).toISOString() : null);
  return { name: c.name, fingerprint: c.fingerprint, issued: iso(c.issuedMs), expires: iso(c.expiresMs), revoked: iso(c.revokedMs) };
}

/** `operator ls`. */
export function operatorTable(list: wire.OperatorCert[], now = Date.now()): string {
  if (list.length === 0) return 'no operator certificates recorded (issue one: spoke operator cert NAME --out DIR)\n';
  const day = (ms: number) => new Date(Number(ms)).toISOString().slice(0, 10);
  return table(
    ['NAME', 'FINGERPRINT', 'ISSUED', 'EXPIRES', 'STATE'],
    list.map((c) => [
      c.name,
      c.fingerprint.slice(0, 16),
      day(c.issuedMs),
      day(c.expiresMs),
      c.revokedMs ? `revoked ${day(c.revokedMs)}` : Number(c.expiresMs) < now ? 'expired' : 'valid',
    ]),
  );
}

/** The platforms placed on `server`. */
export async function platformsOf(ctx: Ctx, server: string): Promise<wire.Platform[]> {
  return (await ctx.api().call('listPlatforms', {})).platforms.filter((p) => p.server === server);
}

/** `platform rm --delete-files`: says what goes where and asks, or needs --yes. */
export async function confirmDeleteFiles(ctx: Ctx, name: string, yes: boolean): Promise<void> {
  const p = await ctx.api().call('getPlatform', { name });
  const members = (await ctx.api().call('getServer', { name: p.server })).members;
  const root = (await ctx.api().call('status', {})).root;
  await confirmDelete(ctx.io, deleteFilesWarning(p, members, root), yes);
}
