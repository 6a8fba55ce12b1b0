/**
 * `spoke up`: the one-box install. Starts a master in this process and its local agent (server
 * `master`, sharing the master's root) as a supervised child process — the agent package is never
 * imported by the master, so the agent runs from its own entry point. Prints what to do next and
 * runs until interrupted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { boundHeapGrowth, MASTER_HEAP_HEADROOM_MB, createLogger, fail } from '@spoke/shared';
import { compileMasterOptions } from './options.js';
import { startMaster, type RunningMaster } from './master.js';
import type { Command } from './cli/command.js';
import { LOCAL_SERVER } from './local.js';

/**
 * The start-up line that says where Spoke writes: with the real root, the machine's own
 * /var/aegir and /var/www (a first `server verify` creates them), and how to try it inside one
 * directory instead.
 */
export function rootNotice(root: string): string {
  if (root && root !== '/') return `root:    ${root} — platforms and sites live under it (nothing outside it is touched)`;
  return (
    "root:    / — platforms and sites are written to this machine's real /var/aegir and /var/www " +
    '(the first server verify creates them); for a trial that touches nothing outside one directory: ./bin/spoke up --root DIR'
  );
}
export { LOCAL_SERVER } from './local.js';

/** Finds the spoke-agent entry: $SPOKE_AGENT_BIN, beside this file, or the workspace build. */
export function findAgentBin(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [process.env.SPOKE_AGENT_BIN, join(here, 'spoke-agent.js'), resolve(here, '../../agent/dist/spoke-agent.js')].filter(
    (c): c is string => !!c,
  );
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw fail('CONFIG_INVALID', `cannot find spoke-agent (looked at ${candidates.join(', ')}); run pnpm build`);
  return found;
}

function runChild(bin: string, args: string[], logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a', 0o600);
  return spawn(process.execPath, [bin, ...args], { stdio: ['ignore', fd, fd] });
}

async function ensureEnrolled(m: RunningMaster, bin: string, agentDir: string, logFile: string, roots?: string): Promise<void> {
  if (existsSync(join(agentDir, 'agent.crt')) && m.core.ns.hasServer(LOCAL_SERVER)) return;
  const replace = m.core.ns.hasServer(LOCAL_SERVER);
  const { token } = m.core.enroller.createToken({ server: LOCAL_SERVER, replace, ttlMs: 120_000 });
  const args = ['enroll', '--master', m.listen, '--token', token, '--state-dir', agentDir];
  if (roots) args.push('--roots', roots);
  const child = runChild(bin, args, logFile);
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw fail('INTERNAL', `the local agent could not enroll (see ${logFile})`);
}

/** The `up` command for the CLI. */
export const upCommand: Command = {
  usage: 'up [--state-dir DIR] [--listen HOST:PORT] [--root DIR] [--roots /var/aegir,/var/www] [--acme-directory URL [--acme-email E] [--acme-ca FILE]]',
  summary: 'one-box install: run a master and its local agent (server "master") until Ctrl-C',
  options: {
    listen: { type: 'string' },
    root: { type: 'string' },
    roots: { type: 'string' },
    'acme-directory': { type: 'string' },
    'acme-email': { type: 'string' },
    'acme-ca': { type: 'string' },
  },
  args: [0, 0],
  async run(ctx, _pos, o) {
    const opts = compileMasterOptions({
      stateDir: ctx.conn.stateDir ?? '.spoke',
      listen: (o.listen as string | undefined) ?? '127.0.0.1:7443',
      root: o.root as string | undefined,
      acmeDirectory: o['acme-directory'] as string | undefined,
      acmeEmail: o['acme-email'] as string | undefined,
      acmeCa: o['acme-ca'] as string | undefined,
    });
    mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
    const masterLog = join(opts.stateDir, 'master.log');
    const agentLog = join(opts.stateDir, 'agent.log');
    const log = createLogger({ level: opts.logLevel, base: { daemon: 'master' }, destination: masterLog });
    const bin = findAgentBin();
    boundHeapGrowth(process.env, MASTER_HEAP_HEADROOM_MB);
    const m = await startMaster(opts, { log });
    const agentDir = join(opts.stateDir, 'agent');
    let child: ChildProcess | undefined;
    let stopping = false;
    try {
      await ensureEnrolled(m, bin, agentDir, agentLog, o.roots as string | undefined);
    } catch (e) {
      await m.stop();
      throw e;
    }
    const runArgs = ['run', '--state-dir', agentDir, ...(opts.root ? ['--root', opts.root] : [])];
    let restarts = 0;
    const startAgent = () => {
      child = runChild(bin, runArgs, agentLog);
      child.once('exit', (code) => {
        if (stopping) return;
        if (code === 3) {
          // The agent's identity or config was refused: restarting cannot help.
          ctx.io.err(`error: CERT_REVOKED: the local agent was refused and stopped (see ${agentLog}); restart spoke up to re-enroll it\n`);
          return;
        }
        ctx.io.err(`warning: the local agent exited (code ${code}); restarting it (see ${agentLog})\n`);
        const delay = Math.min(15_000, 500 * 2 ** Math.min(restarts++, 5));
        setTimeout(startAgent, delay).unref();
      });
    };
    startAgent();
    const online = await new Promise<boolean>((r) => {
      if (m.core.hub.isOnline(LOCAL_SERVER)) return r(true);
      const t = setTimeout(() => r(false), 20_000);
      m.core.hub.events.once('online', () => {
        clearTimeout(t);
        r(true);
      });
    });
    const sd = ctx.conn.stateDir ? ` --state-dir ${ctx.conn.stateDir}` : '';
    const cli = `${relative(process.cwd(), resolve(dirname(fileURLToPath(import.meta.url)), '../../../bin/spoke')) || 'spoke'}`;
    const cmd = (s: string) => `  ${`${cli}${sd} ${s}`}`;
    ctx.io.out(
      `Spoke is up.
  master:  ${m.listen} (TLS; CA fingerprint ${m.core.enroller.caFingerprint.slice(0, 16)}…)
  socket:  ${m.socket}
  state:   ${opts.stateDir}   logs: master.log, agent.log
  agent:   server "${LOCAL_SERVER}" ${online ? 'online' : `not online yet (see ${agentLog})`}
  ${rootNotice(opts.root)}

Next, in another terminal:
${cmd('server ls')}
      servers and their state
${cmd(`server verify ${LOCAL_SERVER}`)}
      check services, writable roots and free disk on this box
${cmd(`platform add NAME --path /var/aegir/platforms/NAME --server ${LOCAL_SERVER}`)}
      register a platform
${cmd('server token web-1 --cluster web')}
      a token to enroll a web server into cluster "web" (see README: multi-host quick start)

Ctrl-C stops the master and the local agent.
`,
    );
    await new Promise<void>((r) => {
      process.once('SIGINT', r);
      process.once('SIGTERM', r);
    });
    stopping = true;
    child?.kill('SIGTERM');
    await m.stop();
    ctx.io.out('stopped\n');
    return 0;
  },
};
