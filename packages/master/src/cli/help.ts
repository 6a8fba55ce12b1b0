/**
 * What `spoke <noun> <verb> --help` says: each flag explained and an example per command. The
 * flag texts are shared by name (`--no-wait` means the same everywhere); a command whose flag
 * means something of its own says so under `command|flag`. A test checks that every flag of
 * every command is explained here and every command has an example.
 */
import { formatHelp, type HelpSpec } from '@spoke/shared/client';
import type { Command } from './command.js';

/** What each flag does, by name; `'command|flag'` overrides for one command. */
export const FLAG_HELP: Record<string, string> = {
  'no-wait': 'do not follow the task: print its id alone on stdout and return (follow it later: spoke task log ID -f)',
  // server
  cluster: 'the server joins this cluster when it enrolls',
  'server token|ttl': 'how long the token stays valid (90s, 30m, 1h, 2d; default 1h)',
  replace: 'issue a new token for a server that already enrolled (its old certificate stops working when the new one enrolls)',
  http: 'web server the agent must use: nginx or apache ("" lets it pick what it finds)',
  db: 'database server the agent must use: mariadb or mysql ("" lets it pick)',
  member: 'an agent server that joins the cluster (repeat for each member)',
  'cluster remove|delete-files': "also delete the cluster's platform trees on the member (user files kept); without it they stay on its disk",
  // platform
  path: "where the platform's code tree lives on the web servers (absolute, reserved on every server)",
  server: 'the agent server or cluster the platform is deployed to',
  makefile: 'build the tree from this drush makefile (.make or .make.yml) before deploying it',
  git: 'build the tree by cloning this git repository (URL or local path)',
  ref: 'the branch, tag or commit to check out with --git (default: the remote HEAD)',
  live: "keep the servers in step while the master's tree changes: edits are pushed as they happen, not only on verify",
  exclude: 'a path pattern (gitignore style, e.g. "*.log" or "sites/*/files") left out of the sync to the servers; repeat for more',
  'no-verify': 'register the platform without deploying it now (run spoke platform verify NAME later)',
  force: 'remove even though sites still name the platform (their records stay; they stop being served)',
  'delete-files': "also delete the platform's code tree on the servers (and on the master for a built platform)",
  'offline-ok': 'go ahead while a server is offline; it finishes the removal when it returns',
  yes: 'do not ask before deleting files (needed when there is no terminal to ask on)',
  drift: 'what hand edits found on a server lead to: repair (default; what the repair removes is kept in quarantine) or report (nothing changes on its own)',
  // site
  platform: 'the platform the site runs on',
  'site ls|platform': 'only sites on this platform',
  'site list|platform': 'only sites on this platform',
  'site clone|platform': 'the platform of the copy (default: the same as the original)',
  'site migrate|platform': 'the platform the site moves to',
  'redirect-old-for':
    'with --domain: how long the old name answers a 301 to the new one (30d by default; 12h, 90m, 0 = free the old name at once); spoke site alias rm NEW OLD frees it early',
  'db-server': "the server whose database service holds the site's database (default: the platform's server)",
  alias: 'another domain the site answers to; repeat for more',
  'redirect-aliases': 'aliases answer with a 301 redirect to the main domain instead of serving the site',
  title: 'the site name the installer sets',
  'admin-user': "the first administrator's user name (default admin)",
  'admin-email': "the first administrator's email address",
  profile: 'the install profile (Drupal) to install with',
  locale: 'the language the site is installed in (default en)',
  'cron-interval': "how often the site's cron runs: a duration like 15m, 1h, 1d, or off",
  interval: 'set how often cron runs (15m, 1h, 1d, off); without it the schedule is shown',
  history: 'list the recent cron runs and how they ended',
  'rewrite-settings': "rewrite the imported site's settings file to point at its new database",
  backup: 'the backup to restore (its id from spoke site backup ls DOMAIN)',
  'no-backup': 'delete without taking a last backup first',
  domain: 'the domain the site has after the move (default: unchanged)',
  format: 'drush alias format: yaml (drush 9+) or drushrc (drush 8)',
  out: 'the directory the files are written to',
  'site aliases|out': 'the directory the alias files are written to (default: ~/.drush/sites or ~/.drush)',
  'ssh-user': 'the ssh user the aliases log in as on the web servers (default aegir)',
  https: 'turn HTTPS on once the site is made: an ACME certificate when the master has --acme-directory, else a self-signed one',
  acme: 'an ACME certificate for the domain and every alias (the master needs --acme-directory; the default when it has one)',
  'self-signed': 'a self-signed certificate (browsers warn; the default when the master has no ACME directory)',
  cert: 'your own certificate: a PEM file, leaf first, then the chain (checked before anything is queued; with --key)',
  key: 'the private key of --cert (PEM; sent once to the master, stored 0600, never shown)',
  redirect: 'port 80 answers 301 to https (ACME challenges excepted)',
  hsts: 'send Strict-Transport-Security on https',
  // task
  state: 'only tasks in this state: queued, running, succeeded, failed or cancelled',
  entity: 'only tasks on this thing: KIND:NAME (platform:wp, site:a.test, server:web-1) or a bare NAME when only one kind has it',
  limit: 'at most this many tasks (newest first; default 50)',
  follow: 'keep printing as it happens, until the task ends (Ctrl-C stops following, not the task)',
  'events|limit': 'how many recent task changes to print first (default 20)',
  'events|follow': 'keep the stream open and print every event as it happens, until Ctrl-C (with -o json: one JSON object per line)',
  // operator
  'operator cert|ttl': 'how long the certificate is valid (e.g. 30d; default 365d)',
  'operator cert|out': 'the directory the key, certificate and CA certificate are written to (created 0700)',
  // up
  listen: 'the address agents and remote operators reach the master on (HOST:PORT, default 0.0.0.0:7443)',
  root: 'a directory standing in for / : every path the master and its agent touch is inside it (a trial that changes nothing outside it)',
  roots: 'comma-separated directories the local agent may deploy under (default /var/aegir,/var/www)',
  'acme-directory':
    "an ACME server's directory URL (e.g. https://acme-v02.api.letsencrypt.org/directory): site https certificates from it (default: none, self-signed only)",
  'acme-email': 'the contact address of the ACME account (expiry and policy mail)',
  'acme-ca': "a PEM file trusted for the ACME server's own TLS (a private ACME server; default: the system's CAs)",
};

/** An example per command. */
export const EXAMPLES: Record<string, string[]> = {
  status: ['spoke status'],
  'server token': ['spoke server token web-1', 'spoke server token web-2 --cluster web --ttl 2h'],
  'server ls': ['spoke server ls', 'spoke -o json server ls'],
  'server show': ['spoke server show web-1'],
  'server verify': ['spoke server verify web-1'],
  'server rm': ['spoke server rm web-1'],
  'server pin': ['spoke server pin web-1 --http nginx', 'spoke server pin web-1 --db ""'],
  'cluster create': ['spoke cluster create web --member web-1 --member web-2'],
  'cluster add': ['spoke cluster add web web-3'],
  'cluster remove': ['spoke cluster remove web web-3', 'spoke cluster remove web web-3 --delete-files'],
  'cluster ls': ['spoke cluster ls'],
  'platform add': [
    'spoke platform add wp --path /usr/share/wordpress --server web-1',
    'spoke platform add d10 --path /var/aegir/platforms/d10 --server web --makefile d10.make.yml --exclude "*.log"',
  ],
  'platform verify': ['spoke platform verify wp'],
  'platform diff': ['spoke platform diff d10 d10-1'],
  'platform status': ['spoke platform status wp'],
  'platform ls': ['spoke platform ls'],
  'platform show': ['spoke platform show wp'],
  'platform rm': ['spoke platform rm wp', 'spoke platform rm d10 --delete-files --offline-ok --yes'],
  'platform drift': ['spoke platform drift d10 report', 'spoke platform drift d10 repair'],
  'site ls': ['spoke site ls --platform wp'],
  'site list': ['spoke site list'],
  'site show': ['spoke site show blog.example.com'],
  'site cron': ['spoke site cron blog.example.com --interval 1h', 'spoke site cron blog.example.com --history'],
  'site install': ['spoke site install blog.example.com --platform wp --alias www.blog.example.com --title "My blog"'],
  'site verify': ['spoke site verify blog.example.com'],
  'site disable': ['spoke site disable blog.example.com'],
  'site enable': ['spoke site enable blog.example.com'],
  'site alias': ['spoke site alias add blog.example.com www.blog.example.com', 'spoke site alias redirect blog.example.com on'],
  'site import': ['spoke site import old.example.com --platform d7 --rewrite-settings'],
  'site backup': ['spoke site backup blog.example.com', 'spoke site backup ls blog.example.com', 'spoke site backup rm 12'],
  'site restore': ['spoke site restore blog.example.com --backup 12'],
  'site login-url': ['spoke site login-url blog.example.com'],
  'site aliases': ['spoke site aliases --format yaml --ssh-user aegir'],
  'site https': [
    'spoke site https blog.example.com on --redirect',
    'spoke site https blog.example.com on --cert blog.pem --key blog.key',
    'spoke site https blog.example.com off',
  ],
  'site delete': ['spoke site delete blog.example.com'],
  'site clone': ['spoke site clone blog.example.com staging.example.com'],
  'site migrate': [
    'spoke site migrate blog.example.com --platform wp-6.5',
    'spoke site migrate blog.example.com --platform wp-6.5 --domain news.example.com --redirect-old-for 7d',
  ],
  'task ls': ['spoke task ls --state failed', 'spoke task ls --entity wp'],
  'task show': ['spoke task show 42'],
  'task log': ['spoke task log 42 -f'],
  'task cancel': ['spoke task cancel 42'],
  'task rollback': ['spoke task rollback 42'],
  events: ['spoke events', 'spoke events -f', 'spoke -o json events -f --limit 100'],
  'operator cert': ['spoke operator cert alice --out ~/.spoke/alice'],
  'operator ls': ['spoke operator ls'],
  'operator revoke': ['spoke operator revoke alice'],
  up: ['spoke up --root /tmp/spoke-trial'],
  completion: ['spoke completion bash > /etc/bash_completion.d/spoke', 'source <(spoke completion zsh)'],
};

/** What a flag of `key` does, or undefined when nobody wrote it down (a test stops that). */
export function flagHelp(key: string, flag: string): string | undefined {
  return FLAG_HELP[`${key}|${flag}`] ?? FLAG_HELP[flag];
}

/** The help spec of one command. */
export function commandHelpSpec(key: string, cmd: Command): HelpSpec {
  const flags = Object.entries(cmd.options ?? {}).map(([name, o]): [string, string] => [
    `${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? ' VALUE' : ''}${o.multiple ? ' ...' : ''}`,
    flagHelp(key, name) ?? '',
  ]);
  return { usage: cmd.usage, summary: cmd.summary, flags, examples: EXAMPLES[key] ?? [] };
}

/** `spoke <command> --help`. */
export function commandHelp(key: string, cmd: Command): string {
  return `${formatHelp('spoke', commandHelpSpec(key, cmd))}\nglobal flags: --state-dir DIR | --socket PATH | --master HOST:PORT --cert-dir DIR, -o table|json (see: spoke --help)\n`;
}

/**
 * The positional argument names of a command, from its usage line: `site clone DOMAIN
 * NEW_DOMAIN [...]` → ['DOMAIN', 'NEW_DOMAIN'] (what "missing DOMAIN" names).
 */
export function argNames(key: string, cmd: Command): string[] {
  const first = cmd.usage.split(' | ')[0] as string;
  const words = first.split(/\s+/).slice(key.split(' ').length);
  const names: string[] = [];
  for (const w of words) {
    if (w.startsWith('[') || w.startsWith('-')) break;
    names.push(w);
  }
  return names;
}
