/**
 * `platform status` is a read (issue 17 item 4): it reports the desired root hash the platform's
 * verify/converge stored and writes nothing, whatever the master's tree holds now.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RootMap, fail, silentLogger } from '@spoke/shared';
import type { AgentCommand } from '@spoke/shared';
import type { AgentHub } from '../servers/hub.js';
import { TreeStore } from './trees.js';
import { addAgent, freshNamespace, snapshot } from '../testutil.js';
import { platformStatus } from './status.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const f = freshNamespace();
  const root = mkdtempSync(join(tmpdir(), 'spoke-pstatus-'));
  dirs.push(root);
  const trees = new TreeStore({ db: f.db, rootMap: new RootMap(join(root, 'master')), log: silentLogger(), watch: false });
  const calls: { server: string; cmd: AgentCommand }[] = [];
  const hub = {
    isOnline: (s: string) => s === 'w1' || s === 'w2',
    call: async (server: string, cmd: AgentCommand) => {
      calls.push({ server, cmd });
      if (server === 'w2') throw fail('AGENT_COMMAND_FAILED', 'disk gone');
      return { actualRootHash: 'h-w1', committedRootHash: 'h-w1', drift: { changed: [], added: [], removed: [], total: 0 }, conflicts: [] };
    },
  } as unknown as AgentHub;
  for (const s of ['w1', 'w2', 'w3']) addAgent(f.ns, s, 'c');
  f.ns.addPlatform({ name: 'p', path: '/var/www/p', server: 'c', source: { kind: 'existing' } });
  f.ns.setDesiredRootHash('p', 'stored-by-verify');
  const canonical = join(root, 'master/var/www/p');
  mkdirSync(join(canonical, 'sites/default'), { recursive: true });
  writeFileSync(join(canonical, 'index.php'), '<?php // 20 bytes\n');
  writeFileSync(join(canonical, 'sites/default/x.txt'), 'abc');
  return { ...f, trees, hub, calls, canonical };
}

describe('platform status', () => {
  it('counts the tree and asks every member, writing nothing: the desired hash stays what verify stored', async () => {
    const f = setup();
    const before = JSON.stringify(snapshot(f.db));
    const s = await platformStatus({ ns: f.ns, trees: f.trees, hub: f.hub, log: silentLogger() }, 'p');
    expect(JSON.stringify(snapshot(f.db))).toBe(before);
    expect(s.platform.desiredRootHash).toBe('stored-by-verify');
    expect(f.ns.getPlatform('p').desiredRootHash).toBe('stored-by-verify');
    expect({ files: s.files, bytes: s.bytes }).toEqual({ files: 2, bytes: 21 });
    expect(s.servers).toEqual([
      { server: 'w1', online: true, report: expect.objectContaining({ actualRootHash: 'h-w1' }), error: '' },
      { server: 'w2', online: true, report: null, error: 'AGENT_COMMAND_FAILED: disk gone' },
      { server: 'w3', online: false, report: null, error: 'offline' },
    ]);
    expect(f.calls.map((c) => [c.server, c.cmd.type])).toEqual([
      ['w1', 'treeStatus'],
      ['w2', 'treeStatus'],
    ]);
  });

  it('a tree edited on the master after the last verify changes the counts, never the desired hash', async () => {
    const f = setup();
    await platformStatus({ ns: f.ns, trees: f.trees, hub: f.hub, log: silentLogger() }, 'p');
    writeFileSync(join(f.canonical, 'new.php'), '<?php');
    f.trees.touch('/var/www/p', ['new.php']); // what the watcher does (off here)
    const s = await platformStatus({ ns: f.ns, trees: f.trees, hub: f.hub, log: silentLogger() }, 'p');
    expect(s.files).toBe(3);
    expect(f.ns.getPlatform('p').desiredRootHash).toBe('stored-by-verify');
  });
});
