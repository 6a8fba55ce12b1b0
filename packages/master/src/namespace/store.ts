/**
 * The master's SQLite store: one file in the state dir, WAL mode, versioned migrations applied in
 * order at open. Only this module talks SQL schema; the namespace, enrollment and task modules
 * run their statements through the Database it opens.
 */
import Database from 'better-sqlite3';
import { chmodSync } from 'node:fs';

/** The better-sqlite3 handle type, re-exported so callers do not import the library. */
export type Db = Database.Database;

/**
 * Migrations, in order. Never edit one that has shipped: add a new one. Each runs in a
 * transaction and bumps `PRAGMA user_version`.
 */
const MIGRATIONS: string[] = [
  // 1: namespace, enrollment, tasks
  `
  CREATE TABLE servers (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('agent', 'cluster')),
    cluster TEXT REFERENCES servers(name),
    cert_fingerprint TEXT,
    enrolled_ms INTEGER,
    created_ms INTEGER NOT NULL,
    -- observed fields: written only from agent reports
    last_seen_ms INTEGER,
    facts_json TEXT,
    capability_version INTEGER
  );
  CREATE INDEX servers_cluster ON servers(cluster);
  CREATE TABLE services (
    server TEXT NOT NULL REFERENCES servers(name) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    detected_impl TEXT,
    detected_version TEXT,
    pinned_impl TEXT,
    PRIMARY KEY (server, kind)
  );
  CREATE TABLE revoked_certs (
    fingerprint TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    revoked_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
  );
  CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    cluster TEXT,
    replace INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms INTEGER,
    used_fingerprint TEXT
  );
  CREATE TABLE platforms (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    server TEXT NOT NULL REFERENCES servers(name),
    source_kind TEXT NOT NULL CHECK (source_kind IN ('existing', 'makefile', 'git')),
    makefile TEXT,
    makefile_name TEXT,
    git_url TEXT,
    git_ref TEXT,
    status TEXT NOT NULL,
    registry_json TEXT,
    live INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
  );
  CREATE INDEX platforms_server ON platforms(server);
  CREATE TABLE sites (
    domain TEXT PRIMARY KEY,
    platform TEXT NOT NULL REFERENCES platforms(name),
    db_server TEXT REFERENCES servers(name),
    profile TEXT,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL
  );
  CREATE INDEX sites_platform ON sites(platform);
  -- every name a site answers to (its domain and its aliases): unique across the namespace
  CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    site TEXT NOT NULL REFERENCES sites(domain) ON DELETE CASCADE,
    is_alias INTEGER NOT NULL
  );
  CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    entity TEXT NOT NULL,
    -- every entity the task holds while it runs (entity first), JSON array
    locks_json TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    params_json TEXT NOT NULL DEFAULT '{}',
    result_json TEXT,
    error_code TEXT,
    error_message TEXT,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER
  );
  CREATE INDEX tasks_state ON tasks(state, id);
  CREATE INDEX tasks_entity ON tasks(entity, id);
  CREATE TABLE task_log (
    task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
  );
  `,
  // 2: converge — desired root hash and excludes per platform, observed hashes per server, hash cache
  `
  ALTER TABLE platforms ADD COLUMN desired_root_hash TEXT;
  ALTER TABLE platforms ADD COLUMN excludes_json TEXT NOT NULL DEFAULT '[]';
  -- observed fields: written only from agent reports (hello, drift checks, converge results)
  CREATE TABLE tree_observed (
    server TEXT NOT NULL REFERENCES servers(name) ON DELETE CASCADE,
    path TEXT NOT NULL,
    root_hash TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (server, path)
  );
  -- content hashes of the master's canonical files, valid while ino/size/mtime/ctime match
  CREATE TABLE file_hashes (
    path TEXT PRIMARY KEY,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms REAL NOT NULL,
    ctime_ms REAL NOT NULL,
    hash TEXT NOT NULL
  );
  `,
  // 3: platform builds — the directory a makefile was read from (its relative paths resolve there)
  `
  ALTER TABLE platforms ADD COLUMN makefile_dir TEXT;
  `,
  // 4: sites — database facts, salt, install time; the steps a task finished (for its undo)
  `
  ALTER TABLE sites ADD COLUMN db_name TEXT;
  ALTER TABLE sites ADD COLUMN db_user TEXT;
  -- the site's own database password: rendered into its settings file, never printed
  ALTER TABLE sites ADD COLUMN db_password TEXT;
  -- how the web servers reach the database (from the db agent's answer to DbCreate)
  ALTER TABLE sites ADD COLUMN db_host TEXT;
  ALTER TABLE sites ADD COLUMN db_port INTEGER;
  ALTER TABLE sites ADD COLUMN salt TEXT;
  ALTER TABLE sites ADD COLUMN installed_ms INTEGER;
  CREATE UNIQUE INDEX sites_db_name ON sites(db_server, db_name) WHERE db_name IS NOT NULL;
  -- JSON array of {name, undo}: the steps a task finished, in order (sites/steps.ts)
  ALTER TABLE tasks ADD COLUMN steps_json TEXT;
  `,
  // 5: sites — who writes the settings file (1 = the site's own, kept by an import), and whether
  // the aliases answer with a 301 to the domain
  `
  ALTER TABLE sites ADD COLUMN own_settings INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE sites ADD COLUMN redirect_aliases INTEGER NOT NULL DEFAULT 0;
  `,
  // 6: file_hashes keyed by the path alone (WITHOUT ROWID: one b-tree instead of a rowid table
  // plus its primary-key index; inserting 20,000 rows: ~100 ms instead of 120–220 ms)
  `
  CREATE TABLE file_hashes_new (
    path TEXT PRIMARY KEY,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms REAL NOT NULL,
    ctime_ms REAL NOT NULL,
    hash TEXT NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO file_hashes_new SELECT path, ino, size, mtime_ms, ctime_ms, hash FROM file_hashes;
  DROP TABLE file_hashes;
  ALTER TABLE file_hashes_new RENAME TO file_hashes;
  `,
  // 7: cron — each site's interval (0 = off; existing sites get the default, 1 h) and a bounded
  // history of runs (sites/cronstore.ts keeps the last 20 per site; they go with the site)
  `
  ALTER TABLE sites ADD COLUMN cron_interval_s INTEGER NOT NULL DEFAULT 3600;
  CREATE TABLE cron_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL REFERENCES sites(domain) ON DELETE CASCADE,
    started_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    -- failed runs in a row up to and including this one (0 when ok)
    failures INTEGER NOT NULL,
    message TEXT NOT NULL,
    error_code TEXT NOT NULL DEFAULT '',
    server TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL CHECK (kind IN ('schedule', 'manual'))
  );
  CREATE INDEX cron_runs_site ON cron_runs(site, id);
  `,
  // 8: clusters and agents (issue 23) — per-platform drift mode
  `
  ALTER TABLE platforms ADD COLUMN drift_mode TEXT NOT NULL DEFAULT 'repair' CHECK (drift_mode IN ('repair', 'report'));
  -- trees a server still holds for a platform it no longer serves (membership.ts): finished by
  -- a server.forget task when the server is online
  CREATE TABLE leftover_trees (
    server TEXT NOT NULL,
    path TEXT NOT NULL,
    platform TEXT NOT NULL,
    delete_files INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (server, path)
  );
  -- operator certificates issued (operators.ts): listed, revoked by name, checked on every call
  CREATE TABLE operator_certs (
    fingerprint TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    issued_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
  );
  `,
  // 9: HTTPS — per site: what the operator asked for, the certificate served (its pair lives in
  // <state-dir>/tls/<domain>/<cert_id>.crt|.key, 0600; never here) and the renewal state
  `
  CREATE TABLE site_https (
    domain TEXT PRIMARY KEY REFERENCES sites(domain) ON DELETE CASCADE ON UPDATE CASCADE,
    enabled INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('acme', 'operator', 'self-signed')),
    redirect INTEGER NOT NULL DEFAULT 0,
    hsts INTEGER NOT NULL DEFAULT 0,
    cert_id TEXT NOT NULL DEFAULT '',
    cert_kind TEXT NOT NULL DEFAULT '',
    issuer TEXT NOT NULL DEFAULT '',
    names_json TEXT NOT NULL DEFAULT '[]',
    not_before_ms INTEGER NOT NULL DEFAULT 0,
    not_after_ms INTEGER NOT NULL DEFAULT 0,
    renew_at_ms INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    next_attempt_ms INTEGER NOT NULL DEFAULT 0
  );
  `,
  // 10: a renamed site's old name (sites/formernames.ts): an alias row that only answers a 301 to
  // the new name until redirect_until_ms, then is dropped (NULL: an ordinary alias)
  `
  ALTER TABLE domains ADD COLUMN redirect_until_ms INTEGER;
  `,
  // 11 (scale, issue 20): a site's domains
  // by site. Without it every read of a site's aliases scanned the whole domains table: with
  // 100,000 sites `site show` and every site task paid ~10 ms for it, and creating 100,000 sites
  // took 15 minutes (quadratic).
  `
  CREATE INDEX IF NOT EXISTS domains_site ON domains(site, is_alias, name);
  `,
];

/** Opens (and creates or migrates) the store at `file`. `:memory:` works for tests. */
export function openStore(file: string): Db {
  const db = new Database(file);
  if (file !== ':memory:') {
    chmodSync(file, 0o600);
    db.pragma('journal_mode = WAL');
  }
  db.pragma('foreign_keys = ON');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  cacheStatements(db);
  return db;
}

/**
 * Makes `db.prepare(sql)` return one compiled statement per SQL text. Callers prepare at the
 * point of use (readable), and compiling costs ~50-100 µs each: a platform verify ran about 40
 * prepares. Statements are only ever used with run/get/all, never switched into pluck/raw/expand
 * mode (that would leak into every other user of the same SQL; architecture.test.ts checks).
 */
export function cacheStatements(db: Db): void {
  const compile = db.prepare.bind(db);
  const cache = new Map<string, ReturnType<typeof compile>>();
  db.prepare = ((sql: string) => {
    let st = cache.get(sql);
    if (st === undefined) {
      st = compile(sql);
      cache.set(sql, st);
    }
    return st;
  }) as typeof db.prepare;
}

/** Applies pending migrations (up to schema `upTo`, tests only; default all); returns the schema version reached. */
export function migrate(db: Db, upTo = MIGRATIONS.length): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`state was written by a newer spoke (schema ${current}, this build knows ${MIGRATIONS.length})`);
  }
  for (let v = current; v < Math.min(upTo, MIGRATIONS.length); v++) {
    const sql = MIGRATIONS[v] as string;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return Math.max(current, Math.min(upTo, MIGRATIONS.length));
}
