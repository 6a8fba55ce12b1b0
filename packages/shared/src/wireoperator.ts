/**
 * The Operator service's generated wire code and the messages it uses: what the CLI speaks.
 * (`wire.ts` adds the Agent service and its hand-written codecs.)
 */
export * from './gen/spoke/v1/types.js';
export * from './gen/spoke/v1/operator.js';
export { protobufFileName, protobufPackage } from './gen/spoke/v1/types.js';
export type { DeepPartial, Exact, MessageFns } from './gen/spoke/v1/types.js';
