import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fail, silentLogger } from '@spoke/shared';
import { openStore, type Db } from '../namespace/store.js';
import { TaskEngine, type TaskContext } from './engine.js';
import { StepLog, resumeRollback, runSteps, type Step } from './steps.js';
import { ROLLBACK_TASK, SiteRollback } from '../sites/rollback.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function engine(file = ':memory:'): { db: Db; tasks: TaskEngine; steps: StepLog } {
  const db = openStore(file);
  return { db, tasks: new TaskEngine({ db, clock: Date.now, log: silentLogger() }), steps: new StepLog(db) };
}

/** Steps that record what they did and undid in `trace`; `failAt` throws in that step's do. */
function recorder(trace: string[], opts: { failAt?: string; failUndo?: string; block?: { name: string; until: Promise<void> } } = {}): Step[] {
  return ['a', 'b', 'c', 'd'].map((name, i) => ({
    name,
    do: async () => {
      trace.push(`do ${name}`);
      if (opts.block?.name === name) await opts.block.until;
      if (opts.failAt === name) throw fail('AGENT_OFFLINE', `agent for ${name} is offline`);
      return { n: i, made: `${name}-thing` };
    },
    undo: async (_ctx: TaskContext, data: unknown) => {
      trace.push(`undo ${name} ${JSON.stringify(data)}`);
      if (opts.failUndo === name) throw fail('DB_UNREACHABLE', `cannot undo ${name}`);
    },
  }));
}

const messages = (tasks: TaskEngine, id: number) => tasks.lines(id).map((l) => `${l.level} ${l.message}`);

describe('step engine', () => {
  it('runs steps in order and records each with its undo data; success undoes nothing', async () => {
    const { tasks, steps } = engine();
    const trace: string[] = [];
    tasks.register('s', (ctx) => runSteps(ctx, recorder(trace), steps));
    tasks.start();
    const t = await tasks.wait(tasks.submit({ kind: 's', entity: 'site:x' }).id);
    expect(t.state).toBe('succeeded');
    expect(trace).toEqual(['do a', 'do b', 'do c', 'do d']);
    expect(steps.load(t.id)).toEqual({
      done: ['a', 'b', 'c', 'd'].map((name, n) => ({ name, undo: { n, made: `${name}-thing` } })),
      inflight: null,
      committed: null,
    });
  });

  it('on failure undoes the finished steps in reverse with their data, and says "rolled back"', async () => {
    const { tasks, steps } = engine();
    const trace: string[] = [];
    tasks.register('s', (ctx) => runSteps(ctx, recorder(trace, { failAt: 'c' }), steps));
    tasks.start();
    const t = await tasks.wait(tasks.submit({ kind: 's', entity: 'site:x' }).id);
    expect(t).toMatchObject({ state: 'failed', errorCode: 'AGENT_OFFLINE', errorMessage: 'agent for c is offline; rolled back' });
    expect(trace).toEqual(['do a', 'do b', 'do c', 'undo b {"n":1,"made":"b-thing"}', 'undo a {"n":0,"made":"a-thing"}']);
    expect(messages(tasks, t.id)).toEqual(
      expect.arrayContaining([
        'error step c failed: AGENT_OFFLINE: agent for c is offline',
        'warn rolling back 2 step(s): b, a',
        'info undid b',
        'info undid a',
        'warn rolled back',
      ]),
    );
    expect(steps.load(t.id).done).toEqual([]);
  });

  it('a failing undo is logged loudly, the other undos still run, and the task says "rollback incomplete"', async () => {
    const { tasks, steps } = engine();
    const trace: string[] = [];
    tasks.register('s', (ctx) => runSteps(ctx, recorder(trace, { failAt: 'd', failUndo: 'b' }), steps));
    tasks.start();
    const t = await tasks.wait(tasks.submit({ kind: 's', entity: 'site:x' }).id);
    expect(t.state).toBe('failed');
    expect(t.errorCode).toBe('AGENT_OFFLINE');
    expect(t.errorMessage).toBe(
      `agent for d is offline; rollback incomplete: undo of b failed (DB_UNREACHABLE: cannot undo b); finish it with: spoke task rollback ${t.id}`,
    );
    expect(trace.filter((x) => x.startsWith('undo')).map((x) => x.split(' ').slice(0, 2).join(' '))).toEqual(['undo c', 'undo b', 'undo a']);
    expect(messages(tasks, t.id)).toContain(
      `error UNDO FAILED: b: DB_UNREACHABLE: cannot undo b; the rollback goes on (spoke task rollback ${t.id} runs this undo again)`,
    );
    // the failed undo stays in the row, for the record
    expect(steps.load(t.id).done).toEqual([{ name: 'b', undo: { n: 1, made: 'b-thing' }, undoFailed: 'DB_UNREACHABLE: cannot undo b' }]);
  });

  it('a cancel rolls back too (undos run with a signal a cancel does not abort)', async () => {
    const { tasks, steps } = engine();
    const trace: string[] = [];
    let release!: () => void;
    const until = new Promise<void>((r) => (release = r));
    const signals: boolean[] = [];
    const list = recorder(trace, { block: { name: 'b', until } });
    (list[0] as Step).undo = async (ctx) => {
      signals.push(ctx.signal.aborted);
      trace.push('undo a');
    };
    (list[1] as Step).do = async (ctx) => {
      trace.push('do b');
      await until;
      if (ctx.signal.aborted) throw ctx.signal.reason;
    };
    tasks.register('s', (ctx) => runSteps(ctx, list, steps));
    tasks.start();
    const id = tasks.submit({ kind: 's', entity: 'site:x' }).id;
    await new Promise((r) => setTimeout(r, 20));
    tasks.cancel(id);
    release();
    const t = await tasks.wait(id);
    expect(t).toMatchObject({ state: 'cancelled', errorCode: 'TASK_CANCELLED', errorMessage: 'cancelled by the operator; rolled back' });
    expect(trace).toEqual(['do a', 'do b', 'undo a']);
    expect(signals).toEqual([false]);
  });

  it('a commit step is a point of no return: a later failure undoes nothing before it', async () => {
    const { tasks, steps } = engine();
    const trace: string[] = [];
    const list = recorder(trace, { failAt: 'd' });
    (list[1] as Step).commit = true;
    tasks.register('s', (ctx) => runSteps(ctx, list, steps));
    tasks.start();
    const t = await tasks.wait(tasks.submit({ kind: 's', entity: 'site:x' }).id);
    expect(t.errorMessage).toBe('agent for d is offline; rolled back the steps after b (the point of no return)');
    // c was done after the commit and is undone; a and b are not
    expect(trace).toEqual(['do a', 'do b', 'do c', 'do d', 'undo c {"n":2,"made":"c-thing"}']);
  });

  it('a failure right after the point of no return says what the commit step says to do', async () => {
    const { tasks, steps } = engine();
    const trace: string[] = [];
    const list = recorder(trace, { failAt: 'c' });
    (list[1] as Step).commit = true;
    (list[1] as Step).recovery = 'the site already moved; remove the old copy by hand';
    tasks.register('s', (ctx) => runSteps(ctx, list, steps));
    tasks.start();
    const t = await tasks.wait(tasks.submit({ kind: 's', entity: 'site:x' }).id);
    expect(t.errorMessage).toBe(
      'agent for c is offline; not rolled back: past the point of no return (b); the site already moved; remove the old copy by hand',
    );
    expect(trace).toEqual(['do a', 'do b', 'do c']);
  });

  it('refuses a step list with a name twice', async () => {
    const { tasks, steps } = engine();
    const list = recorder([]);
    (list[2] as Step).name = 'a';
    tasks.register('s', (ctx) => runSteps(ctx, list, steps));
    tasks.start();
    const t = await tasks.wait(tasks.submit({ kind: 's', entity: 'site:x' }).id);
    expect(t).toMatchObject({ state: 'failed', errorCode: 'INTERNAL', errorMessage: 'step a appears twice' });
  });
});

describe('rollback after a restart (real SQLite file)', () => {
  function tmpDb(): string {
    const d = mkdtempSync(join(tmpdir(), 'spoke-steps-'));
    dirs.push(d);
    return join(d, 'spoke.db');
  }

  it('a task left running by a dead master is rolled back from its row at the next start-up', async () => {
    const file = tmpDb();
    // First master: runs a, b, then hangs in c and "dies" (the process goes; the row stays).
    const first = engine(file);
    const trace1: string[] = [];
    const hang = new Promise<void>(() => undefined);
    first.tasks.register('site.install', (ctx) => runSteps(ctx, recorder(trace1, { block: { name: 'c', until: hang } }), first.steps), {
      resume: async () => {
        throw fail('INTERNAL', 'not this one');
      },
    });
    first.tasks.start();
    // (the params a site.install is submitted with: the engine checks them against its schema)
    const params = {
      domain: 'x.example.com',
      platform: 'p',
      dbServer: 'db',
      kind: 'drupal7',
      title: 'X',
      adminUser: 'admin',
      adminEmail: 'admin@x.example.com',
    };
    const id = first.tasks.submit({ kind: 'site.install', entity: 'site:x', locks: ['platform:p'], params }).id;
    await new Promise((r) => setTimeout(r, 30));
    expect(trace1).toEqual(['do a', 'do b', 'do c']);
    first.db.close(); // SIGKILL: no stop(), nothing more written

    // Second master over the same file.
    const second = engine(file);
    const trace2: string[] = [];
    second.tasks.register(
      'site.install',
      async () => {
        throw new Error('the handler must not run again');
      },
      {
        resume: async (ctx) => {
          throw await resumeRollback(ctx, recorder(trace2), second.steps);
        },
      },
    );
    second.tasks.register('other', async () => {
      trace2.push('other task on platform:p');
      return null;
    });
    expect(second.tasks.recover()).toEqual([]); // not failed at once: resumed
    expect(second.tasks.get(id).state).toBe('running');
    const other = second.tasks.submit({ kind: 'other', entity: 'platform:p' }).id;
    second.tasks.start();
    const t = await second.tasks.wait(id);
    expect(t).toMatchObject({
      state: 'failed',
      errorCode: 'TASK_INTERRUPTED',
      errorMessage: 'the master stopped while this task was running; rolled back',
    });
    // the rollback held the task's locks: the task on the same platform ran after it
    expect((await second.tasks.wait(other)).state).toBe('succeeded');
    expect(trace2).toEqual(['undo b {"n":1,"made":"b-thing"}', 'undo a {"n":0,"made":"a-thing"}', 'other task on platform:p']);
    const log = messages(second.tasks, id);
    expect(log).toContain('warn the master stopped while this task was running; rolling back what it did at start-up');
    expect(log).toContain('warn step c was running when the master stopped; whatever it did before the stop is not known and is not undone (check it by hand)');
    expect(second.steps.load(id).done).toEqual([]);
    await second.tasks.stop();
    second.db.close();
  });

  it('a shutdown mid-rollback leaves the rest for the next start-up, which finishes it', async () => {
    const file = tmpDb();
    const a = engine(file);
    a.db
      .prepare(
        'INSERT INTO tasks (kind, entity, locks_json, state, params_json, created_ms, steps_json) VALUES (\'site.delete\', \'site:x\', \'["site:x"]\', \'running\', \'{"domain":"x.example.com","platform":"p"}\', 1, ?)',
      )
      .run(
        JSON.stringify({
          done: [
            { name: 'a', undo: { n: 0 } },
            { name: 'b', undo: { n: 1 } },
          ],
          inflight: null,
          committed: null,
        }),
      );
    const trace: string[] = [];
    let stopNow!: () => void;
    const stopped = new Promise<void>((r) => (stopNow = r));
    const slow = recorder(trace);
    (slow[1] as Step).undo = async (ctx, data) => {
      trace.push(`undo b ${JSON.stringify(data)}`);
      stopNow();
      await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
      throw fail('TASK_INTERRUPTED', 'the master is shutting down');
    };
    a.tasks.register('site.delete', async () => null, {
      resume: async (ctx) => {
        throw await resumeRollback(ctx, slow, a.steps);
      },
    });
    a.tasks.recover();
    a.tasks.start();
    await stopped;
    await a.tasks.stop();
    expect(a.tasks.get(1).state).toBe('running');
    expect(a.steps.load(1).done.map((d) => d.name)).toEqual(['a', 'b']);
    a.db.close();

    const b = engine(file);
    const trace2: string[] = [];
    b.tasks.register('site.delete', async () => null, {
      resume: async (ctx) => {
        throw await resumeRollback(ctx, recorder(trace2), b.steps);
      },
    });
    b.tasks.recover();
    b.tasks.start();
    const t = await b.tasks.wait(1);
    expect(t).toMatchObject({ state: 'failed', errorMessage: 'the master stopped while this task was running; rolled back' });
    expect(trace2).toEqual(['undo b {"n":1}', 'undo a {"n":0}']);
    await b.tasks.stop();
    b.db.close();
  });

  it('kinds without a resume handler are still failed at once with TASK_INTERRUPTED', () => {
    const file = tmpDb();
    const a = engine(file);
    a.db.prepare("INSERT INTO tasks (kind, entity, state, created_ms) VALUES ('platform.verify', 'platform:p', 'running', 1)").run();
    a.tasks.register('platform.verify', async () => null);
    expect(a.tasks.recover()).toEqual([1]);
    expect(a.tasks.get(1)).toMatchObject({ state: 'failed', errorCode: 'TASK_INTERRUPTED' });
    a.db.close();
  });
});

describe('spoke task rollback (finishing an incomplete rollback)', () => {
  /** Steps a-d; the undo of b fails while `broken.b` is set (an agent still offline). */
  function setup() {
    const { db, tasks, steps } = engine();
    const trace: string[] = [];
    const broken = { b: true };
    const stepsOf = (failAt?: string): Step[] =>
      recorder(trace, { failAt }).map((st) =>
        st.name === 'b'
          ? {
              ...st,
              undo: async (ctx: TaskContext, data: unknown) => {
                trace.push(`undo b ${JSON.stringify(data)}`);
                if (broken.b) throw fail('AGENT_OFFLINE', 'agent w1 is offline');
              },
            }
          : st,
      );
    tasks.register('site.clone', (ctx) => runSteps(ctx, stepsOf('d'), steps));
    const rollback = new SiteRollback({ tasks, db, log: steps, kinds: ['site.clone'], stepsOf: () => stepsOf() });
    tasks.register('platform.verify', async () => null);
    tasks.start();
    return { tasks, steps, trace, broken, rollback };
  }

  it("runs only the failed undos again, with their recorded data, under the failed task's locks; then there is nothing left", async () => {
    const { tasks, steps, trace, broken, rollback } = setup();
    const t = await tasks.wait(
      tasks.submit({
        kind: 'site.clone',
        entity: 'site:copy.test',
        locks: ['platform:wp'],
        params: { domain: 'blog.test', platform: 'wp', newDomain: 'copy.test', target: 'wp', dbServer: 'db1' },
      }).id,
    );
    expect(t.errorMessage).toMatch(/rollback incomplete: undo of b failed \(AGENT_OFFLINE: agent w1 is offline\); finish it with: spoke task rollback 1$/);
    trace.length = 0;
    // still offline: the rollback task fails saying so, and the same command again
    const r1 = await tasks.wait(rollback.submit(t.id).id);
    expect(r1).toMatchObject({ kind: ROLLBACK_TASK, entity: 'site:copy.test', state: 'failed', errorCode: 'AGENT_OFFLINE' });
    expect(r1.errorMessage).toBe('task 1: rollback incomplete: undo of b failed (AGENT_OFFLINE: agent w1 is offline); finish it with: spoke task rollback 1');
    broken.b = false;
    const r2 = await tasks.wait(rollback.submit(t.id).id);
    expect(r2.state).toBe('succeeded');
    expect(r2.result).toEqual({ task: 1, undone: ['b'] });
    expect(trace).toEqual(['undo b {"n":1,"made":"b-thing"}', 'undo b {"n":1,"made":"b-thing"}']);
    expect(messages(tasks, r2.id)).toContain('info the rollback of task 1 (site.clone on site:copy.test) is complete: undid b');
    expect(steps.load(t.id).done).toEqual([]);
    expect(() => rollback.submit(t.id)).toThrow(
      expect.objectContaining({ code: 'TASK_FINISHED', message: 'task 1 has no failed undo left to run (its rollback is complete)' }),
    );
  });

  it('refuses tasks that are not site tasks, still running, or unknown', async () => {
    const { tasks, rollback } = setup();
    const v = await tasks.wait(tasks.submit({ kind: 'platform.verify', entity: 'platform:wp', params: { platform: 'wp' } }).id);
    expect(() => rollback.submit(v.id)).toThrow(
      expect.objectContaining({ code: 'TASK_FINISHED', message: `task ${v.id} is a platform.verify: only site tasks have steps to roll back` }),
    );
    expect(() => rollback.submit(99)).toThrow(expect.objectContaining({ code: 'TASK_NOT_FOUND' }));
  });
});
