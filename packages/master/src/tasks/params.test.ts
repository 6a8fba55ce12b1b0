/** Task params by schema: checked where a task runs, a bad row fails its task with one line. */
import { describe, expect, it } from 'vitest';
import { isSpokeError, silentLogger } from '@spoke/shared';
import { openStore } from '../namespace/store.js';
import { TaskEngine } from './engine.js';
import { checkTaskParams, paramsOf, TASK_PARAMS } from './params.js';

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isSpokeError(e)) return `${e.code}: ${e.message}`;
    throw e;
  }
  return 'accepted';
}

describe('checkTaskParams', () => {
  it('takes the params each kind is submitted with (keys it does not name are kept)', () => {
    const install = {
      domain: 'a.example.com',
      platform: 'd10',
      dbServer: 'db1',
      aliases: [],
      kind: 'drupal8',
      title: 'A',
      adminUser: 'admin',
      adminEmail: 'admin@a.example.com',
      redirectAliases: false,
      profile: 'standard',
      locale: 'en',
      cronIntervalS: 3600,
    };
    expect(checkTaskParams({ id: 1, kind: 'site.install' }, JSON.stringify(install))).toEqual(install);
    const clone = { domain: 'a.example.com', platform: 'd10', newDomain: 'b.example.com', target: 'd11', dbServer: 'db1', later: 1 };
    expect(checkTaskParams({ id: 2, kind: 'site.clone' }, JSON.stringify(clone))).toEqual(clone);
    expect(checkTaskParams({ id: 3, kind: 'platform.remove' }, '{"platform":"d7","siteTasks":[4,5]}')).toEqual({ platform: 'd7', siteTasks: [4, 5] });
    expect(checkTaskParams({ id: 4, kind: 'test.kind' }, '{"x":1}')).toEqual({ x: 1 });
  });

  it.each([
    [
      'site.install',
      '{"domain":"a.example.com","platform":"d10","dbServer":"db1","kind":"drupal8","title":"A","adminUser":7,"adminEmail":"e@x.org"}',
      'task 9 (site.install): params: adminUser must be a string',
    ],
    ['site.restore', '{"domain":"a.example.com","platform":"d7"}', 'task 9 (site.restore): params: backupId is missing'],
    ['platform.remove', '{"platform":"d7","siteTasks":"4"}', 'task 9 (platform.remove): params: siteTasks must be an array'],
    ['site.verify', '[]', 'task 9 (site.verify): params: the value must be an object'],
    ['server.verify', '{"server":', 'task 9 (server.verify): params are not JSON ("{\\"server\\":"); the task was not run'],
    ['test.kind', '"x"', 'task 9 (test.kind): params: the value must be a record'],
  ])('refuses a %s row %s', (kind, json, msg) => {
    expect(refusal(() => checkTaskParams({ id: 9, kind }, json))).toBe(`TASK_PARAMS_INVALID: ${msg}`);
  });

  it('paramsOf reads a task of the kinds it names only', () => {
    const task = { kind: 'site.migrate', params: { domain: 'a.example.com', platform: 'd7', newDomain: 'a.example.com', target: 'd8', dbServer: 'db1' } };
    expect(paramsOf(task, 'site.clone', 'site.migrate').target).toBe('d8');
    expect(refusal(() => paramsOf(task, 'site.backup'))).toBe('INTERNAL: a site.migrate task read as site.backup');
  });

  it('has a schema for every kind the master registers', () => {
    expect(Object.keys(TASK_PARAMS).sort()).toEqual(
      [
        'platform.converge',
        'platform.remove',
        'platform.verify',
        'server.forget',
        'server.verify',
        'site.alias.add',
        'site.alias.redirect',
        'site.alias.rm',
        'site.backup',
        'site.clone',
        'site.delete',
        'site.disable',
        'site.enable',
        'site.https',
        'site.https.renew',
        'site.import',
        'site.install',
        'site.migrate',
        'site.restore',
        'site.verify',
        'task.rollback',
      ].sort(),
    );
  });

  it('site.https rows: on with a source, off alone; an unknown source is refused', () => {
    expect(checkTaskParams({ id: 1, kind: 'site.https' }, JSON.stringify({ domain: 'a.example.com', platform: 'wp', on: false }))).toMatchObject({ on: false });
    const on = { domain: 'a.example.com', platform: 'wp', on: true, source: 'operator', redirect: true, hsts: false, certId: 'c1' };
    expect(checkTaskParams({ id: 2, kind: 'site.https' }, JSON.stringify(on))).toMatchObject(on);
    expect(refusal(() => checkTaskParams({ id: 3, kind: 'site.https' }, JSON.stringify({ ...on, source: 'letsencrypt' })))).toMatch(
      /^TASK_PARAMS_INVALID: task 3 \(site\.https\): params/,
    );
    expect(
      checkTaskParams(
        { id: 4, kind: 'site.install' },
        JSON.stringify({
          domain: 'a.example.com',
          platform: 'wp',
          dbServer: 'db',
          kind: 'wordpress',
          title: 't',
          adminUser: 'a',
          adminEmail: 'a@b.c',
          https: true,
        }),
      ),
    ).toMatchObject({ https: true });
  });
});

describe('the task engine checks params before the handler runs', () => {
  it('a row whose params do not fit fails its task with one line and the handler never runs', async () => {
    const db = openStore(':memory:');
    const tasks = new TaskEngine({ db, clock: Date.now, log: silentLogger() });
    let ran = 0;
    tasks.register('site.restore', async () => {
      ran++;
    });
    const t = tasks.submit({ kind: 'site.restore', entity: 'site:a.example.com', params: { domain: 'a.example.com', platform: 'd7', backupId: 'b1' } });
    const bad = tasks.submit({ kind: 'site.restore', entity: 'site:b.example.com', params: { domain: 'b.example.com', platform: 'd7' } });
    // a row another program wrote, not JSON at all: listing it does not crash
    const broken = tasks.submit({ kind: 'site.restore', entity: 'site:c.example.com', params: {} });
    db.prepare('UPDATE tasks SET params_json = ? WHERE id = ?').run('not json', broken.id);
    expect(tasks.get(broken.id).params).toEqual({});
    tasks.start();
    expect(await tasks.wait(t.id)).toMatchObject({ state: 'succeeded' });
    expect(await tasks.wait(bad.id)).toMatchObject({
      state: 'failed',
      errorCode: 'TASK_PARAMS_INVALID',
      errorMessage: `task ${bad.id} (site.restore): params: backupId is missing`,
    });
    expect(await tasks.wait(broken.id)).toMatchObject({ state: 'failed', errorCode: 'TASK_PARAMS_INVALID' });
    expect(tasks.lines(bad.id).at(-1)?.message).toBe(`failed: TASK_PARAMS_INVALID: task ${bad.id} (site.restore): params: backupId is missing`);
    expect(ran).toBe(1);
  });
});
