/**
 * Self-healing on the master, level-triggered: a loop compares desired vs observed for every
 * (platform, server) on a timer and whenever an agent reports (hello, drift check) or a converge
 * it started ends, and queues the converges that are missing (reconcile.ts decides which: backoff
 * for a pair that keeps failing, a cap on how many run at once). PlatformSync owns one.
 */
import type { Logger } from '@spoke/shared';
import type { Namespace } from '../namespace/namespace.js';
import type { AgentHub, HelloEvent } from '../servers/hub.js';
import type { TaskEngine } from '../tasks/engine.js';
import type { TaskInfo } from '../types.js';
import type { ReportedDrift } from './drift.js';
import { failuresOf, nextWakeMs, planConverges, type PairState, type ReconcilePolicy, type WaitingPair } from './reconcile.js';

/** The reconcile loop (see the module comment). */
export class SelfHeal {
  private readonly ns: Namespace;
  private readonly hub: AgentHub;
  private readonly tasks: TaskEngine;
  private readonly log: Logger;
  /** Drift already reported on report-only platforms (shared with PlatformSync; see drift.ts). */
  private readonly reportedDrift: ReportedDrift;
  private readonly clock: () => number;
  private readonly policy: ReconcilePolicy;
  private readonly reconcileIntervalMs: number;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private reconcileSoon: NodeJS.Immediate | undefined;
  private reconciling = false;
  private closed = false;
  /** Pairs backing off after failures, from the last reconcile (`platform status` shows them). */
  private waiting = new Map<string, WaitingPair>();

  constructor(deps: {
    ns: Namespace;
    hub: AgentHub;
    tasks: TaskEngine;
    log: Logger;
    reportedDrift: ReportedDrift;
    clock: () => number;
    policy: ReconcilePolicy;
    /** How often the loop runs without an event. */
    reconcileIntervalMs: number;
  }) {
    this.ns = deps.ns;
    this.hub = deps.hub;
    this.tasks = deps.tasks;
    this.log = deps.log;
    this.reportedDrift = deps.reportedDrift;
    this.clock = deps.clock;
    this.policy = deps.policy;
    this.reconcileIntervalMs = deps.reconcileIntervalMs;
  }

  /** Starts the reconcile loop (the master calls it once it serves). */
  startReconcile(): void {
    this.closed = false;
    this.wake();
  }

  /** Runs the reconcile loop soon (coalesced): an event changed what the master knows. */
  wake(): void {
    if (this.closed || this.reconcileSoon) return;
    this.reconcileSoon = setImmediate(() => {
      this.reconcileSoon = undefined;
      this.reconcile();
    });
  }

  /** Pairs of a platform backing off after failed converges: server → next try. */
  retries(platform: string): Map<string, WaitingPair> {
    return new Map([...this.waiting.values()].filter((w) => w.platform === platform).map((w) => [w.server, w]));
  }

  /**
   * One pass of the loop: gathers desired, observed, busy and failures for every pair, queues
   * the converges planConverges picks, and sets the timer for the next pass (the earliest retry,
   * else the interval). Returns the tasks it queued.
   */
  reconcile(): number[] {
    if (this.closed || this.reconciling) return [];
    this.reconciling = true;
    const queued: number[] = [];
    try {
      const now = this.clock();
      const { pairs, running } = this.reconcileState();
      const plan = planConverges(pairs, running, now, this.policy);
      this.waiting = new Map(plan.waiting.map((w) => [`${w.platform}\0${w.server}`, w]));
      for (const c of plan.start) {
        this.log.info({ platform: c.platform, server: c.server, why: c.why }, 'queueing converge');
        const t = this.tasks.submit({
          kind: 'platform.converge',
          entity: `platform:${c.platform}`,
          params: { platform: c.platform, server: c.server, why: c.why },
        });
        queued.push(t.id);
        // its end frees a slot and may be a failure to back off from: look again then
        const off = this.tasks.subscribe(t.id, (ev) => {
          if (ev.type === 'task' && ['succeeded', 'failed', 'cancelled'].includes(ev.task.state)) {
            off();
            this.wake();
          }
        });
      }
      if (!this.closed) {
        clearTimeout(this.reconcileTimer);
        this.reconcileTimer = setTimeout(() => this.reconcile(), Math.max(1, nextWakeMs(plan, now, this.reconcileIntervalMs) - now));
        this.reconcileTimer.unref();
      }
    } catch (err) {
      this.log.error({ err }, 'reconcile failed');
      if (!this.closed) {
        clearTimeout(this.reconcileTimer);
        this.reconcileTimer = setTimeout(() => this.reconcile(), this.reconcileIntervalMs);
        this.reconcileTimer.unref();
      }
    } finally {
      this.reconciling = false;
    }
    return queued;
  }

  /** What the loop decides from: every (platform, server) pair, and how many converges run. */
  private reconcileState(): { pairs: PairState[]; running: number } {
    const active = [...this.tasks.list({ state: 'queued', limit: 100_000 }), ...this.tasks.list({ state: 'running', limit: 100_000 })];
    const busy = new Set<string>();
    let running = 0;
    for (const t of active) {
      if (t.kind === 'platform.converge') {
        running++;
        busy.add(`${String(t.params.platform)}\0${String(t.params.server)}`);
      } else if (t.kind === 'platform.verify' || t.kind === 'platform.remove') {
        busy.add(`${String(t.params.platform)}\0*`);
      }
    }
    const pairs: PairState[] = [];
    // One query each for the platforms (without their sites) and what servers hold, targets once
    // per server, and a platform's task rows only for a pair that differs (a pair in sync needs
    // no failure count): a pass over 1,000 platforms ran ~4,000 queries and read 100,000 site
    // rows, once per hello in a reconnect storm (issue 20).
    const observedAll = this.ns.observedAll();
    const targets = new Map<string, string[]>();
    for (const p of this.ns.listPlatforms({ sites: false })) {
      // never verified (or being verified): nothing desired yet, or the verify converges
      const desired = p.status === 'pending' || p.status === 'verifying' ? '' : (p.desiredRootHash ?? '');
      if (!desired) continue;
      let recent: TaskInfo[] | undefined;
      let servers = targets.get(p.server);
      if (!servers) targets.set(p.server, (servers = this.ns.targets(p.server)));
      for (const server of servers) {
        const observed = observedAll.get(`${server}\0${p.path}`) ?? null;
        const f =
          observed === desired
            ? { failures: 0, lastFailedMs: 0, lastError: '' }
            : failuresOf((recent ??= this.tasks.list({ entity: `platform:${p.name}`, limit: 50 })), server);
        pairs.push({
          platform: p.name,
          server,
          desired,
          observed,
          online: this.hub.isOnline(server),
          // report-only platform: drift already reported for this very tree waits for an operator
          driftReported: p.drift === 'report' && this.reportedDrift.has(p.name, server, observed ?? ''),
          busy: busy.has(`${p.name}\0*`) || busy.has(`${p.name}\0${server}`),
          ...f,
        });
      }
    }
    return { pairs, running };
  }

  /** Records the trees an agent reports (hello, drift check) and runs the loop soon. */
  onObserved(e: HelloEvent): void {
    try {
      for (const p of this.ns.platformsFor(e.server)) {
        const observed = e.observed[p.path] ?? '';
        this.ns.recordObserved(e.server, p.path, observed);
        // a report-only platform's drift that went away (repaired by hand) is no longer reported
        if (observed === p.desiredRootHash) this.reportedDrift.clear(p.name, e.server);
      }
    } catch (err) {
      this.log.error({ err, server: e.server }, 'cannot record observed trees');
    }
    this.wake();
  }

  /** Stops the loop (until startReconcile). */
  close(): void {
    this.closed = true;
    clearTimeout(this.reconcileTimer);
    if (this.reconcileSoon) clearImmediate(this.reconcileSoon);
    this.reconcileSoon = undefined;
  }
}
