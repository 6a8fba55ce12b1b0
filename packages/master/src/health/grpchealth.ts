/**
 * `grpc.health.v1.Health` on both master listeners (grpc-health-check, made for grpc-js), so load
 * balancers, `grpc_health_probe` and systemd checks can ask whether the master serves. One
 * readiness drives every listener: NOT_SERVING while the master starts (listeners bound, tasks
 * not yet running) and from the moment it begins to stop (draining); SERVING in between.
 * Services: "" (the master as a whole), `spoke.v1.Operator`, and on the TLS port `spoke.v1.Agent`.
 */
import type { Server } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';

/** Readiness states, in order: starting → serving → draining. */
export type MasterReadiness = 'starting' | 'serving' | 'draining';

/** The health service of every listener, fed from one readiness. */
export class MasterHealth {
  private state: MasterReadiness = 'starting';
  private readonly listeners: { impl: HealthImplementation; services: string[] }[] = [];

  /** Adds the health service to a gRPC server; `agent` adds the Agent service's name too. */
  addTo(server: Server, listener: 'tls' | 'socket'): void {
    const services = ['', 'spoke.v1.Operator', ...(listener === 'tls' ? ['spoke.v1.Agent'] : [])];
    const impl = new HealthImplementation(Object.fromEntries(services.map((s) => [s, this.status()])));
    impl.addToServer(server);
    this.listeners.push({ impl, services });
  }

  /** Moves the readiness forward (never back: a draining master does not serve again). */
  set(state: MasterReadiness): void {
    const order: MasterReadiness[] = ['starting', 'serving', 'draining'];
    if (order.indexOf(state) <= order.indexOf(this.state)) return;
    this.state = state;
    for (const l of this.listeners) for (const s of l.services) l.impl.setStatus(s, this.status());
  }

  /** Current readiness. */
  get readiness(): MasterReadiness {
    return this.state;
  }

  private status(): ServingStatus {
    return this.state === 'serving' ? 'SERVING' : 'NOT_SERVING';
  }
}
