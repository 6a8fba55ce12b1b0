/**
 * Child process of connection.test.ts: runs only the agent's link (MasterConnection) against a
 * master at `address`, with the identity in `dir` (ca.pem, cert.pem, key.pem), and prints each
 * link state on its own line. Nothing else keeps this process alive: it ends when the link lets
 * its event loop empty (the silent exit of issue 16), and says so.
 * Usage: node --import tsx/esm link-child.ts <dir> <address>
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RootMap, createLogger } from '@spoke/shared';
import { MasterConnection } from './connection.js';
import type { AgentTrees } from './sync.js';

const [dir, master] = process.argv.slice(2) as [string, string];
const unused = () => Promise.reject(new Error('unused'));
const conn = new MasterConnection({
  log: createLogger({ level: 'silent' }),
  master,
  identity: {
    caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    certPem: readFileSync(join(dir, 'cert.pem'), 'utf8'),
    keyPem: readFileSync(join(dir, 'key.pem'), 'utf8'),
  },
  roots: [],
  rootMap: new RootMap(''),
  detect: async () => [],
  backoffInitialMs: 50,
  backoffMaxMs: 200,
  trees: { setClient: () => undefined, observed: () => ({}) } as unknown as AgentTrees,
  web: { configurePlatform: unused, configureSite: unused, removeSite: unused, removePlatform: unused, settingsToWebGroup: unused },
  installer: { install: unused },
  sitePhp: { run: unused },
  cron: { run: unused },
  driftIntervalMs: 60_000,
});
conn.onState = (s) => process.stdout.write(`state ${s}\n`);
process.on('exit', (code) => process.stdout.write(`exit ${code}\n`));
conn.start();
