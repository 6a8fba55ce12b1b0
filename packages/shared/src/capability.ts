/**
 * Capability version the agent sends in its hello. Bump by one when the agent learns something
 * the master may rely on, and say here what each version added:
 *   1 — hello with host facts and detected services, heartbeats, server verify.
 *   2 — converge (GetManifest with deltas, framed FetchBlobs), tree status, observed-hash reports
 *       from drift checks.
 *   3 — ConfigurePlatform: render the platform's web server config (nginx/apache templates),
 *       test it, reload, and fix the group and modes of the platform's sites/ dirs.
 *   4 — site databases: DbCreate, DbDrop, DbGrants, DbDump (PutDump upload), DbRestore (GetDump
 *       download) on the agent's MariaDB/MySQL (agent.json `db`).
 *   5 — sites on a web server: ConfigureSite (vhost from site.conf / site-disabled.conf, files
 *       dirs, settings files to the web group), RemoveSite, InstallSite (WordPress over HTTP).
 *   6 — a site's user files moved to and from the master: SiteFilesPack (tar of files/ and
 *       private/ uploaded with PutFiles), SiteFilesUnpack (downloaded with GetFiles, checked,
 *       staged and swapped in). Used by backups and restore.
 *   7 — ForgetPlatform: remove the platform's web server config (test, reload, restored on a
 *       failed test), stop holding its tree (committed state dropped, no longer reported) and,
 *       when asked, delete the tree except a non-empty sites/<site>/files or private. Used by
 *       `platform rm`.
 *   8 — root hash v2 (two levels: per-directory group digests, then the root over them; see
 *       sync/roothash.ts), so a change costs its directory. Agents before 8 compute the v1 root
 *       and can never agree with this master: converge and tree status need 8.
 *   9 — Drupal sites without drush: InstallSite runs Drupal 7/8+'s installer API from the PHP
 *       command line (profile, locale), SiteTool (one-time login links, pending database updates
 *       and running them) through Spoke's site tool, as php.user; Converge carries the settings
 *       files to give to the web group after the apply.
 *  10 — SiteCron: one cron run of a site through its own web server (Drupal 7/8+ with the
 *       site's cron key, WordPress wp-cron.php) or, for MediaWiki, maintenance/runJobs.php as
 *       php.user. Used by the master's cron scheduler and `site cron`.
 *  11 — converge conflicts: a path where user data stands in the way of a wanted file or
 *       symlink is skipped and reported (ConvergeResult.conflicts, TreeStatusResult.conflicts),
 *       everything else applied; an unfinishable journal or a refused manifest delta no longer
 *       stops every later converge of the tree. Older agents fail the whole converge instead.
 *  12 — HTTPS: ConfigureSite carries the site's certificate and key (SiteTls; written 0600 under
 *       the agent's state dir, a 443 block on http.httpsListen, redirect and HSTS opt-in) and
 *       every site vhost serves /.well-known/acme-challenge/ on port 80; AcmeChallenge puts and
 *       removes HTTP-01 challenge files. The master refuses ConfigureSite with a certificate and
 *       AcmeChallenge to older agents (they would drop the certificate and serve plain HTTP).
 *  13 — drift on the agent's terms (issue 23): a repair copies what it removes or overwrites that
 *       differs from the last commit (hand edits) into a bounded quarantine in the state dir
 *       (ConvergeResult.quarantined, TreeStatusResult.quarantine), and ConvergeCommand.report_drift
 *       makes a converge that finds drift change nothing and fail with DRIFT_FOUND. Older agents
 *       ignore report_drift (they repair, keeping nothing) and list no quarantine.
 *  14 — ConfigureSite.redirect_names: names that only answer a 301 to the site's domain (a
 *       renamed site's old name for its grace period, `site migrate --redirect-old-for`). The
 *       master refuses a ConfigureSite with such names to older agents (they would drop them).
 *  15 — the streamed first sync: ConvergeCommand.stream asks an agent that holds nothing of a
 *       tree to receive it through StreamTree (entries and content as the master's walk reads
 *       them, then the root hash), written straight into the staging tree and committed as one
 *       transaction. Older agents are sent the root hash after the walk and use GetManifest +
 *       FetchBlobs, as before.
 */
export const CAPABILITY_VERSION = 15;

// The lowest capability each command needs: COMMAND_CAPABILITY in commands.ts.

/** The capability a ConfigureSite with a certificate needs (see 12 above). */
export const HTTPS_CAPABILITY = 12;

/** The capability a ConfigureSite with redirect-only names needs (see 14 above). */
export const REDIRECT_NAMES_CAPABILITY = 14;

/** The capability a streamed first sync (ConvergeCommand.stream, StreamTree) needs (see 15 above). */
export const STREAM_TREE_CAPABILITY = 15;

/** The product version printed by `--version` and reported in host facts. */
export const SPOKE_VERSION = '0.1.0';
