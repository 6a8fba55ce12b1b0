/**
 * End-to-end harness: starts the real built daemons as child processes on loopback with temp
 * state dirs and `--root` prefixes (several "hosts" on one machine), and runs the real CLI.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
export const BIN = {
  spoke: join(ROOT, 'packages/master/dist/spoke.js'),
  master: join(ROOT, 'packages/master/dist/spoke-master.js'),
  agent: join(ROOT, 'packages/agent/dist/spoke-agent.js'),
};

/** Fast heartbeats and backoff so presence changes show up in a second. */
export const FAST_ENV = {
  SPOKE_HEARTBEAT_MS: '250',
  SPOKE_BACKOFF_INITIAL_MS: '100',
  SPOKE_BACKOFF_MAX_MS: '500',
  SPOKE_MIN_FREE_BYTES: '1048576',
  SPOKE_LOG_LEVEL: 'debug',
};

/** What a CLI run returned. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A scratch directory removed by `cleanup`. */
export function scratch(prefix = 'spoke-e2e-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The command that runs node: in a network namespace when `netns` is given (`ip netns exec`). */
function nodeCommand(netns: string | undefined): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, process.execPath]] : [process.execPath, []];
}

/** Runs a node script and collects its output (`netns`: inside that network namespace). */
export function runNode(script: string, args: string[], env: Record<string, string> = {}, timeoutMs = 60_000, netns?: string): Promise<CliResult> {
  const [cmd, pre] = nodeCommand(netns);
  return new Promise((resolve) => {
    execFile(cmd, [...pre, script, ...args], { env: { ...process.env, ...FAST_ENV, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Waits until `fn` returns truthy (polling), or throws with `what`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A daemon child process with its collected output. */
export class Daemon {
  readonly proc: ChildProcess;
  out = '';
  readonly exited: Promise<number | null>;

  constructor(script: string, args: string[], env: Record<string, string> = {}, netns?: string) {
    const [cmd, pre] = nodeCommand(netns);
    this.proc = spawn(cmd, [...pre, script, ...args], { env: { ...process.env, ...FAST_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
    this.proc.stderr?.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((r) => this.proc.once('exit', (code) => r(code)));
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.alive) this.proc.kill(signal);
    return this.exited;
  }
}

/** A task as `spoke -o json` prints it. */
export interface TaskJson {
  id: number;
  state: string;
  error: { code: string; message: string } | null;
  result: unknown;
}

/** A master under test: state dir, bound address, CLI. */
export class MasterUnderTest {
  readonly stateDir: string;
  daemon: Daemon | undefined;
  listen = '';

  constructor(readonly dir: string) {
    this.stateDir = join(dir, 'master');
  }

  /** The master's canonical root (`--root`). */
  get root(): string {
    return join(this.dir, 'master-root');
  }

  /** Starts (or restarts, on the same port) the master and waits until it listens; `args` are extra `run` options. */
  async start(env: Record<string, string> = {}, args: string[] = []): Promise<void> {
    const listen = this.listen || '127.0.0.1:0';
    const d = new Daemon(BIN.master, ['run', '--state-dir', this.stateDir, '--listen', listen, '--root', this.root, ...args], env);
    this.daemon = d;
    const m = await until('master to listen', () => /listening on (\S+);/.exec(d.out) ?? (!d.alive ? Promise.reject(new Error(d.out)) : undefined));
    this.listen = m[1] as string;
  }

  /** Runs `spoke --state-dir … ARGS`. */
  cli(...args: string[]): Promise<CliResult> {
    return runNode(BIN.spoke, ['--state-dir', this.stateDir, ...args]);
  }

  /** Runs the CLI with `-o json` and parses stdout; throws with stderr on failure. */
  async json<T = unknown>(...args: string[]): Promise<T> {
    const r = await this.cli('-o', 'json', ...args);
    if (r.code !== 0) throw new Error(`spoke ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  /** Runs a CLI task in JSON mode: the task from stdout (its last JSON object), its log lines from stderr. */
  async task(...args: string[]): Promise<{ t: TaskJson; log: string }> {
    const r = await this.cli('-o', 'json', ...args);
    const at = r.stdout.lastIndexOf('\n{');
    if (!r.stdout.trim().startsWith('{') && at < 0) throw new Error(`spoke ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    const t = JSON.parse(r.stdout.slice(at + 1)) as TaskJson;
    return { t, log: r.stderr };
  }
}

/** An agent "host" under test: its own state dir and --root prefix. */
export class AgentUnderTest {
  readonly stateDir: string;
  readonly root: string;
  daemon: Daemon | undefined;

  constructor(
    readonly dir: string,
    readonly name: string,
    /** A network namespace the agent runs in (its own network; see test/netns.ts). */
    readonly netns?: string,
  ) {
    this.stateDir = join(dir, `agent-${name}`, 'state');
    this.root = join(dir, `agent-${name}`, 'root');
    mkdirSync(this.root, { recursive: true });
  }

  enroll(master: string, token: string): Promise<CliResult> {
    return runNode(
      BIN.agent,
      ['enroll', '--master', master, '--token', token, '--state-dir', this.stateDir, '--roots', '/var/aegir,/var/www'],
      {},
      60_000,
      this.netns,
    );
  }

  /** Starts `spoke-agent run`; `args` are extra `run` options. */
  run(env: Record<string, string> = {}, args: string[] = []): Daemon {
    this.daemon = new Daemon(BIN.agent, ['run', '--state-dir', this.stateDir, '--root', this.root, ...args], env, this.netns);
    return this.daemon;
  }
}

/** Removes scratch dirs. */
export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
