/**
 * Agent service handlers: Enroll (the one call without a client certificate) and Connect (the
 * agent's long-lived stream, handed to the hub once its certificate checks out).
 */
import type { sendUnaryData, ServerDuplexStream, ServerUnaryCall } from '@grpc/grpc-js';
import { fail, toServiceError, wire, type Logger } from '@spoke/shared';
import type { Core } from '../core.js';
import { callerOf } from './auth.js';

/** Builds the Agent service implementation (TLS listener only). */
export function agentService(core: Core, log: Logger): wire.AgentServer {
  return {
    enroll: (call: ServerUnaryCall<wire.EnrollRequest, wire.EnrollResponse>, cb: sendUnaryData<wire.EnrollResponse>) => {
      core.enroller.enroll(call.request.token, call.request.csrPem).then(
        (e) => {
          log.info({ server: e.server, cluster: e.cluster }, 'agent enrolled');
          cb(null, { certPem: e.certPem, caPem: e.caPem, server: e.server, cluster: e.cluster ?? '' });
        },
        (e: unknown) => {
          log.warn({ code: (e as { code?: string }).code, err: (e as Error).message }, 'enrollment refused');
          cb(toServiceError(e), null);
        },
      );
    },

    connect: (call: ServerDuplexStream<wire.AgentEvent, wire.MasterCommand>) => {
      try {
        const c = callerOf(call, 'tls');
        if (c.via !== 'tls') throw fail('CERT_REQUIRED', 'agents must present the certificate they got at enrollment');
        if (c.role !== 'agent') throw fail('CERT_UNKNOWN', `certificate ${c.commonName} is not an agent certificate`);
        const server = core.ns.authenticateAgent(c.commonName, c.fingerprint);
        core.hub.attach(server.name, server.cluster, call);
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'agent connection refused');
        call.emit('error', Object.assign(new Error((e as Error).message), toServiceError(e)));
      }
    },
  };
}
