/**
 * The generated wire code (ts-proto, from proto/). Only gRPC handlers and clients use it; they
 * convert to domain types at the edge.
 */
export * from './gen/spoke/v1/types.js';
export * from './gen/spoke/v1/operator.js';
export * from './gen/spoke/v1/agent.js';
// The generated files each define these helpers; name one set explicitly to settle the clash.
export { protobufFileName, protobufPackage } from './gen/spoke/v1/types.js';
export type { DeepPartial, Exact, MessageFns } from './gen/spoke/v1/types.js';
