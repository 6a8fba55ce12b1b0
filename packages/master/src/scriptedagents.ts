/**
 * Test kit (not exported from index): scripted fake agents for unit tests of tasks that call
 * agents (the site tasks' step lists and undo orders, issue 17 item 5). It stands where the agent
 * hub and the platform converge stand, answers every command with a plausible typed result, moves
 * the dumps and archives the call options ask for, records every call in order, and fails on
 * script: at the Nth call, at a command type, or while a server is offline. No gRPC, no agent
 * process: what is tested is the order of what the master asks, and what it undoes.
 */
import { finished } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { fail, openTarWriter, type AgentCommand, type AgentCommandResults, type SpokeError } from '@spoke/shared';
import type { PlatformSync } from './platforms/converge.js';
import type { AgentHub, CallOptions } from './servers/hub.js';
import type { TaskContext } from './tasks/engine.js';

/** One call the fake agents received. */
export interface ScriptedCall {
  /** 1-based, over all servers. */
  n: number;
  server: string;
  /** The command type, or `converge` for a platform converge (PlatformSync.converge). */
  type: string;
  /** Domain, database or platform the call was about (for readable assertions). */
  about: string;
}

/** A scripted failure: the first call matching `when` throws `error` (once, unless `always`). */
interface Failure {
  when: (c: ScriptedCall) => boolean;
  error: SpokeError;
  always: boolean;
}

/** A dump the fake dbDump writes: complete (it ends with mariadb-dump's marker). */
export const SCRIPTED_DUMP = "-- MariaDB dump\nCREATE TABLE `t` (\n  `v` text\n);\nINSERT INTO `t` VALUES\n('x');\n-- Dump completed on 2026-01-01  0:00:00\n";

function about(cmd: AgentCommand): string {
  const c = cmd as Record<string, unknown>;
  return String(c.domain ?? c.database ?? c.platform ?? c.tree ?? '');
}

async function drain(r: NodeJS.ReadableStream): Promise<number> {
  let n = 0;
  for await (const chunk of r as AsyncIterable<Buffer>) n += chunk.length;
  return n;
}

/** Scripted fake agents. Build one per test; pass `hub` and `sync` where the real ones go. */
export class ScriptedAgents {
  /** Every call, in the order received. */
  readonly calls: ScriptedCall[] = [];
  /** Servers that are offline (calls to them fail AGENT_OFFLINE, as the hub does). */
  readonly offline = new Set<string>();
  private readonly failures: Failure[] = [];
  private readonly hooks: { type: string; fn: (c: ScriptedCall) => void }[] = [];

  /** Runs `fn` when a call of `type` arrives (before any scripted failure): e.g. take a server offline. */
  on(type: string, fn: (c: ScriptedCall) => void): this {
    this.hooks.push({ type, fn });
    return this;
  }

  /** Fails the `n`th call (1-based, over all servers) with `error`. */
  failAtCall(n: number, error: SpokeError = fail('AGENT_COMMAND_FAILED', `scripted failure at call ${n}`)): this {
    this.failures.push({ when: (c) => c.n === n, error, always: false });
    return this;
  }

  /** Fails the first call of `type` (every one with `always`) with `error`. */
  failOn(type: string, error: SpokeError = fail('AGENT_COMMAND_FAILED', `scripted failure of ${type}`), opts: { always?: boolean } = {}): this {
    this.failures.push({ when: (c) => c.type === type, error, always: opts.always === true });
    return this;
  }

  /** Calls as `server type about` lines (for one-glance assertions of order). */
  trace(): string[] {
    return this.calls.map((c) => `${c.server} ${c.type}${c.about ? ` ${c.about}` : ''}`);
  }

  private record(server: string, type: string, what: string, opts: CallOptions = {}): void {
    const c: ScriptedCall = { n: this.calls.length + 1, server, type, about: what };
    this.calls.push(c);
    for (const h of this.hooks) if (h.type === type) h.fn(c);
    let error: SpokeError | null = null;
    if (this.offline.has(server)) error = fail('AGENT_OFFLINE', `agent ${server} is offline (last seen: scripted)`);
    const i = error ? -1 : this.failures.findIndex((f) => f.when(c));
    if (i >= 0) {
      const f = this.failures[i] as Failure;
      if (!f.always) this.failures.splice(i, 1);
      error = f.error;
    }
    if (error) {
      // As the hub does: a failed call destroys the dump/archive it was to write, unfinished (the
      // caller has moved on: what the stream still reports, e.g. its file's dir already removed by
      // an undo, goes nowhere).
      for (const w of [opts.dumpTo, opts.filesTo]) {
        w?.on('error', () => undefined);
        w?.destroy();
      }
      throw error;
    }
  }

  /** The hub's part the tasks use: call, isOnline, awaitReconnect. */
  get hub(): AgentHub {
    const call = async <K extends AgentCommand['type']>(
      server: string,
      cmd: Extract<AgentCommand, { type: K }>,
      opts: CallOptions = {},
    ): Promise<AgentCommandResults[K]> => {
      this.record(server, cmd.type, about(cmd), opts);
      return (await this.answer(cmd, opts)) as AgentCommandResults[K];
    };
    return {
      call,
      isOnline: (server: string) => !this.offline.has(server),
      awaitReconnect: async () => undefined,
    } as unknown as AgentHub;
  }

  /** PlatformSync's part the tasks use: converge (recorded as a call to `master`). */
  get sync(): PlatformSync {
    return {
      converge: async (_ctx: TaskContext, platform: string) => {
        this.record('master', 'converge', platform);
        return { platform, rootHash: '', files: 0, bytes: 0, servers: [], sent: { files: 0, bytes: 0 }, reused: { files: 0, bytes: 0 }, ms: 0 };
      },
    } as unknown as PlatformSync;
  }

  private async answer(cmd: AgentCommand, opts: CallOptions): Promise<unknown> {
    const config = { impl: 'nginx', path: `/etc/nginx/spoke.d/${about(cmd)}.conf`, changed: true, tested: true, reloaded: true, fixed: [], problems: [] };
    switch (cmd.type) {
      case 'dbCreate':
      case 'dbGrants':
        return { hosts: cmd.hosts, added: cmd.hosts, removed: [], siteHost: '127.0.0.1', sitePort: 3306 };
      case 'dbDrop':
        return { databaseExisted: true, usersDropped: cmd.hosts };
      case 'dbDump': {
        const out = opts.dumpTo ?? new Writable({ write: (_c, _e, cb) => cb() });
        out.end(SCRIPTED_DUMP);
        await finished(out);
        return { bytes: Buffer.byteLength(SCRIPTED_DUMP) };
      }
      case 'dbRestore':
        return { bytes: opts.restoreFrom ? await drain(opts.restoreFrom()) : 0 };
      case 'siteFilesPack': {
        const tar = openTarWriter();
        const out = opts.filesTo ?? new Writable({ write: (_c, _e, cb) => cb() });
        tar.readable.pipe(out);
        tar.end();
        await finished(out);
        return { bytes: 0, entries: 0, skipped: [] };
      }
      case 'siteFilesUnpack':
        return { bytes: opts.filesFrom ? await drain(opts.filesFrom()) : 0, entries: 0, replaced: [] };
      case 'configureSite':
      case 'configurePlatform':
        return config;
      case 'removeSite':
        return { impl: 'nginx', path: config.path, removed: true, reloaded: true, deleted: cmd.deleteFiles ? [`sites/${cmd.domain}/files`] : [], problems: [] };
      case 'siteTool':
        return { url: '', user: '', pending: [], ran: [] };
      default:
        throw fail('INTERNAL', `the scripted agents have no answer for ${cmd.type}`);
    }
  }
}
