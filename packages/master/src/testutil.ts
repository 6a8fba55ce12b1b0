/**
 * Test helpers shared by the master's unit tests (not exported from the package).
 */
import { openStore, type Db } from './store.js';
import { Namespace } from './namespace.js';
import { SpokeError } from '@spoke/shared';

/** A fresh in-memory store with a namespace over it and a controllable clock. */
export function freshNamespace(): { db: Db; ns: Namespace; now: { ms: number } } {
  const db = openStore(':memory:');
  const now = { ms: 1_700_000_000_000 };
  const ns = new Namespace({ db, clock: () => now.ms });
  return { db, ns, now };
}

/** Every row of every table, for "changed nothing" assertions. */
export function snapshot(db: Db): Record<string, unknown[]> {
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as {
    name: string;
  }[]).map((t) => t.name);
  return Object.fromEntries(tables.map((t) => [t, db.prepare(`SELECT * FROM "${t}" ORDER BY rowid`).all()]));
}

/** Runs fn, expects a SpokeError with `code`, and that the database did not change. */
export function expectRefused(db: Db, code: string, fn: () => unknown): SpokeError {
  const before = JSON.stringify(snapshot(db));
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof SpokeError)) throw new Error(`expected SpokeError ${code}, got ${caught === undefined ? 'no error' : String(caught)}`);
  if (caught.code !== code) throw new Error(`expected ${code}, got ${caught.code}: ${caught.message}`);
  const after = JSON.stringify(snapshot(db));
  if (before !== after) throw new Error(`refused ${code} but the database changed`);
  if (caught.message.includes('\n')) throw new Error('error message must be one line');
  return caught;
}

/** Enrolls an agent server directly in the namespace (no PKI). */
export function addAgent(ns: Namespace, name: string, cluster: string | null = null): void {
  ns.recordEnrollment({ server: name, cluster, fingerprint: `fp-${name}`, replace: false });
}
