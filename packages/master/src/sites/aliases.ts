/**
 * Drush site aliases for the sites Spoke hosts (`spoke site aliases`), in drush 9+ YAML and
 * drush 8 `aliases.drushrc.php` form. `siteAliases` is pure (sites, platforms and servers in,
 * file names and contents out); `writeAliasFiles` puts the files in a directory atomically.
 *
 * Naming. Aegir named each site's alias after its domain (`@blog.example.com`). Drush 8 still
 * accepts that, so the drushrc form keeps it. Drush 9+ does not: its alias names are
 * `@[location.]sitename[.env]` with each part matching `[a-zA-Z0-9_-]+` (consolidation/site-alias
 * `SiteAliasName::ALIAS_NAME_REGEX`), so `@blog.example.com` would be read as location `blog`,
 * site `example`, environment `com`. The site name is the alias file's name before `.site.yml`.
 * So each site gets its own file `<name>.site.yml`, `<name>` being the domain with every `.`
 * replaced by `_` (`blog_example_com.site.yml`); Spoke's domains are lowercase letters, digits
 * and hyphens between dots, never `_`, so no two domains share a name and the domain can be read
 * back from it. The file holds one environment, `live`: `@blog_example_com.live`, and, as drush
 * takes the first environment when none is named (no `default` or `dev` key), also
 * `@blog_example_com`.
 *
 * Which sites: those `installed` or `disabled` (drush works on a disabled site's database and
 * files; the vhost answering 503 does not matter to it) on a platform verified as Drupal
 * (drupal6/7/8). Sites still installing, failed or being deleted, and sites of other platform
 * kinds (WordPress, MediaWiki, generic: drush cannot bootstrap them) are left out and listed in
 * `skipped` with the reason.
 *
 * Where: `root` is the platform's publish path on the web server (under the agent's `--root`
 * prefix when it has one, as test hosts do), `uri` the site's domain (`http://DOMAIN` for drush
 * 9+ as its docs ask; the bare domain for drush 8, as Aegir wrote it). A site whose platform is on
 * the local server (the one-box `master` of `spoke up`, when the CLI talks to that master over its
 * socket) gets no `host`: drush runs there. Any other gets `host` (drush 8: `remote-host`) = the
 * host name its agent reported at its last hello, and `user` (`remote-user`) = the ssh account.
 * A cluster's site goes to its first online member by name (every member serves the same tree),
 * or, with none online, to its first member by name that ever reported a host name; a comment in
 * the file says which and why.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fail } from '@spoke/shared/client';

/** The two output forms: drush 9+ `*.site.yml` files, or one drush 8 `aliases.drushrc.php`. */
export type AliasFormat = 'yaml' | 'drushrc';

/** Every format, for the CLI's check. */
export const ALIAS_FORMATS: readonly AliasFormat[] = ['yaml', 'drushrc'];

/** The ssh account written as `user` when `--ssh-user` is not given: the account the agent runs as on a default install (deploy/). */
export const DEFAULT_SSH_USER = 'root';

/** The drush 9+ environment every site's alias file holds. */
export const ALIAS_ENV = 'live';

/** The drush 8 alias file name. */
export const DRUSHRC_FILE = 'aliases.drushrc.php';

/** Every file `siteAliases` writes carries this text in its first line (stale files are found by it). */
export const GENERATED_MARK = 'written by `spoke site aliases`';

/** What the generator needs of a server. */
export interface AliasServer {
  name: string;
  kind: 'agent' | 'cluster';
  /** A cluster's members (any order). */
  members: string[];
  online: boolean;
  /** Host name from the agent's last hello ("" when it never said hello). */
  hostname: string;
  /** The agent's `--root` prefix ("" = /). */
  rootPrefix: string;
}

/** What the generator needs of a platform. */
export interface AliasPlatform {
  name: string;
  path: string;
  server: string;
  /** Registry kind (`drupal6`, `drupal7`, `drupal8`, `wordpress`, …); null before the first verify. */
  kind: string | null;
}

/** What the generator needs of a site. */
export interface AliasSite {
  domain: string;
  platform: string;
  status: string;
}

/** Generator options. */
export interface AliasOptions {
  format: AliasFormat;
  /** ssh account for remote sites; checked by `checkSshUser`. @default DEFAULT_SSH_USER */
  sshUser?: string;
  /** The server whose sites are local (no `host`); null = none. */
  localServer: string | null;
}

/** One alias written. */
export interface AliasEntry {
  /** The name drush knows it by, with `@`. */
  alias: string;
  domain: string;
  root: string;
  /** The ssh host; null for a local site. */
  host: string | null;
  /** The server whose host it is (for a cluster: the member picked). */
  server: string;
}

/** A file to write (name relative to the output dir). */
export interface AliasFile {
  name: string;
  content: string;
}

/** What `siteAliases` produced. */
export interface AliasSet {
  format: AliasFormat;
  entries: AliasEntry[];
  files: AliasFile[];
  /** Sites left out, with the reason (one line each). */
  skipped: { domain: string; reason: string }[];
  /** Everything as one document for stdout (YAML: file name → content; drushrc: the file). */
  document: string;
}

const DRUPAL_KINDS = new Set(['drupal6', 'drupal7', 'drupal8']);
const SSH_USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/;
const HOST_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/** The drush 9+ site name of a domain: `blog.example.com` → `blog_example_com`. */
export function aliasName(domain: string): string {
  return domain.replaceAll('.', '_');
}

/**
 * Checks an ssh account name: letters, digits, `_`, `.`, `-`, at most 32, not starting with `-`
 * or `.` (drush passes `user@host` to ssh; a leading `-` would be read as an option).
 * @throws SpokeError INVALID_ARGUMENT
 */
export function checkSshUser(user: string): void {
  if (!SSH_USER.test(user)) {
    throw fail(
      'INVALID_ARGUMENT',
      `--ssh-user must be an account name (letters, digits, _ . -, at most 32, not starting with - or .), got ${JSON.stringify(user)}`,
    );
  }
}

/**
 * A YAML double-quoted scalar: JSON's escapes (valid YAML) plus `\uXXXX` for every character
 * YAML does not allow unescaped (C1 controls, DEL, lone surrogates, U+FEFF, U+2028/2029 kept
 * readable by escaping too).
 */
export function yamlString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\u009f\u2028\u2029\ufeff\ud800-\udfff]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A PHP single-quoted string as var_export writes it: only `\` and `'` are escaped. */
export function phpLiteral(s: string): string {
  return `'${s.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/** Comment text: printable ASCII only, and never `?>` (it ends PHP mode even inside `//`). */
function comment(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').replaceAll('?>', '? >');
}

interface Placement {
  server: string;
  host: string | null;
  rootPrefix: string;
  note: string | null;
}

/** Where drush should reach a platform's server, or why it cannot. */
function place(serverName: string, servers: Map<string, AliasServer>, localServer: string | null): Placement | { skip: string } {
  const s = servers.get(serverName);
  if (!s) return { skip: `its platform's server ${serverName} is not in the namespace` };
  let agent = s;
  let note: string | null = null;
  if (s.kind === 'cluster') {
    const members = [...s.members]
      .sort()
      .map((m) => servers.get(m))
      .filter((m): m is AliasServer => m !== undefined);
    const online = members.find((m) => m.online);
    const known = online ?? members.find((m) => m.hostname !== '' || m.name === localServer);
    if (!known) return { skip: `no member of cluster ${s.name} has reported its host name yet (start an agent of the cluster)` };
    agent = known;
    const list = members.map((m) => m.name).join(', ');
    note = online
      ? `cluster ${s.name}: reached through ${known.name}, its first online member by name (every member serves the same tree; members: ${list})`
      : `cluster ${s.name}: reached through ${known.name}, its first member by name with a known host, as no member was online (members: ${list})`;
  }
  if (agent.name === localServer) return { server: agent.name, host: null, rootPrefix: agent.rootPrefix, note };
  if (agent.hostname === '') return { skip: `server ${agent.name} has not reported its host name yet (its agent never connected)` };
  if (!HOST_NAME.test(agent.hostname)) return { skip: `server ${agent.name} reported the host name ${JSON.stringify(agent.hostname)}, which ssh cannot use` };
  return { server: agent.name, host: agent.hostname, rootPrefix: agent.rootPrefix, note };
}

/**
 * The drush aliases of every installed or disabled Drupal site (see the module comment for
 * names, fields and which sites). Deterministic: sites in domain order, same input → same bytes.
 * @throws SpokeError INVALID_ARGUMENT for a bad `sshUser`
 */
export function siteAliases(input: { sites: AliasSite[]; platforms: AliasPlatform[]; servers: AliasServer[] }, opts: AliasOptions): AliasSet {
  const sshUser = opts.sshUser ?? DEFAULT_SSH_USER;
  checkSshUser(sshUser);
  const platforms = new Map(input.platforms.map((p) => [p.name, p]));
  const servers = new Map(input.servers.map((s) => [s.name, s]));
  const entries: (AliasEntry & { note: string | null })[] = [];
  const skipped: AliasSet['skipped'] = [];
  for (const site of [...input.sites].sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0))) {
    const p = platforms.get(site.platform);
    const skip = (reason: string) => skipped.push({ domain: site.domain, reason });
    if (site.status !== 'installed' && site.status !== 'disabled') {
      skip(`status ${site.status} (only installed and disabled sites get aliases)`);
      continue;
    }
    if (!p) {
      skip(`its platform ${site.platform} is not in the namespace`);
      continue;
    }
    if (p.kind === null || !DRUPAL_KINDS.has(p.kind)) {
      skip(
        p.kind === null
          ? `platform ${p.name} has not been verified yet, so its kind is unknown (spoke platform verify ${p.name})`
          : `not a Drupal site (platform ${p.name} is ${p.kind}); drush cannot bootstrap it`,
      );
      continue;
    }
    const at = place(p.server, servers, opts.localServer);
    if ('skip' in at) {
      skip(at.skip);
      continue;
    }
    const root = at.rootPrefix ? posix.join(at.rootPrefix, p.path) : p.path;
    const alias = opts.format === 'yaml' ? `@${aliasName(site.domain)}` : `@${site.domain}`;
    entries.push({ alias, domain: site.domain, root, host: at.host, server: at.server, note: at.note });
  }
  const files =
    opts.format === 'yaml'
      ? entries.map((e) => ({ name: `${aliasName(e.domain)}.site.yml`, content: yamlFile(e, sshUser) }))
      : [{ name: DRUSHRC_FILE, content: drushrcFile(entries, sshUser) }];
  const document = opts.format === 'yaml' ? yamlDocument(entries, sshUser) : (files[0] as AliasFile).content;
  return { format: opts.format, entries: entries.map(({ note: _n, ...e }) => e), files, skipped, document };
}

/** The `live:` mapping of one site (indented by `pad`). */
function yamlEnv(e: AliasEntry & { note: string | null }, sshUser: string, pad: string): string {
  const lines: string[] = [];
  if (e.note) lines.push(`${pad}# ${comment(e.note)}`);
  lines.push(`${pad}${ALIAS_ENV}:`);
  lines.push(`${pad}  root: ${yamlString(e.root)}`);
  lines.push(`${pad}  uri: ${yamlString(`http://${e.domain}`)}`);
  if (e.host !== null) {
    lines.push(`${pad}  host: ${yamlString(e.host)}`);
    lines.push(`${pad}  user: ${yamlString(sshUser)}`);
  }
  return `${lines.join('\n')}\n`;
}

function yamlFile(e: AliasEntry & { note: string | null }, sshUser: string): string {
  return (
    `# drush 9+ site alias ${e.alias} (also ${e.alias}.${ALIAS_ENV}) for ${comment(e.domain)}, ${GENERATED_MARK};\n` +
    `# running it again overwrites this file.\n` +
    yamlEnv(e, sshUser, '')
  );
}

function yamlDocument(entries: (AliasEntry & { note: string | null })[], sshUser: string): string {
  const head =
    `# drush 9+ site aliases, ${GENERATED_MARK}: one file per site, named by the key below;\n` +
    `# spoke site aliases --out DIR writes them (e.g. --out ~/.drush/sites)\n`;
  if (entries.length === 0) return `${head}{}\n`;
  return head + entries.map((e) => `${aliasName(e.domain)}.site.yml:\n${yamlEnv(e, sshUser, '  ')}`).join('');
}

function drushrcFile(entries: (AliasEntry & { note: string | null })[], sshUser: string): string {
  let out =
    `<?php\n` +
    `// drush 8 site aliases of the Drupal sites Spoke hosts, ${GENERATED_MARK} --format drushrc;\n` +
    `// running it again overwrites this file.\n` +
    `$aliases = array();\n`;
  for (const e of entries) {
    out += '\n';
    if (e.note) out += `// ${comment(e.note)}\n`;
    out += `$aliases[${phpLiteral(e.domain)}] = array(\n`;
    out += `  'root' => ${phpLiteral(e.root)},\n`;
    out += `  'uri' => ${phpLiteral(e.domain)},\n`;
    if (e.host !== null) {
      out += `  'remote-host' => ${phpLiteral(e.host)},\n`;
      out += `  'remote-user' => ${phpLiteral(sshUser)},\n`;
    }
    out += ');\n';
  }
  return out;
}

/**
 * Writes `files` into the existing directory `dir`, atomically per file (a temp file beside it,
 * then rename; mode 0644 whatever the umask). Checks everything first: `dir` must be a directory
 * and every target either absent or a regular file; all temp files are written before the first
 * rename, and a failure removes the temps, so a refusal leaves `dir` as it was. Returns the
 * paths written.
 * @throws SpokeError OUTPUT_NOT_WRITABLE
 */
export function writeAliasFiles(dir: string, files: AliasFile[]): string[] {
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fail(
      'OUTPUT_NOT_WRITABLE',
      `cannot write drush aliases to ${dir}: ${code === 'ENOENT' ? 'no such directory (create it first)' : (e as Error).message}`,
    );
  }
  if (!st.isDirectory()) throw fail('OUTPUT_NOT_WRITABLE', `cannot write drush aliases to ${dir}: it is not a directory`);
  const targets = files.map((f) => join(dir, f.name));
  for (const t of targets) {
    let lst;
    try {
      lst = lstatSync(t);
    } catch {
      continue; // absent: fine
    }
    if (!lst.isFile())
      throw fail('OUTPUT_NOT_WRITABLE', `cannot write drush aliases: ${t} exists and is not a regular file (move it away or pick another --out)`);
  }
  const temps: string[] = [];
  try {
    for (const f of files) {
      const tmp = join(dir, `.${f.name}.${randomBytes(4).toString('hex')}.tmp`);
      writeFileSync(tmp, f.content, { mode: 0o644, flag: 'wx' });
      temps.push(tmp);
      chmodSync(tmp, 0o644);
    }
    temps.forEach((tmp, i) => renameSync(tmp, targets[i] as string));
  } catch (e) {
    for (const t of temps) rmSync(t, { force: true });
    throw fail('OUTPUT_NOT_WRITABLE', `cannot write drush aliases to ${dir}: ${(e as Error).message}`);
  }
  return targets;
}

/**
 * `*.site.yml` files in `dir` that an earlier run wrote (their first line carries
 * GENERATED_MARK) and that are not in `written` (full paths): aliases of sites gone since. They
 * are reported, never removed — an operator may have kept one on purpose.
 */
export function staleAliasFiles(dir: string, written: string[]): string[] {
  const keep = new Set(written);
  const stale: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (!name.endsWith('.site.yml') || keep.has(p)) continue;
    try {
      if (!lstatSync(p).isFile()) continue;
      const first = readFileSync(p, 'utf8').split('\n', 1)[0] ?? '';
      if (first.includes(GENERATED_MARK)) stale.push(p);
    } catch {
      // unreadable: not ours to judge
    }
  }
  return stale;
}
