/**
 * Test helpers shared by the master's unit tests (not exported from the package).
 */
import { EventEmitter } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { openStore, type Db } from './namespace/store.js';
import { Namespace } from './namespace/namespace.js';
import { AgentHub } from './servers/hub.js';
import { RootMap, silentLogger, type ErrorCode, type SpokeError } from '@spoke/shared';
import { expectCode } from '@spoke/shared/testkit';
import type { PlatformSync } from './platforms/converge.js';
import type { ScriptedAgents } from './scriptedagents.js';
import { SiteTasks } from './sites/tasks.js';
import { TaskEngine } from './tasks/engine.js';
import { TreeStore } from './platforms/trees.js';

/** A fresh in-memory store with a namespace over it and a controllable clock. */
export function freshNamespace(): { db: Db; ns: Namespace; now: { ms: number } } {
  const db = openStore(':memory:');
  const now = { ms: 1_700_000_000_000 };
  const ns = new Namespace({ db, clock: () => now.ms });
  return { db, ns, now };
}

/** Every row of every table, for "changed nothing" assertions. */
export function snapshot(db: Db): Record<string, unknown[]> {
  const tables = db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as {
    name: string;
    sql: string;
  }[];
  // a WITHOUT ROWID table (file_hashes) is ordered by its primary key, its first column
  const order = (sql: string) => (/WITHOUT ROWID/i.test(sql) ? '1' : 'rowid');
  return Object.fromEntries(tables.map((t) => [t.name, db.prepare(`SELECT * FROM "${t.name}" ORDER BY ${order(t.sql)}`).all()]));
}

/** Runs fn, expects a SpokeError with `code`, and that the database did not change. */
export function expectRefused(db: Db, code: ErrorCode, fn: () => unknown): SpokeError {
  const before = JSON.stringify(snapshot(db));
  const caught = expectCode(fn, code);
  if (JSON.stringify(snapshot(db)) !== before) throw new Error(`refused ${code} but the database changed`);
  return caught;
}

/** Enrolls an agent server directly in the namespace (no PKI). */
export function addAgent(ns: Namespace, name: string, cluster: string | null = null): void {
  ns.recordEnrollment({ server: name, cluster, fingerprint: `fp-${name}`, replace: false });
}

// The wire types, taken from the hub's own signature: this test-only module imports no wire code
// (test/architecture.test.ts keeps that to the edges).
type AgentStream = Parameters<AgentHub['attach']>[2];
type FromAgent = AgentStream extends ServerDuplexStream<infer E, unknown> ? E : never;
type ToAgent = AgentStream extends ServerDuplexStream<unknown, infer C> ? C : never;
type AgentResult = Extract<NonNullable<FromAgent['event']>, { $case: 'result' }>['value'];

/** An agent's end of the command stream, in memory: what the hub writes is kept in `written`. */
export class FakeAgentStream extends EventEmitter {
  written: ToAgent[] = [];
  write(m: ToAgent): boolean {
    this.written.push(m);
    return true;
  }
  end(): void {}
}

/**
 * A hub over a fresh in-memory namespace with one fake agent `name` enrolled, attached and said
 * hello with `capabilityVersion`. `answer(result)` replies to the last command the hub sent and
 * returns that command.
 */
export function connectFakeAgent(
  name: string,
  capabilityVersion: number,
): { hub: AgentHub; ns: Namespace; stream: FakeAgentStream; answer: (result: Omit<AgentResult, 'id'>) => ToAgent } {
  const { ns } = freshNamespace();
  addAgent(ns, name);
  const hub = new AgentHub({ ns, log: silentLogger(), clock: Date.now, heartbeatIntervalMs: 1000, heartbeatTtlMs: 60_000 });
  const stream = new FakeAgentStream();
  hub.attach(name, null, stream as unknown as AgentStream);
  stream.emit('data', { event: { $case: 'hello', value: { capabilityVersion, facts: undefined, services: [], observed: {} } } });
  const answer = (result: Omit<AgentResult, 'id'>) => {
    const sent = stream.written.at(-1) as ToAgent;
    stream.emit('data', { event: { $case: 'result', value: { id: sent.id, ...result } } });
    return sent;
  };
  return { hub, ns, stream, answer };
}

/**
 * Site tasks over a fresh namespace and a new temp dir `root` (the caller removes it): no agent
 * is online and nothing converges, so tests see what is refused or queued, not the steps; with
 * `agents` (scriptedagents.ts), the tasks run their steps against those scripted fakes.
 */
export function siteTasksHarness(prefix: string, opts: { agents?: ScriptedAgents; onlineWaitMs?: number } = {}) {
  const f = freshNamespace();
  const root = mkdtempSync(join(tmpdir(), prefix));
  const tasks = new TaskEngine({ db: f.db, clock: () => f.now.ms, log: silentLogger() });
  const trees = new TreeStore({ db: f.db, rootMap: new RootMap(root), log: silentLogger(), watch: false });
  const sites = new SiteTasks({
    ns: f.ns,
    hub: opts.agents?.hub ?? ({ isOnline: () => false, awaitReconnect: async () => undefined } as unknown as AgentHub),
    tasks,
    trees,
    sync: opts.agents?.sync ?? ({} as PlatformSync),
    db: f.db,
    trashDir: join(root, 'trash'),
    onlineWaitMs: opts.onlineWaitMs ?? (opts.agents ? 0 : undefined),
  });
  return { ...f, tasks, sites, root };
}
