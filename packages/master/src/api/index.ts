/**
 * Room `api/`: the gRPC handlers, where wire messages become domain types and back.
 *
 * - operator.ts  the Operator service (CLI → master); validation of requests happens here
 * - agent.ts     the Agent service (Enroll, Connect, GetManifest, FetchBlobs, dump/file transfers)
 * - auth.ts      which listener a call came through and what its certificate allows
 * - convert.ts   domain ↔ wire conversions
 *
 * This file registers the services on a listener: the TLS port serves agents and
 * certificate-holding operators; the unix socket serves the Operator service only.
 */
import type { Server } from '@grpc/grpc-js';
import { wire, type Logger } from '@spoke/shared';
import type { Core } from '../core.js';
import { agentService } from './agent.js';
import type { Via } from './auth.js';
import { operatorService } from './operator.js';

/** Adds the services `via` serves to `server`. */
export function addServices(server: Server, core: Core, via: Via, log: Logger): void {
  if (via === 'tls') server.addService(wire.AgentService, agentService(core, log.child({ component: 'master.agent-api' })));
  server.addService(wire.OperatorService, operatorService(core, via, log.child({ component: 'master.operator-api' })));
}
